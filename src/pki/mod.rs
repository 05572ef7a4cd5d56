//! Certificates: the cluster CA, SPKI pins, and identities stored on disk.

pub mod ca;
pub mod identity;
pub mod pin;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

/// The name every auth server's certificate carries and every client verifies, so that joining
/// by IP address or by any DNS name works without IP SANs.
pub const AUTH_SERVER_NAME: &str = "teleport.cluster.local";

/// The name every proxy's tunnel certificate carries and agents verify on tunnels, whatever
/// address (often a load balancer) they dialed.
pub const PROXY_SERVER_NAME: &str = "proxy.teleport.cluster.local";

/// Roles as encoded in a certificate's Organization.
pub const ROLE_NODE: &str = "Node";
pub const ROLE_ADMIN: &str = "Admin";
pub const ROLE_AUTH: &str = "Auth";
pub const ROLE_PROXY: &str = "Proxy";

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

/// What a certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub host_id: String,
    pub role: String,
    pub cluster: String,
}

/// Reads host ID (CN), role (O) and cluster (OU) from a DER certificate.
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
    let host_id = first(&mut subject.iter_common_name());
    let role = first(&mut subject.iter_organization());
    let cluster = first(&mut subject.iter_organizational_unit());
    Ok(Subject {
        host_id,
        role,
        cluster,
    })
}
