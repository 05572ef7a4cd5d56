//! A proxy run by whoever stole a proxy's identity file. It serves the stolen (genuine)
//! certificate, so agents open tunnels to it; it asks each agent to renew, relays the renewal
//! to auth over its own link (auth signs: the node proved the request), and hands the agent the
//! answer with one more CA certificate in it: the attacker's. Afterwards it can present a proxy
//! certificate of that CA (`impersonate`), and records whether the agent still talks to it and
//! whether it can dial a service on the agent's loopback.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use rustls::server::WebPkiClientVerifier;
use teleport_lite::mux::{self, Mux};
use teleport_lite::net::{self, Framed};
use teleport_lite::pki::ca::{CertAuthority, Sans};
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::{self, Subject};
use teleport_lite::proto::{
    ProxyRef, Request, Response, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

use super::raw;
use crate::common::CLUSTER_NAME;

pub struct EvilProxy {
    pub port: u16,
    /// The attacker's own CA: the cluster never issued or trusted it.
    pub attacker_ca: CertAuthority,
    shared: Arc<Shared>,
}

struct Shared {
    events: Mutex<Vec<String>>,
    /// Present the attacker's certificate from the next handshake on, and drop held tunnels.
    impostor: AtomicBool,
}

impl Shared {
    fn note(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }
}

/// A TLS acceptor for tunnels presenting `chain`/`key`, asking clients for a certificate of
/// the cluster (so the agent's certificate can be relayed).
fn acceptor(identity: &Identity, cluster_cas: &Identity) -> TlsAcceptor {
    tunnel_acceptor(identity, cluster_cas.ca_ders().unwrap())
}

/// A tunnel acceptor presenting `identity`, taking client certificates that chain to `roots`.
pub fn tunnel_acceptor(
    identity: &Identity,
    roots: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> TlsAcceptor {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store.add(ca).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), net::provider())
        .build()
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(net::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.cert_der().unwrap()],
            identity.key_der().unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"teleport-reversetunnel".to_vec()];
    TlsAcceptor::from(Arc::new(cfg))
}

