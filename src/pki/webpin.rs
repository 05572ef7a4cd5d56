//! Pins of the certificates a proxy's web listener serves, in curl's `--pinnedpubkey` format
//! (`sha256//` + base64 of the SHA-256 of the SubjectPublicKeyInfo DER). The printed install
//! line and the install script pin the proxies' web keys with them, so a default cluster (whose
//! proxies serve cluster-issued certificates no system trusts) installs without an unverified
//! download.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefix of every pin; what follows is 44 characters of standard base64.
pub const PREFIX: &str = "sha256//";
/// At most this many pins per proxy (a web certificate and the cluster-issued one, with room).
pub const MAX_PER_PROXY: usize = 4;
const B64_LEN: usize = 44;

/// The curl pin of a DER certificate's public key.
pub fn of_cert(der: &[u8]) -> Result<String> {
    let cert = crate::pki::x509::Certificate::parse(der)
        .map_err(|e| Error::Pki(format!("cannot parse the web certificate: {e}")))?;
    Ok(format!(
        "{PREFIX}{}",
        base64(&Sha256::digest(cert.spki_raw))
    ))
}

/// Whether `s` is one well-formed pin: checked where a proxy reports them, because they end
/// up inside a shell command line.
pub fn is_valid(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|b| {
        b.len() == B64_LEN
            && b.ends_with('=')
            && b[..B64_LEN - 1]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

/// Checks a proxy's report: a few well-formed pins.
pub fn check_list(pins: &[String]) -> std::result::Result<(), String> {
    if pins.len() > MAX_PER_PROXY {
        return Err(format!(
            "too many web pins ({}, at most {MAX_PER_PROXY})",
            pins.len()
        ));
    }
    match pins.iter().find(|p| !is_valid(p)) {
        Some(bad) => Err(format!(
            "malformed web pin {:?}: expected sha256//<base64>",
            bad.chars().take(64).collect::<String>()
        )),
        None => Ok(()),
    }
}

/// The argument of curl's `--pinnedpubkey`: pins joined by `;`, sorted, without duplicates.
pub fn curl_arg(pins: &[String]) -> String {
    let mut v: Vec<&str> = pins.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(";")
}

/// Standard base64 with padding (RFC 4648), for the 32-byte digests above.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn pins_of_certificates_are_valid_and_others_are_not() {
        let ca = crate::pki::ca::CertAuthority::generate("example.test").unwrap();
        let der = ca.cert_der().unwrap();
        let pin = of_cert(&der).unwrap();
        assert!(is_valid(&pin), "{pin}");
        assert!(check_list(std::slice::from_ref(&pin)).is_ok());
        for bad in [
            "sha256//",
            "sha256:abc",
            &format!("{pin};x"),
            &pin.replace('=', "'"),
            &format!("{pin} "),
            &format!("sha256//{}=", "$".repeat(43)),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(check_list(&vec![pin.clone(); 5]).is_err());
        assert_eq!(curl_arg(&[pin.clone(), pin.clone()]), pin);
    }
}
