//! A small mutation engine for fuzzing on stable Rust: an xorshift PRNG and byte-level mutations
//! of valid seed inputs (bit flips, interesting bytes, insert/delete/duplicate ranges, splices,
//! truncation, length prefixes, ASCII numbers, dictionary tokens, JSON tree edits). Shared by
//! `tests/fuzz` (in-process parsers) and `tests/live_fuzz.rs` (live ports).

#![allow(dead_code)]

use serde_json::Value;

/// xorshift64* seeded through splitmix64, so any seed (even 0) gives a good stream.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Small numbers are likelier: 1, 2, 4 ... up to `max`.
    pub fn small(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as usize - max.leading_zeros() as usize + 1);
        (1 + self.below(1usize << bits)).min(max.max(1))
    }
}

/// FNV-1a, to derive per-target seeds from names.
pub fn fnv(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, 0x01, 0xfe, b'\r', b'\n', b':', b'"', b'0', b'1', b'9', b' ', b'{', b'}',
    b'[', b']', b',', b'\\', b'-', b'/', b'?', b'=', b'&', b'%', b'.', b'\t', b'#', b'*', b'!',
    b'\'', b'@', b'+', b'`',
];

pub const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "-0",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e999",
    "1.5",
    "+1",
    "0x10",
    "00",
    " 1",
];

/// Dictionary tokens every target gets.
pub const COMMON_DICT: &[&str] = &[
    "\r\n",
    "\r\n\r\n",
    "\0",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    "%00",
];

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    teleport_lite::secret::unhex(&s)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// DER bytes as a PEM block with `label`, 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b = base64(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// What a target gets mutated from.
pub struct Mutator {
    pub corpus: Vec<Vec<u8>>,
    pub dict: Vec<Vec<u8>>,
    pub max_len: usize,
}

impl Mutator {
    pub fn new(seeds: Vec<Vec<u8>>, dict: &[&str], max_len: usize) -> Mutator {
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for s in seeds {
            if !corpus.contains(&s) {
                corpus.push(s);
            }
        }
        if corpus.is_empty() {
            corpus.push(Vec::new());
        }
        let dict = dict
            .iter()
            .chain(COMMON_DICT)
            .map(|d| d.as_bytes().to_vec())
            .collect();
        Mutator {
            corpus,
            dict,
            max_len,
        }
    }

    /// A mutant of a random corpus entry: 1 to 16 stacked mutations, small counts likelier.
    pub fn mutate(&self, rng: &mut Rng) -> Vec<u8> {
        let mut data = rng.pick(&self.corpus).clone();
        let rounds = rng.small(16);
        for _ in 0..rounds {
            self.mutate_once(rng, &mut data);
        }
        data.truncate(self.max_len);
        data
    }

    pub fn mutate_once(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        match rng.below(15) {
            0 | 1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            2 | 3 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = *rng.pick(INTERESTING_BYTES);
            }
            4 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next_u64() as u8;
            }
            5 => {
                // Insert random or repeated interesting bytes.
                let at = rng.below(data.len() + 1);
                let n = rng.small(64);
                let bytes: Vec<u8> = if rng.one_in(2) {
                    (0..n).map(|_| rng.next_u64() as u8).collect()
                } else {
                    vec![*rng.pick(INTERESTING_BYTES); n]
                };
                data.splice(at..at, bytes);
            }
            6 if !data.is_empty() => {
                let start = rng.below(data.len());
                let len = rng.small(data.len() - start);
                data.drain(start..start + len);
            }
            7 if !data.is_empty() => {
                // Duplicate a range somewhere else, sometimes many times.
                let start = rng.below(data.len());
                let len = rng.small((data.len() - start).min(4096));
                let chunk = data[start..start + len].to_vec();
                let times = if rng.one_in(8) { rng.small(256) } else { 1 };
                let at = rng.below(data.len() + 1);
                let rep: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take((chunk.len() * times).min(self.max_len))
                    .collect();
                data.splice(at..at, rep);
            }
            8 => {
                // Splice: a prefix of this input, a suffix of another.
                let other = rng.pick(&self.corpus);
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            9 if !data.is_empty() => {
                let at = rng.below(data.len());
                data.truncate(at);
            }
            10 => grow_length(rng, data),
            11 => {
                let tok = rng.pick(&self.dict).clone();
                let at = rng.below(data.len() + 1);
                if rng.one_in(2) || at == data.len() {
                    data.splice(at..at, tok);
                } else {
                    let end = (at + tok.len()).min(data.len());
                    data.splice(at..end, tok);
                }
            }
            12 => replace_number(rng, data),
            13 => {
                if let Some(j) = mutate_json(rng, data) {
                    *data = j;
                }
            }
            _ if !data.is_empty() => {
                // Flip the case of an ASCII letter (methods, header names, enum tags).
                let i = rng.below(data.len());
                if data[i].is_ascii_alphabetic() {
                    data[i] ^= 0x20;
                }
            }
            _ => data.push(rng.next_u64() as u8),
        }
    }
}

