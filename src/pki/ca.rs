//! The cluster's host certificate authority (ECDSA P-256): creation and issuing certificates.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::pki::{certs_from_pem, Subject, NAME_ATTRIBUTE_OID};
use crate::proto::{ROLE_AUTH, ROLE_PROXY};

/// Validity of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default validity of host certificates (`auth_service.host_cert_ttl`): hosts renew them at
/// two thirds of their life over their stream.
pub const HOST_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated between hosts: every certificate starts this long before it is
/// issued, so its issue time is `not_before + BACKDATE`.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// The CA's certificate and private key, both PEM.
#[derive(Clone)]
pub struct CertAuthority {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CSR whose signature was checked; only its public key is ever used.
pub struct Csr(crate::pki::csr::CsrKey);

impl Csr {
    /// SHA-256 of the public key it asks to certify.
    pub fn key_fingerprint(&self) -> [u8; 32] {
        use rcgen::PublicKeyData;
        use sha2::{Digest, Sha256};
        Sha256::digest(self.0.der_bytes()).into()
    }
}

/// Names to put into an issued certificate.
#[derive(Debug, Clone, Default)]
pub struct Sans {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertAuthority {
    /// A new self-signed CA for `cluster_name`.
    pub fn generate(cluster_name: &str) -> Result<Self> {
        Self::generate_named(cluster_name, None)
    }

    /// A CA for a rotation: its name differs from every earlier CA of the cluster (by
    /// `generation`), so a certificate's issuer name tells which CA signed it.
    pub fn generate_named(cluster_name: &str, generation: Option<&str>) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cluster_name);
        dn.push(DnType::OrganizationName, cluster_name);
        if let Some(g) = generation {
            dn.push(DnType::OrganizationalUnitName, g);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>> {
        Ok(certs_from_pem(&self.cert_pem)?.remove(0))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        crate::pki::issuer::from_ca_cert(&self.cert_der()?, key)
    }

    fn params_for(subject: &Subject, sans: &Sans, validity: Duration) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.host_id.as_str());
        dn.push(DnType::OrganizationName, subject.role.as_str());
        dn.push(DnType::OrganizationalUnitName, subject.cluster.as_str());
        if !subject.node_name.is_empty() {
            dn.push(
                DnType::CustomDnType(NAME_ATTRIBUTE_OID.to_vec()),
                subject.node_name.as_str(),
            );
        }
        params.distinguished_name = dn;
        for name in &sans.dns {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| Error::Pki(format!("invalid DNS name {name:?}")))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in &sans.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // Only auth and proxies serve TLS; a node or admin certificate can only be a client.
        params.extended_key_usages = if [ROLE_AUTH, ROLE_PROXY].contains(&subject.role.as_str()) {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        set_validity(&mut params, validity);
        Ok(params)
    }

    /// Parses a CSR and checks that its signature proves the key.
    pub fn parse_csr(csr_pem: &str) -> Result<Csr> {
        crate::pki::csr::parse_pem(csr_pem)
            .map(Csr)
            .map_err(|e| Error::Pki(format!("invalid certificate signing request: {e}")))
    }

    /// Signs a host's CSR. Only the CSR's public key is used (its signature proves the host
    /// holds the private key); subject and names are decided here, never by the requester.
    pub fn sign_csr(&self, csr_pem: &str, subject: &Subject, sans: &Sans) -> Result<String> {
        self.sign_parsed(&Self::parse_csr(csr_pem)?, subject, sans)
    }

    /// Signs a CSR parsed by `parse_csr` for a host, valid for `validity`.
    pub fn sign_host(
        &self,
        csr: &Csr,
        subject: &Subject,
        sans: &Sans,
        validity: Duration,
    ) -> Result<String> {
        let params = Self::params_for(subject, sans, validity)?;
        Ok(params.signed_by(&csr.0, &self.issuer()?)?.pem())
    }

    /// Signs a CSR parsed by `parse_csr` with the default host validity.
    pub fn sign_parsed(&self, csr: &Csr, subject: &Subject, sans: &Sans) -> Result<String> {
        self.sign_host(csr, subject, sans, HOST_CERT_VALIDITY)
    }

    /// Signs a CSR parsed by `parse_csr` with a validity other than a host's (user identities).
    pub fn sign_parsed_for(
        &self,
        csr: &Csr,
        subject: &Subject,
        validity: Duration,
    ) -> Result<String> {
        let params = Self::params_for(subject, &Sans::default(), validity)?;
        Ok(params.signed_by(&csr.0, &self.issuer()?)?.pem())
    }

    /// Issues a key pair and certificate for a local identity (auth's own TLS certificate, the
    /// admin identity, the node of an all-in-one process). Returns (key PEM, cert PEM).
    pub fn issue_local(
        &self,
        subject: &Subject,
        sans: &Sans,
        validity: Duration,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let params = Self::params_for(subject, sans, validity)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((key.serialize_pem(), cert.pem()))
    }
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

/// A CSR for an existing key (a proxy renews over the same key, so the curl pins of its web
/// certificate in printed install lines stay valid).
pub fn csr_for_key(key_pem: &str, host_id: &str) -> Result<String> {
    let key = KeyPair::from_pem(key_pem)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host_id);
    params.distinguished_name = dn;
    Ok(params.serialize_request(&key)?.pem()?)
}

/// A fresh key pair and a CSR for it; the key stays with the caller.
pub fn new_key_and_csr(host_id: &str) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host_id);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::subject_of;

    #[test]
    fn signs_a_csr_with_the_subject_auth_chooses() {
        let ca = CertAuthority::generate("example.com").unwrap();
        let (_key, csr) = new_key_and_csr("attacker-chosen").unwrap();
        let subject = Subject {
            host_id: "6805dda3-779e-493b-0000-000000000000".into(),
            role: "Node".into(),
            cluster: "example.com".into(),
            node_name: "web-1".into(),
        };
        let cert = ca.sign_csr(&csr, &subject, &Sans::default()).unwrap();
        let der = certs_from_pem(&cert).unwrap().remove(0);
        assert_eq!(subject_of(&der).unwrap(), subject);
        let eku = crate::pki::parse_cert(&der)
            .unwrap()
            .extended_key_usages()
            .unwrap();
        assert_eq!(
            eku,
            vec![crate::pki::x509::oid::CLIENT_AUTH],
            "a node cert must be client-only"
        );
    }

    #[test]
    fn rejects_garbage_csr() {
        let ca = CertAuthority::generate("example.com").unwrap();
        let subject = Subject {
            host_id: "h".into(),
            role: "Node".into(),
            cluster: "c".into(),
            node_name: String::new(),
        };
        let err = ca.sign_csr("not a csr", &subject, &Sans::default());
        assert!(err.is_err());
    }
}
