//! An attacker's toolbox: speaks our wire protocol directly with the library's own parts, so a
//! test can send what a modified agent would send, and run a fake server with a stolen
//! certificate to see what real clients tell it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use teleport_lite::net::{self, Framed};
use teleport_lite::pki::ca::new_key_and_csr;
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::{self, certs_from_pem, Subject};
use teleport_lite::proto::{
    encode, Decoder, RegisterRequest, Request, Response, StreamHello, MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

/// A join request as a modified agent could send it: any name, any host ID.
pub fn register_request(token: &str, node_name: &str, host_id: &str) -> (String, RegisterRequest) {
    let (key, csr) = new_key_and_csr("attacker").unwrap();
    let req = RegisterRequest {
        version: PROTOCOL_VERSION,
        token: token.to_string(),
        host_id: host_id.to_string(),
        node_name: node_name.to_string(),
        role: "Node".into(),
        csr,
        labels: BTreeMap::new(),
        remote_addr: String::new(),
        dns_names: vec![
            teleport_lite::proto::AUTH_SERVER_NAME.into(),
            "localhost".into(),
        ],
    };
    (key, req)
}

/// One request on a fresh connection to auth, without verifying auth (an attacker's view).
pub fn ask_auth(addr: &str, req: &Request, identity: Option<&Identity>) -> Response {
    smol::block_on(async {
        let config = match identity {
            // The attacker's own client: it does not care whom it talks to.
            Some(id) => insecure_with_identity(id),
            None => net::insecure_client_config(),
        };
        let tls = net::connect_tls(addr, config).await.unwrap();
        let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
        conn.send(req).await.unwrap();
        let got = net::with_timeout(Duration::from_secs(10), conn.recv::<Response>()).await;
        got.expect("auth answered in time")
            .unwrap()
            .expect("auth answered")
    })
}

#[derive(Debug)]
struct OwnCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An unverifying client config that presents `id`, offering `alpn`.
pub fn insecure_with_identity_alpn(id: &Identity, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*net::insecure_client_config()).clone();
    let key = rustls::sign::CertifiedKey::from_der(
        vec![id.cert_der().unwrap()],
        id.key_der().unwrap(),
        &net::provider(),
    )
    .unwrap();
    cfg.client_auth_cert_resolver = Arc::new(OwnCert(Arc::new(key)));
    if !alpn.is_empty() {
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    }
    Arc::new(cfg)
}

fn insecure_with_identity(id: &Identity) -> Arc<rustls::ClientConfig> {
    insecure_with_identity_alpn(id, &[])
}

/// What an issued certificate says: its subject, DNS names and whether it may serve TLS.
pub struct CertFacts {
    pub subject: Subject,
    pub dns: Vec<String>,
    pub server_auth: bool,
}

pub fn cert_facts(pem: &str) -> CertFacts {
    let der = certs_from_pem(pem).unwrap().remove(0);
    let subject = pki::subject_of(&der).unwrap();
    let cert = pki::parse_cert(&der).unwrap();
    let dns = cert
        .subject_alt_names()
        .unwrap()
        .into_iter()
        .filter_map(|n| match n {
            pki::x509::GeneralName::Dns(d) => Some(d),
            _ => None,
        })
        .collect();
    let server_auth = cert
        .extended_key_usages()
        .unwrap()
        .contains(&pki::x509::oid::SERVER_AUTH);
    CertFacts {
        subject,
        dns,
        server_auth,
    }
}

/// The identity a node stored in its data dir.
pub fn stored_identity(data_dir: &Path) -> Identity {
    Identity::load(&data_dir.join("node-identity.pem")).unwrap()
}

/// A hello as a modified agent could send it.
pub fn hello(name: &str, labels: BTreeMap<String, String>) -> Request {
    Request::Hello(StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name.to_string(),
        server_version: "x".into(),
        labels,
        public_addr: String::new(),
    })
}

/// A TLS server that presents a stolen certificate, answers `get_ca` with the real CA (so a
/// pin check passes) and records every plaintext byte any client sent it.
pub struct FakeServer {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<u8>>>,
    pub handshakes: Arc<Mutex<usize>>,
}

impl FakeServer {
    pub fn start(identity: &Identity, alpn: &[&[u8]], real_ca_pem: &str) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = rustls::ServerConfig::builder_with_provider(net::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![identity.cert_der().unwrap()],
                identity.key_der().unwrap(),
            )
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(cfg));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(Mutex::new(0));
        let (s, h, ca) = (seen.clone(), handshakes.clone(), real_ca_pem.to_string());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (acceptor, s, h, ca) = (acceptor.clone(), s.clone(), h.clone(), ca.clone());
                std::thread::spawn(move || {
                    smol::block_on(async move {
                        let tcp = smol::Async::new(tcp).unwrap();
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        *h.lock().unwrap() += 1;
                        let mut dec = Decoder::new(MAX_REQUEST_FRAME);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = tls.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            s.lock().unwrap().extend_from_slice(&buf[..n]);
                            dec.feed(&buf[..n]);
                            if let Ok(Some(Request::GetCa { .. })) = dec.next_frame::<Request>() {
                                let ca = Response::Ca {
                                    cluster_name: "example.test".into(),
                                    certs: vec![ca.clone()],
                                };
                                let _ = tls.write_all(&encode(&ca)).await;
                                let _ = tls.flush().await;
                            }
                        }
                    })
                });
            }
        });
        FakeServer {
            port,
            seen,
            handshakes,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
    }
}