/// Rewrites a big-endian length field: the frame prefix at 0, a DER long-form length, or a
/// 16/32-bit field at a random place; set to boundaries or nudged.
pub fn grow_length(rng: &mut Rng, data: &mut [u8]) {
    if data.len() < 2 {
        return;
    }
    let der = data
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] == 0x82 && (w[0] == 0x30 || w[0] == 0x04 || w[0] == 0x03))
        .map(|(i, _)| i + 2)
        .filter(|&i| i + 2 <= data.len())
        .collect::<Vec<_>>();
    let (pos, width) = match rng.below(4) {
        0 if data.len() >= 4 => (0, 4),
        1 if !der.is_empty() => (*rng.pick(&der), 2),
        2 if data.len() >= 4 => (rng.below(data.len() - 3), 4),
        _ => (rng.below(data.len() - 1), 2),
    };
    let old = data[pos..pos + width]
        .iter()
        .fold(0u64, |v, b| (v << 8) | u64::from(*b));
    let max = if width == 4 {
        u64::from(u32::MAX)
    } else {
        u64::from(u16::MAX)
    };
    let new = match rng.below(8) {
        0 => 0,
        1 => max,
        2 => max / 2,
        3 => max / 2 + 1,
        4 => old.wrapping_add(1 + rng.below(16) as u64),
        5 => old.wrapping_sub(1 + rng.below(16) as u64),
        6 => old.wrapping_mul(2),
        _ => (data.len() - pos) as u64,
    } & max;
    for i in 0..width {
        data[pos + i] = (new >> (8 * (width - 1 - i))) as u8;
    }
}

/// Replaces a run of ASCII digits (a length, a version, a port) with an interesting number.
pub fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    let num = rng.pick(INTERESTING_NUMBERS).as_bytes().to_vec();
    if runs.is_empty() {
        let at = rng.below(data.len() + 1);
        data.splice(at..at, num);
    } else {
        let (s, e) = *rng.pick(&runs);
        data.splice(s..e, num);
    }
}

/// Edits one node of a JSON document (or of the JSON payload of one length-prefixed frame,
/// whose prefix is then fixed up). `None` when the input is neither.
pub fn mutate_json(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
        edit_value(rng, &mut v);
        return serde_json::to_vec(&v).ok();
    }
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    let mut v = serde_json::from_slice::<Value>(body).ok()?;
    edit_value(rng, &mut v);
    let body = serde_json::to_vec(&v).ok()?;
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&data[4 + len..]);
    Some(out)
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

fn nth(v: &mut Value, mut n: usize) -> Option<&mut Value> {
    fn walk<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| walk(c, n)),
            Value::Object(o) => o.values_mut().find_map(|c| walk(c, n)),
            _ => None,
        }
    }
    walk(v, &mut n)
}

fn edit_value(rng: &mut Rng, root: &mut Value) {
    let n = rng.below(count(root));
    let Some(v) = nth(root, n) else { return };
    let replacement = match rng.below(16) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => serde_json::json!(0),
        3 => serde_json::json!(-1),
        4 => serde_json::json!(u64::MAX),
        5 => serde_json::json!(1e300),
        6 => Value::String(String::new()),
        7 => Value::String("A".repeat(rng.small(70_000))),
        8 => Value::String("\u{0}\r\n../\u{202e}é'\"".into()),
        9 => serde_json::json!([]),
        10 => serde_json::json!({}),
        11 => {
            let mut deep = Value::Null;
            for _ in 0..rng.small(200) {
                deep = Value::Array(vec![deep]);
            }
            deep
        }
        12 => Value::Array(vec![v.clone(); rng.small(8)]),
        13 => match &mut *v {
            Value::Object(o) if !o.is_empty() => {
                let k = o
                    .keys()
                    .nth(rng.below(o.len()))
                    .cloned()
                    .unwrap_or_default();
                o.remove(&k);
                return;
            }
            _ => Value::Null,
        },
        14 => match &mut *v {
            Value::Object(o) => {
                o.insert("unknown_field".into(), Value::Bool(true));
                return;
            }
            _ => Value::String("x".into()),
        },
        _ => match &*v {
            Value::String(s) => {
                let mut b = s.clone().into_bytes();
                let bytes = [b'/', b':', b',', b'.', b'-', b'_', b' ', b'*'];
                let at = rng.below(b.len() + 1);
                b.insert(at, *rng.pick(&bytes));
                Value::String(String::from_utf8_lossy(&b).into_owned())
            }
            Value::Number(_) => serde_json::json!(rng.next_u64() >> rng.below(64)),
            other => other.clone(),
        },
    };
    *v = replacement;
}
