//! What a host may announce about itself: node names and labels, checked where a message
//! enters (auth and proxy) so that one host can neither forge rows in listings nor push a
//! relayed message past a frame limit. No I/O.

use std::collections::BTreeMap;
use std::fmt;

pub use super::names::{AUTH_SERVER_NAME, PROXY_SERVER_NAME};

/// Longest host name (DNS limit).
pub const MAX_NAME_LEN: usize = 253;
/// Most labels a host may announce.
pub const MAX_LABELS: usize = 64;
/// Longest label key and value. With `MAX_LABELS`, `MAX_NAME_LEN` and `MAX_VERSION` this bounds
/// a relayed heartbeat to about 25 KiB, far below every frame limit, so a relaying proxy never
/// forwards an oversized frame.
pub const MAX_LABEL_KEY: usize = 128;
pub const MAX_LABEL_VALUE: usize = 256;
/// Longest version string (`[A-Za-z0-9.+_-]`) and announced address (`host[:port]`).
pub const MAX_VERSION: usize = 64;
pub const MAX_ADDR: usize = 261;

/// Why a name or label set was refused. Messages are safe to send back to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    Name { what: &'static str, name: String },
    /// The name belongs to the cluster's own servers.
    Reserved { name: String },
    /// More labels than `MAX_LABELS`.
    TooManyLabels { count: usize },
    /// A label key that is empty, too long or has characters outside `[A-Za-z0-9/._:*-]`.
    LabelKey { key: String },
    /// A label value that is too long or holds control characters.
    LabelValue { key: String },
    /// A node announced a name other than the one auth put into its certificate.
    NotCertName { announced: String, cert: String },
    /// A node certificate issued before names were bound to certificates.
    NoCertName,
    /// A version string that is too long or has characters outside `[A-Za-z0-9.+_-]`.
    Version,
    /// An announced address that is not `host[:port]` within `MAX_ADDR` characters.
    Addr { addr: String },
    /// A name shaped like a host UUID, which would be mistaken for another host's ID.
    UuidShaped { name: String },
}

/// At most this many characters of a refused input are echoed back.
const ECHO: usize = 64;

fn echo(s: &str) -> String {
    let short: String = s.chars().take(ECHO).collect();
    let mut out = format!("{short:?}");
    if s.chars().count() > ECHO {
        out.push_str("...");
    }
    out
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Name { what, name } => write!(
                f,
                "invalid {what} {}: use letters, digits, '-', '.' and '_' (at most \
                 {MAX_NAME_LEN})",
                echo(name)
            ),
            Invalid::Reserved { name } => write!(
                f,
                "the name {} is reserved for the cluster's own servers: set another nodename",
                echo(name)
            ),
            Invalid::TooManyLabels { count } => {
                write!(f, "{count} labels given: at most {MAX_LABELS} are allowed")
            }
            Invalid::LabelKey { key } => write!(
                f,
                "invalid label key {}: use letters, digits and '/._:*-' (at most \
                 {MAX_LABEL_KEY})",
                echo(key)
            ),
            Invalid::LabelValue { key } => write!(
                f,
                "invalid value of label {}: at most {MAX_LABEL_VALUE} characters, no control \
                 characters",
                echo(key)
            ),
            Invalid::NotCertName { announced, cert } => write!(
                f,
                "this node joined as {} but announces itself as {}: set nodename back, or \
                 remove the identity in data_dir and join again with a token",
                echo(cert),
                echo(announced)
            ),
            Invalid::Version => write!(
                f,
                "invalid server_version: at most {MAX_VERSION} characters of letters, digits \
                 and '.+_-'"
            ),
            Invalid::Addr { addr } => write!(
                f,
                "invalid public_addr {}: use host[:port] (at most {MAX_ADDR} characters)",
                echo(addr)
            ),
            Invalid::UuidShaped { name } => write!(
                f,
                "the name {} looks like a host UUID and would be confused with one: set another \
                 nodename",
                echo(name)
            ),
            Invalid::NoCertName => write!(
                f,
                "this node's certificate carries no node name (it predates this version): \
                 remove the identity in data_dir and join again with a token"
            ),
        }
    }
}

impl std::error::Error for Invalid {}

/// A node's hello on a stream or tunnel: the name must be the one in its certificate (auth
/// chose it at join), the labels within the caps.
pub fn check_hello(hello: &super::StreamHello, cert_name: &str) -> Result<(), Invalid> {
    check_name(&hello.node_name, "node_name")?;
    if cert_name.is_empty() {
        return Err(Invalid::NoCertName);
    }
    if hello.node_name != cert_name {
        return Err(Invalid::NotCertName {
            announced: hello.node_name.clone(),
            cert: cert_name.to_string(),
        });
    }
    check_labels(&hello.labels)?;
    check_version(&hello.server_version)?;
    check_addr(&hello.public_addr)
}

/// A version string as peers announce it (e.g. `0.1.0`, `17.2.1-dev+abc`).
pub fn check_version(v: &str) -> Result<(), Invalid> {
    let ok = v.len() <= MAX_VERSION
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+_-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Invalid::Version)
    }
}

/// An announced address: empty, or `host[:port]` / `[v6]:port` in printable ASCII.
pub fn check_addr(a: &str) -> Result<(), Invalid> {
    let ok = a.len() <= MAX_ADDR
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-_:[]".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Invalid::Addr {
            addr: a.to_string(),
        })
    }
}

