//! A minimal, strict DER reader for the certificates and CSRs we read: one TLV at a time,
//! definite lengths only (minimal encodings), single-byte tags, no recursion. Every read is
//! bounds-checked, so untrusted bytes give an error, never a panic.

use std::fmt;

pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const PRINTABLE_STRING: u8 = 0x13;
pub const TELETEX_STRING: u8 = 0x14;
pub const IA5_STRING: u8 = 0x16;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const VISIBLE_STRING: u8 = 0x1a;
pub const UNIVERSAL_STRING: u8 = 0x1c;
pub const BMP_STRING: u8 = 0x1e;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;

/// Longest element accepted: 4 length bytes, far more than any certificate we read needs.
const MAX_LENGTH_BYTES: usize = 4;

/// Why bytes are not the DER expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerError {
    /// The input ends inside an element.
    Truncated,
    /// Indefinite length (BER), not DER.
    IndefiniteLength,
    /// A length in more bytes than needed, or too large.
    BadLength,
    /// A tag number of 31 or more (multi-byte tags): nothing we read uses them.
    HighTag,
    /// Another element than the one the structure has at this place.
    UnexpectedTag { expected: u8, found: u8 },
    /// Bytes left over after the last element of a structure.
    TrailingData,
    /// The element is well framed but its value is not valid for its type.
    BadValue(&'static str),
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::Truncated => f.write_str("truncated DER"),
            DerError::IndefiniteLength => f.write_str("indefinite length in DER"),
            DerError::BadLength => f.write_str("invalid DER length"),
            DerError::HighTag => f.write_str("unsupported DER tag"),
            DerError::UnexpectedTag { expected, found } => {
                write!(f, "expected DER tag 0x{expected:02x}, found 0x{found:02x}")
            }
            DerError::TrailingData => f.write_str("trailing data after DER element"),
            DerError::BadValue(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DerError {}

pub type DerResult<T> = std::result::Result<T, DerError>;

/// One element: its tag, its content, and all its bytes (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over the content (for constructed elements).
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.content)
    }
}

/// Reads consecutive elements from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self) -> DerResult<Tlv<'a>> {
        let (&tag, rest) = self.data.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTag);
        }
        let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else if first == 0x80 {
            return Err(DerError::IndefiniteLength);
        } else {
            let n = usize::from(first & 0x7f);
            if n > MAX_LENGTH_BYTES {
                return Err(DerError::BadLength);
            }
            let bytes = rest.get(..n).ok_or(DerError::Truncated)?;
            // DER: the long form only for 128 and more, in as few bytes as possible.
            if bytes.first() == Some(&0) {
                return Err(DerError::BadLength);
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(DerError::BadLength);
            }
            (len, rest.get(n..).ok_or(DerError::Truncated)?)
        };
        let content = rest.get(..len).ok_or(DerError::Truncated)?;
        let header = self.data.len() - rest.len();
        let total = header + len;
        let raw = self.data.get(..total).ok_or(DerError::Truncated)?;
        self.data = self.data.get(total..).ok_or(DerError::Truncated)?;
        Ok(Tlv { tag, content, raw })
    }

    /// The next element, which must have tag `tag`.
    pub fn expect(&mut self, tag: u8) -> DerResult<Tlv<'a>> {
        match self.peek_tag() {
            None => Err(DerError::Truncated),
            Some(found) if found != tag => Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            }),
            Some(_) => self.any(),
        }
    }

    /// The next element if it has tag `tag` (an OPTIONAL or DEFAULT field).
    pub fn optional(&mut self, tag: u8) -> DerResult<Option<Tlv<'a>>> {
        if self.peek_tag() == Some(tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks that nothing follows the last element read.
    pub fn finish(&self) -> DerResult<()> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Reads exactly one element with tag `tag` from `data`, with nothing after it.
pub fn single(data: &[u8], tag: u8) -> DerResult<Tlv<'_>> {
    let mut r = Reader::new(data);
    let tlv = r.expect(tag)?;
    r.finish()?;
    Ok(tlv)
}

/// The bytes of a BIT STRING whose bit count is a multiple of 8 (keys, signatures).
pub fn bit_string_bytes<'a>(tlv: &Tlv<'a>) -> DerResult<&'a [u8]> {
    match tlv.content.split_first() {
        Some((0, bytes)) => Ok(bytes),
        _ => Err(DerError::BadValue("bit string")),
    }
}

/// The arcs of an OBJECT IDENTIFIER's content (each arc at most 64 bits).
pub fn oid_arcs(content: &[u8]) -> DerResult<Vec<u64>> {
    let bad = DerError::BadValue("object identifier");
    if content.is_empty() || content.last().is_some_and(|b| b & 0x80 != 0) {
        return Err(bad);
    }
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    let mut start = true;
    for &b in content {
        // A leading 0x80 would be a non-minimal encoding.
        if start && b == 0x80 {
            return Err(bad);
        }
        if value > (u64::MAX >> 7) {
            return Err(bad);
        }
        value = (value << 7) | u64::from(b & 0x7f);
        start = b & 0x80 == 0;
        if start {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    Ok(arcs)
}

/// The text of a directory string or IA5String: the ASCII and UTF-8 types as UTF-8, BMP
/// (UTF-16) and Universal (UTF-32) strings decoded.
pub fn string(tlv: &Tlv<'_>) -> DerResult<String> {
    let bad = DerError::BadValue("string");
    match tlv.tag {
        UTF8_STRING | PRINTABLE_STRING | TELETEX_STRING | IA5_STRING | VISIBLE_STRING => {
            std::str::from_utf8(tlv.content)
                .map(str::to_string)
                .map_err(|_| bad)
        }
        BMP_STRING => {
            if tlv.content.len() % 2 != 0 {
                return Err(bad);
            }
            let units = tlv
                .content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| bad)
        }
        UNIVERSAL_STRING => {
            if tlv.content.len() % 4 != 0 {
                return Err(bad);
            }
            tlv.content
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or(bad)
        }
        _ => Err(DerError::BadValue("string type")),
    }
}

/// A UTCTime or GeneralizedTime as Unix seconds. Only the DER forms: UTC ("Z"), seconds
/// present, no fraction. UTCTime years 50-99 are 19xx (RFC 5280).
pub fn time(tlv: &Tlv<'_>) -> DerResult<i64> {
    let bad = DerError::BadValue("time");
    let (year, rest) = match tlv.tag {
        UTC_TIME if tlv.content.len() == 13 => {
            let yy = digits(&tlv.content[..2]).ok_or(bad.clone())?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                &tlv.content[2..],
            )
        }
        GENERALIZED_TIME if tlv.content.len() == 15 => (
            digits(&tlv.content[..4]).ok_or(bad.clone())?,
            &tlv.content[4..],
        ),
        UTC_TIME | GENERALIZED_TIME => return Err(bad),
        found => {
            return Err(DerError::UnexpectedTag {
                expected: UTC_TIME,
                found,
            })
        }
    };
    // rest: MMDDHHMMSSZ
    if rest.len() != 11 || rest[10] != b'Z' {
        return Err(bad);
    }
    let field = |i: usize| digits(&rest[i..i + 2]).ok_or(bad.clone());
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return Err(bad);
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec)
}

/// ASCII decimal digits as a number (none of them may be anything else).
fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "der_tests.rs"]
mod tests;
