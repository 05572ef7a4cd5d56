//! CA pins: "sha256:" + hex of SHA-256 over the certificate's DER SubjectPublicKeyInfo, as
//! Teleport and kubeadm compute them.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::secret::{ct_eq, hex, unhex};

#[derive(Clone, PartialEq, Eq)]
pub struct Pin([u8; 32]);

impl Pin {
    /// Parses "sha256:<64 hex>".
    pub fn parse(s: &str) -> Result<Pin> {
        let bad = || {
            Error::Config(format!(
                "invalid CA pin {s:?}: expected sha256:<64 hex>, as printed by \"tctl status\""
            ))
        };
        let hexpart = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        // Digits only: `u8::from_str_radix` alone would also take a sign ("+f").
        if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let bytes = unhex(hexpart).ok_or_else(bad)?;
        Ok(Pin(bytes.try_into().map_err(|_| bad())?))
    }

    /// The pin of a DER certificate.
    pub fn of_cert(der: &[u8]) -> Result<Pin> {
        let cert = crate::pki::x509::Certificate::parse(der)
            .map_err(|e| Error::Pki(format!("cannot parse CA certificate: {e}")))?;
        Ok(Pin(Sha256::digest(cert.spki_raw).into()))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Requires every CA certificate to match at least one pin (so during a rotation a joining
/// host needs the pins of both CAs, as in Teleport).
pub fn check_all(pins: &[Pin], certs_der: &[&[u8]]) -> Result<()> {
    if certs_der.is_empty() {
        return Err(Error::Pki("the server sent no CA certificate".into()));
    }
    let seen: Vec<Pin> = certs_der
        .iter()
        .map(|der| Pin::of_cert(der))
        .collect::<Result<_>>()?;
    let all_match = seen.iter().all(|s| pins.iter().any(|p| ct_eq(&p.0, &s.0)));
    if all_match {
        Ok(())
    } else {
        Err(Error::PinMismatch {
            seen: seen.iter().map(ToString::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::CertAuthority;

    #[test]
    fn parse_accepts_only_sha256_with_64_hex() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Pin::parse(&good).unwrap().to_string(), good);
        for bad in [
            "",
            "sha256:",
            "sha1:abcd",
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("sha256:{}", "+f".repeat(32)),
        ] {
            let err = Pin::parse(bad).unwrap_err().to_string();
            assert!(err.contains("expected sha256:<64 hex>"), "{err}");
        }
    }

    #[test]
    fn pin_is_over_the_spki_and_checked() {
        let ca = CertAuthority::generate("example.com").unwrap();
        let der = ca.cert_der().unwrap();
        let pin = Pin::of_cert(&der).unwrap();
        // Independent computation: the SPKI is the key pair's public key DER.
        let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        assert_eq!(pin.0, <[u8; 32]>::from(Sha256::digest(spki)));
        assert!(check_all(std::slice::from_ref(&pin), &[&der]).is_ok());

        let other = CertAuthority::generate("other.com").unwrap();
        let err = check_all(
            &[Pin::of_cert(&other.cert_der().unwrap()).unwrap()],
            &[&der],
        );
        match err {
            Err(Error::PinMismatch { seen }) => assert_eq!(seen, vec![pin.to_string()]),
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}