impl EvilProxy {
    /// Listens with the `stolen` proxy identity; relays renewals to auth at `auth`; as an
    /// impostor, dials `127.0.0.1:echo_port` on the agent.
    pub fn start(stolen: Identity, auth: String, echo_port: u16) -> EvilProxy {
        let attacker_ca = CertAuthority::generate(CLUSTER_NAME).unwrap();
        let me = Subject {
            host_id: raw::host_id(&stolen),
            role: "Proxy".into(),
            cluster: CLUSTER_NAME.into(),
            node_name: String::new(),
        };
        let sans = Sans {
            dns: vec!["proxy.teleport.cluster.local".into(), me.host_id.clone()],
            ips: Vec::new(),
        };
        let (key_pem, cert_pem) = attacker_ca
            .issue_local(&me, &sans, Duration::from_secs(3600))
            .unwrap();
        let impostor_id = Identity {
            key_pem,
            cert_pem,
            ca_pems: vec![attacker_ca.cert_pem.clone()],
        };
        let genuine = acceptor(&stolen, &stolen);
        let impostor = acceptor(&impostor_id, &stolen);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::new()),
            impostor: AtomicBool::new(false),
        });
        let (sh, ca_pem) = (shared.clone(), attacker_ca.cert_pem.clone());
        let me_ref = ProxyRef {
            id: me.host_id,
            name: "evil".into(),
        };
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let as_impostor = sh.impostor.load(Ordering::SeqCst);
                let acceptor = if as_impostor {
                    impostor.clone()
                } else {
                    genuine.clone()
                };
                let c = Conn {
                    sh: sh.clone(),
                    stolen: stolen.clone(),
                    auth: auth.clone(),
                    ca_pem: ca_pem.clone(),
                    me: me_ref.clone(),
                    echo_port,
                };
                std::thread::spawn(move || {
                    teleport_lite::rt::block_on(c.serve(tcp, acceptor, as_impostor))
                });
            }
        });
        EvilProxy {
            port,
            attacker_ca,
            shared,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn events(&self) -> Vec<String> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Waits for an event starting with one of `prefixes`; returns it.
    pub fn wait_event(&self, prefixes: &[&str], timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| prefixes.iter().any(|p| e.starts_with(p)))
            {
                return e;
            }
            assert!(
                start.elapsed() < timeout,
                "none of {prefixes:?} within {timeout:?}; the evil proxy saw: {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// From now on presents the attacker's proxy certificate, and drops the tunnels it holds.
    pub fn impersonate(&self) {
        self.shared.impostor.store(true, Ordering::SeqCst);
    }
}

/// One connection to the evil proxy.
struct Conn {
    sh: Arc<Shared>,
    stolen: Identity,
    auth: String,
    ca_pem: String,
    me: ProxyRef,
    echo_port: u16,
}

impl Conn {
    async fn serve(self, tcp: std::net::TcpStream, acceptor: TlsAcceptor, impostor: bool) {
        let who = if impostor { "impostor" } else { "genuine" };
        let tcp = smol::Async::new(tcp).unwrap();
        let tls = match acceptor.accept(tcp).await {
            Ok(t) => t,
            Err(e) => return self.sh.note(format!("handshake refused ({who}): {e}")),
        };
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| pki::der_to_pem(c))
            .unwrap_or_default();
        let m = mux::start(tls, false);
        let Some(Ok(control)) = net::with_timeout(raw::T, m.inbound.recv()).await else {
            return self.sh.note(format!("no control stream ({who})"));
        };
        let mut ctl = Framed::new(control, MAX_REQUEST_FRAME);
        match raw::outcome_req(&mut ctl).await {
            Some(Request::TunnelHello(_)) => self.sh.note(format!("tunnel hello ({who})")),
            other => return self.sh.note(format!("no tunnel hello ({who}): {other:?}")),
        }
        let welcome = Response::TunnelWelcome {
            proxy: self.me.clone(),
            cluster_name: CLUSTER_NAME.into(),
            heartbeat_interval_ms: 300,
            proxies: vec![self.me.clone()],
        };
        if ctl.send(&welcome).await.is_err() {
            return;
        }
        if impostor {
            self.dial(&m).await;
        } else {
            self.relay_tampered(&mut ctl, &peer).await;
        }
    }

    /// Answers beats asking for a renewal, relays the renewal, tampers with the answer.
    async fn relay_tampered(&self, ctl: &mut Framed<mux::Stream>, peer: &str) {
        let mut tampered = false;
        loop {
            if self.sh.impostor.load(Ordering::SeqCst) {
                return;
            }
            let req = raw::outcome_req(ctl).await;
            if tampered {
                self.sh.note(format!("after the tampered answer: {req:?}"));
            }
            let answer = match req {
                Some(Request::Heartbeat { seq }) => Response::HeartbeatAck {
                    seq,
                    proxies: Vec::new(),
                    relayed: true,
                    renew: !tampered,
                    quiet: false,
                },
                Some(Request::Renew { csr, proof }) => {
                    let a = self.relay(peer, csr, proof).await;
                    tampered = matches!(a, Response::Renewed { .. });
                    self.sh.note(if tampered {
                        "sent the tampered answer".to_string()
                    } else {
                        format!("auth did not renew: {a:?}")
                    });
                    a
                }
                Some(Request::Refresh { .. }) => Response::Refreshed {
                    expires: i64::MAX / 2,
                },
                _ => return,
            };
            if ctl.send(&answer).await.is_err() {
                return;
            }
        }
    }

    /// Relays a renewal to auth over a link with the stolen identity; adds the attacker's CA
    /// to a `Renewed` answer.
    async fn relay(&self, peer: &str, csr: String, proof: String) -> Response {
        let host_id = pki::subject_of(&pki::certs_from_pem(peer).unwrap()[0])
            .unwrap()
            .host_id;
        let mut link = raw::link(&self.auth, &self.stolen).await;
        let req = Request::RelayRenew {
            id: 1,
            host_id,
            csr,
            cert: peer.to_string(),
            proof,
        };
        link.send(&req).await.unwrap();
        match raw::relay_answer(&mut link, 1).await {
            raw::Outcome::Reply(Response::Renewed {
                tls,
                mut tls_ca_certs,
                expires,
                ca_proof,
            }) => {
                // Slips its CA into the set, keeping auth's signatures (now over another set).
                tls_ca_certs.push(self.ca_pem.clone());
                Response::Renewed {
                    tls,
                    tls_ca_certs,
                    expires,
                    ca_proof,
                }
            }
            raw::Outcome::Reply(other) => other,
            other => panic!("auth did not answer the relayed renewal: {other:?}"),
        }
    }

    /// As the impostor: dial a service on the agent's loopback through its tunnel.
    async fn dial(&self, m: &Mux) {
        let Ok(s) = m.opener.open().await else {
            return self.sh.note("could not open a stream");
        };
        let mut f = Framed::new(s, MAX_RESPONSE_FRAME);
        let target = format!("127.0.0.1:{}", self.echo_port);
        let dial = Request::Dial {
            version: PROTOCOL_VERSION,
            node: String::new(),
            addr: target.clone(),
        };
        if f.send(&dial).await.is_err() {
            return;
        }
        match raw::outcome(&mut f, raw::T).await {
            raw::Outcome::Reply(Response::DialOk) => {}
            other => return self.sh.note(format!("dial refused: {other:?}")),
        }
        let (mut s, _) = f.into_parts();
        let mut got = [0u8; 4];
        let echoed = async {
            s.write_all(b"ping").await?;
            s.flush().await?;
            s.read_exact(&mut got).await
        };
        if net::with_timeout(raw::T, echoed)
            .await
            .is_some_and(|r| r.is_ok())
        {
            self.sh.note(format!(
                "dialled {target} on the node and read {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
    }
}
