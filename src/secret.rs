//! Join tokens: generation from the OS CSPRNG, hashing for storage, constant-time comparison and
//! masking. A `Token` never prints its value through `Debug` or `Display`.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Bytes of randomness in a generated token (32 hex characters, as Teleport).
pub const TOKEN_BYTES: usize = 16;

/// A secret join token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token value given by a user (flag, file, config).
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// A fresh random token: 32 lowercase hex characters from the OS CSPRNG.
    pub fn generate() -> Self {
        Token(hex(&random_bytes::<TOKEN_BYTES>()))
    }

    /// The secret value, for sending it to the server or printing it once to the admin.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the value, hex: the only form in which a token is stored.
    pub fn hash_hex(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The masked form shown in listings and logs: stars and the last 4 characters.
    pub fn masked(&self) -> String {
        mask_with_suffix(self.0.len(), &self.last4())
    }

    /// The last four characters, which may be shown and stored in clear.
    pub fn last4(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    }
}

/// The short public identifier of a token, derived from its hash.
pub fn public_id(hash_hex: &str) -> &str {
    &hash_hex[..hash_hex.len().min(8)]
}

/// Tokens shorter than this are shown as stars only: four characters of a short static token
/// would give away too much of it.
const MIN_LEN_WITH_SUFFIX: usize = 16;

/// Stars for all but the known suffix.
pub fn mask_with_suffix(len: usize, suffix: &str) -> String {
    if len < MIN_LEN_WITH_SUFFIX {
        return "*".repeat(len.max(4));
    }
    let stars = len.saturating_sub(suffix.chars().count()).max(4);
    format!("{}{suffix}", "*".repeat(stars))
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.masked())
    }
}

impl From<&str> for Token {
    fn from(value: &str) -> Self {
        Token::new(value)
    }
}

/// On the wire a token is a plain string; only `Debug` and `Display` mask it, so a message that
/// holds one can be logged whole.
impl serde::Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Token)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// N bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing means the system cannot run anything secure; stop loudly.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// A random version-4 UUID, for host IDs.
pub fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// 8-4-4-4-12 hex digits in either case: how host IDs look.
pub fn is_uuid_shaped(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `s` is a UUID as `new_uuid` makes them (lowercase hex, 8-4-4-4-12).
pub fn is_uuid(s: &str) -> bool {
    is_uuid_shaped(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parses lowercase or uppercase hex; `None` on any other character (a sign, which
/// `from_str_radix` would take, included) or an odd length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_holding_a_token_send_it_but_never_print_it() {
        let t = Token::generate();
        let msg = crate::proto::Request::CheckToken {
            version: 1,
            token: t.clone(),
            role: "node".into(),
            remote_addr: String::new(),
        };
        assert!(!format!("{msg:?}").contains(t.expose()));
        let wire = serde_json::to_string(&msg).unwrap();
        assert!(wire.contains(t.expose()));
        let back: crate::proto::Request = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn unhex_takes_hex_digits_only() {
        assert_eq!(unhex("0aFf"), Some(vec![0x0a, 0xff]));
        for bad in ["+1", "-1", "0g", "abc", " 1"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_tokens_are_all_stars() {
        assert_eq!(Token::new("abcd").masked(), "****");
        assert_eq!(Token::new("abcdefgh").masked(), "********");
        let t = Token::new("0123456789abcdef");
        assert_eq!(t.masked(), "************cdef");
    }

    #[test]
    fn uuids_have_their_shape() {
        assert!(is_uuid(&new_uuid()));
        for bad in [
            "",
            "admin",
            "6805dda3-779e-493b-0000",
            "6805DDA3-779e-493b-0000-000000000000",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn generated_tokens_are_32_hex_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let t = Token::new("0123456789abcdef0123456789abcdef");
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains("0123456789abcdef"));
        assert!(shown.contains("cdef"));
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn uuid_has_version_4_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 255, 16])).unwrap(), vec![0, 255, 16]);
        assert!(unhex("zz").is_none());
    }
}
