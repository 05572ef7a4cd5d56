//! Certificates: the cluster CA, SPKI pins, and identities stored on disk.

pub mod ca;
pub mod csr;
pub mod der;
pub mod identity;
pub mod issuer;
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

/// Parses a DER certificate, with the error text every caller gives.
pub fn parse_cert(der: &[u8]) -> Result<x509::Certificate<'_>> {
    x509::Certificate::parse(der).map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))
}

/// Reads host ID (CN), role (O), cluster (OU) and node name (the `name` attribute) from a DER
/// certificate. A missing attribute reads as empty.
pub fn subject_of(der: &[u8]) -> Result<Subject> {
    let cert = parse_cert(der)?;
    let first = |oid: &[u8]| {
        cert.subject
            .first(oid)
            .map(Option::unwrap_or_default)
            .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))
    };
    Ok(Subject {
        host_id: first(x509::oid::COMMON_NAME)?,
        role: first(x509::oid::ORGANIZATION)?,
        cluster: first(x509::oid::ORGANIZATIONAL_UNIT)?,
        node_name: first(x509::oid::NAME)?,
    })
}

/// What renewal decisions need of a certificate: its issuer's name, issue time and expiry.
pub fn facts_of(der: &[u8]) -> Result<crate::core::rotation::CertFacts> {
    let cert = parse_cert(der)?;
    Ok(crate::core::rotation::CertFacts {
        issuer: cert.issuer.raw.to_vec(),
        issued: cert.not_before + ca::BACKDATE.as_secs() as i64,
        not_after: cert.not_after,
    })
}

/// The DER of a CA certificate's own name, which the certificates it signs carry as issuer.
pub fn subject_name_of(der: &[u8]) -> Result<Vec<u8>> {
    Ok(parse_cert(der)?.subject.raw.to_vec())
}

/// The names (DNS and IP) a certificate is valid for: what a proxy's renewed certificate
/// keeps, as auth chose them at its join.
pub fn sans_of(der: &[u8]) -> Result<ca::Sans> {
    let names = parse_cert(der)?
        .subject_alt_names()
        .map_err(|e| Error::Pki(format!("cannot parse certificate: {e}")))?;
    let mut sans = ca::Sans::default();
    for name in names {
        match name {
            x509::GeneralName::Dns(d) => sans.dns.push(d),
            x509::GeneralName::Ip(ip) => sans.ips.push(ip),
            x509::GeneralName::Uri(_) => {}
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
