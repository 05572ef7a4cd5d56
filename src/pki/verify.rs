//! Server verification by role: a server is trusted only if its certificate chains to the
//! cluster CA, is valid for the name dialled, AND names the role the client expects to talk to.
//! A node certificate with a clever name is still only a node.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::error::{Error, Result};
use crate::pki::identity::Identity;
use crate::pki::subject_of;
use crate::proto::{ROLE_AUTH, ROLE_PROXY};

/// The role a client expects of the server it dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Auth's port (3025): tctl, direct nodes, proxies, pinned joins.
    Auth,
    /// A proxy's tunnel and transport ALPNs, and the pinned join relay.
    Proxy,
}

impl ServerRole {
    pub fn cert_role(self) -> &'static str {
        match self {
            ServerRole::Auth => ROLE_AUTH,
            ServerRole::Proxy => ROLE_PROXY,
        }
    }
}

/// The server's certificate is valid but for another role (or cluster).
#[derive(Debug)]
pub struct WrongRole {
    pub expected: &'static str,
    pub found: String,
}

impl fmt::Display for WrongRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server presented a {:?} certificate where an {} server was expected: it is \
             not a server of this cluster (possibly a host impersonating one)",
            self.found, self.expected
        )
    }
}

impl std::error::Error for WrongRole {}

#[derive(Debug)]
struct RoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    role: ServerRole,
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = subject_of(end_entity)
            .map(|s| s.role)
            .unwrap_or_else(|_| "unreadable".to_string());
        if found != self.role.cert_role() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(WrongRole {
                    expected: self.role.cert_role(),
                    found,
                })),
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config trusting only `cas` and only a server holding `role`, presenting
/// `identity` when given. ALPN is left to the caller (`net::with_alpn`), except that auth's is
/// offered by default.
pub fn client_config(
    cas: &[CertificateDer<'static>],
    identity: Option<&Identity>,
    role: ServerRole,
) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| Error::Pki(format!("unusable CA certificate: {e}")))?;
    }
    let provider = super::provider::provider();
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Pki(format!("cannot build server verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Pki(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RoleVerifier { inner, role }));
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert_der()?], id.key_der()?)
            .map_err(|e| Error::Pki(format!("unusable client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![crate::proto::ALPN_AUTH.to_vec()];
    // Our servers send no session tickets (`live::full_handshakes_only`): nothing to keep.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The role-specific explanation inside a handshake error, if that is why it failed.
pub fn wrong_role_of(e: &rustls::Error) -> Option<String> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<WrongRole>().map(|w| w.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    /// A CA, and a certificate it signed for `role` that is otherwise a perfect auth server
    /// certificate: the auth server name, the server usage.
    fn cert_for(role: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut p = CertificateParams::new(vec![crate::proto::AUTH_SERVER_NAME.into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "h");
        p.distinguished_name.push(DnType::OrganizationName, role);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        (ca_cert.der().clone(), cert.der().clone())
    }

    fn verify(role: &str, expect: ServerRole) -> std::result::Result<(), rustls::Error> {
        let (ca, cert) = cert_for(role);
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = crate::pki::provider::provider();
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let v = RoleVerifier {
            inner,
            role: expect,
        };
        let name = ServerName::try_from(crate::proto::AUTH_SERVER_NAME).unwrap();
        v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_valid_certificate_of_another_role_is_refused() {
        assert!(verify("Auth", ServerRole::Auth).is_ok());
        for (role, expect) in [
            ("Node", ServerRole::Auth),
            ("Admin", ServerRole::Auth),
            ("Proxy", ServerRole::Auth),
            ("Auth", ServerRole::Proxy),
        ] {
            let err = verify(role, expect).unwrap_err();
            let why = wrong_role_of(&err).expect("refused for its role");
            assert!(why.contains(&format!("{role:?}")), "{why}");
        }
    }
}
