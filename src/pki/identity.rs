//! An identity: private key, certificate issued by the cluster CA, and the CA certificates to
//! trust. Stored as one PEM bundle (0600), so it is written in one atomic step.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::pki::{certs_from_pem, subject_of, Subject};

#[derive(Clone)]
pub struct Identity {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pems: Vec<String>,
}

impl Identity {
    /// The subject of our own certificate.
    pub fn subject(&self) -> Result<Subject> {
        subject_of(&self.cert_der()?)
    }

    /// When our certificate stops being valid (Unix seconds).
    pub fn not_after(&self) -> Result<i64> {
        Ok(crate::pki::parse_cert(&self.cert_der()?)?.not_after)
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>> {
        Ok(certs_from_pem(&self.cert_pem)?.remove(0))
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| Error::Pki(format!("cannot parse private key: {e}")))
    }

    pub fn ca_ders(&self) -> Result<Vec<CertificateDer<'static>>> {
        let mut out = Vec::new();
        for pem in &self.ca_pems {
            out.extend(certs_from_pem(pem)?);
        }
        Ok(out)
    }

    /// The bundle: key, then certificate, then CA certificates.
    pub fn to_pem(&self) -> String {
        let mut s = String::new();
        for part in std::iter::once(&self.key_pem)
            .chain(std::iter::once(&self.cert_pem))
            .chain(&self.ca_pems)
        {
            s.push_str(part.trim_end());
            s.push('\n');
        }
        s
    }

    /// Parses a bundle written by `to_pem`.
    pub fn from_pem(pem: &str) -> Result<Identity> {
        let key_pem = pem_blocks(pem, "PRIVATE KEY")
            .into_iter()
            .next()
            .ok_or_else(|| Error::Pki("identity file holds no private key".into()))?;
        let mut certs = pem_blocks(pem, "CERTIFICATE").into_iter();
        let cert_pem = certs
            .next()
            .ok_or_else(|| Error::Pki("identity file holds no certificate".into()))?;
        let ca_pems: Vec<String> = certs.collect();
        if ca_pems.is_empty() {
            return Err(Error::Pki("identity file holds no CA certificate".into()));
        }
        let id = Identity {
            key_pem,
            cert_pem,
            ca_pems,
        };
        id.key_der()?;
        id.subject()?;
        Ok(id)
    }

    pub fn load(path: &Path) -> Result<Identity> {
        let text = fsutil::read_to_string(path)?;
        Identity::from_pem(&text).map_err(|e| {
            Error::Pki(format!(
                "{}: {e}; remove the file and join again with a token",
                path.display()
            ))
        })
    }

    /// Loads the identity if the file exists.
    pub fn load_optional(path: &Path) -> Result<Option<Identity>> {
        if path.exists() {
            Identity::load(path).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        fsutil::write_atomic(path, self.to_pem().as_bytes(), 0o600)
    }
}

/// PEM blocks whose label ends with `label` (so "EC PRIVATE KEY" and "PRIVATE KEY" both match).
fn pem_blocks(text: &str, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            if rest.trim_end_matches('-').ends_with(label) {
                current = Some(String::new());
            }
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                out.extend(current.take());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::{CertAuthority, Sans};

    #[test]
    fn bundle_round_trips_and_keeps_the_subject() {
        let ca = CertAuthority::generate("c.example").unwrap();
        let subject = Subject {
            host_id: "h1".into(),
            role: "Admin".into(),
            cluster: "c.example".into(),
            node_name: String::new(),
        };
        let (key, cert) = ca
            .issue_local(
                &subject,
                &Sans::default(),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let id = Identity {
            key_pem: key,
            cert_pem: cert,
            ca_pems: vec![ca.cert_pem.clone()],
        };
        let back = Identity::from_pem(&id.to_pem()).unwrap();
        assert_eq!(back.subject().unwrap(), subject);
        assert_eq!(back.ca_ders().unwrap().len(), 1);
        assert!(Identity::from_pem("garbage").is_err());
    }
}
