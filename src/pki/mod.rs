//! Certificates: the cluster CA, SPKI pins, and identities stored on disk.

pub mod ca;
pub mod der;
pub mod identity;
pub mod live;
pub mod pin;
pub mod proof;
pub mod provider;
pub mod verify;
pub mod webpin;
pub mod x509;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

// Protocol vocabulary, re-exported for older callers: new code takes it from `proto`.
pub use crate::proto::names::{
    AUTH_SERVER_NAME, PROXY_SERVER_NAME, ROLE_ADMIN, ROLE_AUTH, ROLE_NODE, ROLE_PROXY, ROLE_USER,
};

/// Parses every certificate in a PEM bundle.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pki(format!("cannot parse PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Pki("no certificate found in PEM data".into()));
    }
    Ok(certs)
}

/// The X.500 `name` attribute (2.5.4.41): where auth records the node name it accepted at
/// join. It is not a SAN, so it never makes a host a TLS server for any name.
pub const NAME_ATTRIBUTE_OID: [u64; 4] = [2, 5, 4, 41];

/// What a certificate says about its holder. Every field was chosen by auth.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub host_id: String,
    pub role: String,
    pub cluster: String,
    /// The node name accepted at join (empty for roles that have none).
    pub node_name: String,
}

/// Reads host ID (CN), role (O), cluster (OU) and node name (the `name` attribute) from a DER
/// certificate.
pub fn subject_of(der: &[u8]) -> Result<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))?;
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let subject = cert.subject();
    let name_oid = x509_parser::der_parser::oid::Oid::from(&NAME_ATTRIBUTE_OID)
        .map_err(|_| Error::Pki("bad name attribute OID".into()))?;
    let out = Subject {
        host_id: first(&mut subject.iter_common_name()),
        role: first(&mut subject.iter_organization()),
        cluster: first(&mut subject.iter_organizational_unit()),
        node_name: first(&mut subject.iter_by_oid(&name_oid)),
    };
    Ok(out)
}

/// What renewal decisions need of a certificate: its issuer's name, issue time and expiry.
pub fn facts_of(der: &[u8]) -> Result<crate::core::rotation::CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))?;
    let v = cert.validity();
    Ok(crate::core::rotation::CertFacts {
        issuer: cert.issuer().as_raw().to_vec(),
        issued: v.not_before.timestamp() + ca::BACKDATE.as_secs() as i64,
        not_after: v.not_after.timestamp(),
    })
}

/// The DER of a CA certificate's own name, which the certificates it signs carry as issuer.
pub fn subject_name_of(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))?;
    Ok(cert.subject().as_raw().to_vec())
}

/// The names (DNS and IP) a certificate is valid for: what a proxy's renewed certificate
/// keeps, as auth chose them at its join.
pub fn sans_of(der: &[u8]) -> Result<ca::Sans> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))?;
    let mut sans = ca::Sans::default();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.dns.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.ips.push(std::net::IpAddr::from(
                        <[u8; 4]>::try_from(*b).unwrap_or_default(),
                    )),
                    16 => sans.ips.push(std::net::IpAddr::from(
                        <[u8; 16]>::try_from(*b).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(sans)
}

/// A DER certificate as PEM.
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = webpin::base64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The certificate in a `Renewed` answer: what renewal decisions need of it, and its PEM.
pub fn renewed_cert(
    answer: &crate::proto::Response,
) -> Option<(crate::core::rotation::CertFacts, String)> {
    let crate::proto::Response::Renewed { tls, .. } = answer else {
        return None;
    };
    let der = certs_from_pem(tls).ok()?.into_iter().next()?;
    Some((facts_of(&der).ok()?, tls.clone()))
}