/// Characters that change how a terminal shows text without being visible themselves:
/// controls, zero-width and direction marks, line and paragraph separators.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A field from the cluster made safe for a terminal: control characters (newlines, escape
/// sequences) are shown escaped, so no field can forge rows or move the cursor, and the text
/// is cut at `max` characters.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        if is_deceptive(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Names that only the cluster's own servers may carry.
pub fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == AUTH_SERVER_NAME || lower.ends_with(&format!(".{AUTH_SERVER_NAME}"))
}

/// A host name as hosts announce it: `[A-Za-z0-9._-]`, 1 to 253 characters.
pub fn check_name(name: &str, what: &'static str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::Name {
            what,
            name: name.to_string(),
        })
    }
}

/// A name a joining host may take: valid and not reserved.
pub fn check_host_name(name: &str) -> Result<(), Invalid> {
    check_name(name, "node_name")?;
    if is_reserved(name) {
        return Err(Invalid::Reserved {
            name: name.to_string(),
        });
    }
    if is_uuid_shaped(name) {
        return Err(Invalid::UuidShaped {
            name: name.to_string(),
        });
    }
    Ok(())
}

pub use crate::secret::is_uuid_shaped;

/// Labels as hosts announce them.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(Invalid::TooManyLabels {
            count: labels.len(),
        });
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_LABEL_KEY
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/._:*-".contains(&c));
        if !key_ok {
            return Err(Invalid::LabelKey { key: k.clone() });
        }
        if v.len() > MAX_LABEL_VALUE || v.chars().any(is_deceptive) {
            return Err(Invalid::LabelValue { key: k.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_refused_in_any_case() {
        for n in [
            "teleport.cluster.local",
            "PROXY.teleport.cluster.local",
            "x.Teleport.Cluster.Local",
        ] {
            assert!(matches!(check_host_name(n), Err(Invalid::Reserved { .. })));
        }
        assert!(check_host_name("web-1.example.com").is_ok());
        assert!(matches!(
            check_host_name("6805DDA3-779e-493b-0000-000000000000"),
            Err(Invalid::UuidShaped { .. })
        ));
        assert!(check_host_name("cluster.local").is_ok());
    }

    #[test]
    fn names_with_escapes_or_newlines_are_refused() {
        for n in ["", "a b", "a\nb", "\u{1b}[2J", &"a".repeat(254)] {
            assert!(check_name(n, "node_name").is_err(), "{n:?}");
        }
    }

    #[test]
    fn a_hello_must_carry_the_name_in_the_certificate() {
        let hello = |name: &str| super::super::StreamHello {
            version: 1,
            node_name: name.into(),
            server_version: String::new(),
            labels: BTreeMap::new(),
            public_addr: String::new(),
        };
        assert!(check_hello(&hello("web-1"), "web-1").is_ok());
        assert!(matches!(
            check_hello(&hello("db-1"), "web-1"),
            Err(Invalid::NotCertName { .. })
        ));
        assert_eq!(check_hello(&hello("web-1"), ""), Err(Invalid::NoCertName));
        let mut long_version = hello("web-1");
        long_version.server_version = "1".repeat(200_000);
        assert_eq!(check_hello(&long_version, "web-1"), Err(Invalid::Version));
        let mut odd_addr = hello("web-1");
        odd_addr.public_addr = "evil.example:22\u{1b}[2J".into();
        assert!(matches!(
            check_hello(&odd_addr, "web-1"),
            Err(Invalid::Addr { .. })
        ));
        odd_addr.public_addr = "[2001:db8::1]:3022".into();
        assert!(check_hello(&odd_addr, "web-1").is_ok());
    }

    #[test]
    fn labels_are_capped_and_clean() {
        let mut l = BTreeMap::new();
        l.insert("env".to_string(), "prod".to_string());
        l.insert("teleport.dev/origin".to_string(), "a b:c".to_string());
        assert!(check_labels(&l).is_ok());
        let bad_value: BTreeMap<_, _> = [("k".to_string(), "a\nb".to_string())].into();
        assert!(matches!(
            check_labels(&bad_value),
            Err(Invalid::LabelValue { .. })
        ));
        for sneaky in ["\u{202E}gnp.exe", "a\u{200B}b", "a\u{2028}b"] {
            let m: BTreeMap<_, _> = [("k".to_string(), sneaky.to_string())].into();
            assert!(check_labels(&m).is_err(), "{sneaky:?}");
        }
        let korean: BTreeMap<_, _> = [("team".to_string(), "보안팀".to_string())].into();
        assert!(check_labels(&korean).is_ok());
        let long_value: BTreeMap<_, _> = [("k".to_string(), "v".repeat(70_000))].into();
        assert!(check_labels(&long_value).is_err());
        let bad_key: BTreeMap<_, _> = [("k\u{1b}".to_string(), String::new())].into();
        assert!(matches!(
            check_labels(&bad_key),
            Err(Invalid::LabelKey { .. })
        ));
        let many: BTreeMap<_, _> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(matches!(
            check_labels(&many),
            Err(Invalid::TooManyLabels { .. })
        ));
        let msg = check_labels(&long_value).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }
}
