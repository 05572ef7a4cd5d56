//! Server-side TLS that changes while it serves: the certificate (renewed, or re-issued by a
//! new CA during a rotation) and the CAs client certificates must chain to (two during a
//! rotation). One `ServerConfig` is built once; its resolver and verifier read the current
//! values, so new handshakes use them and established connections are untouched.

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::error::{Error, Result};
use crate::pki::identity::Identity;

/// The certificate a server presents and the CAs it trusts, both replaceable.
#[derive(Debug)]
pub struct LiveTls {
    cert: RwLock<Arc<CertifiedKey>>,
    verifier: RwLock<Arc<dyn ClientCertVerifier>>,
}

use super::provider::provider;

fn certified(identity: &Identity) -> Result<Arc<CertifiedKey>> {
    let signing = provider()
        .key_provider
        .load_private_key(identity.key_der()?)
        .map_err(|e| Error::Pki(format!("unusable private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![identity.cert_der()?],
        signing,
    )))
}

fn verifier(cas: &[CertificateDer<'static>]) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| Error::Pki(format!("unusable CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Pki(format!("cannot build client verifier: {e}")))
}

impl LiveTls {
    /// Presents `identity`'s certificate and trusts the CAs in it.
    pub fn new(identity: &Identity) -> Result<Arc<LiveTls>> {
        Ok(Arc::new(LiveTls {
            cert: RwLock::new(certified(identity)?),
            verifier: RwLock::new(verifier(&identity.ca_ders()?)?),
        }))
    }

    /// Presents `identity`'s certificate from the next handshake on.
    pub fn set_cert(&self, identity: &Identity) -> Result<()> {
        let new = certified(identity)?;
        *self.cert.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// Accepts client certificates of `cas` (only) from the next handshake on.
    pub fn set_trust(&self, cas: &[CertificateDer<'static>]) -> Result<()> {
        let new = verifier(cas)?;
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    pub fn current_cert(&self) -> Arc<CertifiedKey> {
        self.cert.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn current_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `cert` chains to a CA trusted now and is valid at `now`: for a certificate a
    /// connected host shows after renewing elsewhere (a tunnel's refresh).
    pub fn verifies(&self, cert: &CertificateDer<'_>) -> bool {
        self.current_verifier()
            .verify_client_cert(cert, &[], UnixTime::now())
            .is_ok()
    }

    /// A server config that reads the current certificate and trust at each handshake.
    pub fn server_config(self: &Arc<Self>, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerConfig>> {
        self.server_config_with(alpn, Arc::new(Resolver(self.clone())))
    }

    /// Like `server_config`, with another certificate resolver (the proxy's, which serves an
    /// operator's certificate to web clients).
    pub fn server_config_with(
        self: &Arc<Self>,
        alpn: Vec<Vec<u8>>,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Pki(e.to_string()))?
            .with_client_cert_verifier(Arc::new(Verifier(self.clone())))
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn;
        full_handshakes_only(&mut config);
        Ok(Arc::new(config))
    }
}

/// Every handshake verifies the client's certificate. A resumed TLS 1.3 session carries the
/// certificate verified when its ticket was issued, and rustls does not verify it again: a
/// host evicted by a CA rotation, or whose certificate expired, could resume its way back in
/// with it. So no ticket is sent and no session is stored (also no 256-session cache holding
/// certificate chains, and two messages fewer per handshake).
pub fn full_handshakes_only(config: &mut ServerConfig) {
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

/// Whether `cert` is a client certificate of one of `cas`, valid now.
pub fn verifies_with(cas: &[CertificateDer<'static>], cert: &CertificateDer<'_>) -> bool {
    verifier(cas).is_ok_and(|v| v.verify_client_cert(cert, &[], UnixTime::now()).is_ok())
}

#[derive(Debug)]
struct Resolver(Arc<LiveTls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current_cert())
    }
}

#[derive(Debug)]
struct Verifier(Arc<LiveTls>);

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    // Hints are optional; ours would change under the borrow.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.0
            .current_verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current_verifier()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current_verifier()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current_verifier().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::{CertAuthority, Sans};
    use crate::pki::Subject;

    fn node_cert(ca: &CertAuthority) -> CertificateDer<'static> {
        let subject = Subject {
            host_id: "h".into(),
            role: "Node".into(),
            cluster: "c".into(),
            node_name: "n".into(),
        };
        let (_, pem) = ca
            .issue_local(
                &subject,
                &Sans::default(),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        crate::pki::certs_from_pem(&pem).unwrap().remove(0)
    }

    #[test]
    fn trust_changes_take_effect_for_the_next_verification() {
        let old = CertAuthority::generate("c").unwrap();
        let new = CertAuthority::generate_named("c", Some("2")).unwrap();
        let (key, cert) = old
            .issue_local(
                &Subject {
                    host_id: "a".into(),
                    role: "Auth".into(),
                    cluster: "c".into(),
                    node_name: String::new(),
                },
                &Sans::default(),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let id = Identity {
            key_pem: key,
            cert_pem: cert,
            ca_pems: vec![old.cert_pem.clone()],
        };
        let live = LiveTls::new(&id).unwrap();
        assert!(live.verifies(&node_cert(&old)));
        assert!(!live.verifies(&node_cert(&new)));
        live.set_trust(&[old.cert_der().unwrap(), new.cert_der().unwrap()])
            .unwrap();
        assert!(live.verifies(&node_cert(&new)));
        live.set_trust(&[new.cert_der().unwrap()]).unwrap();
        assert!(!live.verifies(&node_cert(&old)));
    }
}
