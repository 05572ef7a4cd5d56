//! `Mitm`: a proxy run with a proxy identity by whoever holds it (a compromised proxy host,
//! whose identity file stays current through rotations, or a rogue proxy joined with a proxy
//! token). Nodes open tunnels to it; it relays their renewals to auth over links with that
//! identity and does to requests and answers what a test arms: keeps each answer's CA set and
//! signatures, swaps them into a later answer, keeps a request instead of relaying it, holds
//! requests unanswered; as an impostor it presents another certificate and dials the node.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use teleport_lite::mux::{self, Mux};
use teleport_lite::net::{self as tnet, Framed};
use teleport_lite::pki::{self, Subject};
use teleport_lite::proto::{ProxyRef, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME};

use super::*;

/// A tunnel acceptor presenting `id`, taking client certificates of any of `roots`.
pub fn acceptor(id: &Identity, roots: &[String]) -> TlsAcceptor {
    let ders = roots
        .iter()
        .flat_map(|pem| pki::certs_from_pem(pem).unwrap())
        .collect();
    crate::evil::tunnel_acceptor(id, ders)
}

/// A CA set and the signatures over it, as a `renewed` answer carries them.
pub type Vouched = (Vec<String>, Vec<String>);

pub struct Mitm {
    pub port: u16,
    pub sh: Arc<Shared>,
}

pub struct Shared {
    pub auth: String,
    /// The proxy identity, read at each handshake and relay (it follows renewals).
    pub identity: PathBuf,
    pub echo_port: u16,
    pub events: Mutex<Vec<String>>,
    /// Heartbeat answers ask the node to renew.
    pub ask: AtomicBool,
    /// Keep the node's next renewal request (CSR, proof, certificate) instead of relaying it.
    pub withhold: AtomicBool,
    /// Never answer renewal requests.
    pub hold: AtomicBool,
    /// The proxy set auth announces on this proxy's own link (see `register`).
    pub set: Mutex<Vec<ProxyRef>>,
    /// The request `withhold` kept: its CSR, proof and the certificate it was made with.
    pub kept: Mutex<Option<(String, String, String)>>,
    /// The CA set and signatures of every `renewed` answer relayed, in order.
    pub answers: Mutex<Vec<Vouched>>,
    /// Put these into the next `renewed` answer in place of auth's.
    pub swap: Mutex<Option<Vouched>>,
    /// From the next handshake on: present this, drop held tunnels, dial the node.
    pub impostor: Mutex<Option<TlsAcceptor>>,
}

impl Shared {
    fn note(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }
}

impl Mitm {
    pub fn start(auth: String, identity: PathBuf, echo_port: u16) -> Mitm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sh = Arc::new(Shared {
            auth,
            identity,
            echo_port,
            events: Mutex::new(Vec::new()),
            ask: AtomicBool::new(false),
            withhold: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            set: Mutex::new(Vec::new()),
            kept: Mutex::new(None),
            answers: Mutex::new(Vec::new()),
            swap: Mutex::new(None),
            impostor: Mutex::new(None),
        });
        let shared = sh.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let sh = shared.clone();
                std::thread::spawn(move || teleport_lite::rt::block_on(serve(sh, tcp)));
            }
        });
        Mitm { port, sh }
    }

    /// Keeps a link to auth up with heartbeats, renewing the proxy identity when auth asks,
    /// so auth lists this proxy in the proxy set (and nodes behind a load balancer hold a
    /// tunnel to it); waits until it is listed.
    pub fn register(&self) {
        let sh = self.sh.clone();
        std::thread::spawn(move || {
            block(async move {
                let id = Identity::load(&sh.identity).unwrap();
                let Some(mut l) = link(&sh.auth, &id).await else {
                    return sh.note("link refused");
                };
                for seq in 1.. {
                    if l.send(&Request::Heartbeat { seq }).await.is_err() {
                        return sh.note("link closed");
                    }
                    let renew = match raw::answer(&mut l, T).await {
                        Outcome::Reply(Response::HeartbeatAck { proxies, renew, .. }) => {
                            *sh.set.lock().unwrap() = proxies;
                            renew
                        }
                        other => return sh.note(format!("link closed: {other:?}")),
                    };
                    if renew {
                        renew_own(&sh, &mut l, seq).await;
                    }
                    smol::Timer::after(Duration::from_millis(300)).await;
                }
            })
        });
        wait_for(T, "auth to list the proxy", || {
            (self.sh.set.lock().unwrap().len() > 1).then_some(())
        });
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn events(&self) -> Vec<String> {
        self.sh.events.lock().unwrap().clone()
    }

    /// Waits for an event (after the first `skip` events) starting with one of `prefixes`.
    pub fn wait_event(&self, skip: usize, prefixes: &[&str]) -> String {
        wait_for(T, &format!("{prefixes:?}: {:?}", self.events()), || {
            self.events()
                .into_iter()
                .skip(skip)
                .find(|e| prefixes.iter().any(|p| e.starts_with(p)))
        })
    }

    /// Asks the node for a renewal; waits until one is relayed and auth renewed it. Returns
    /// the number of events before it, for `wait_event`.
    pub fn renewal(&self) -> usize {
        let before = self.events().len();
        self.sh.ask.store(true, Ordering::SeqCst);
        self.wait_event(before, &["relayed"]);
        before
    }
}

pub async fn serve(sh: Arc<Shared>, tcp: std::net::TcpStream) {
    let impostor = sh.impostor.lock().unwrap().clone();
    let who = if impostor.is_some() {
        "impostor"
    } else {
        "genuine"
    };
    let acceptor = impostor.unwrap_or_else(|| {
        let id = Identity::load(&sh.identity).unwrap();
        acceptor(&id, &id.ca_pems)
    });
    let tls = match acceptor.accept(smol::Async::new(tcp).unwrap()).await {
        Ok(t) => t,
        Err(e) => return sh.note(format!("handshake refused ({who}): {e}")),
    };
    let mut peer = pki::der_to_pem(&tls.get_ref().1.peer_certificates().unwrap()[0]);
    let m = mux::start(tls, false);
    let Some(Ok(control)) = tnet::with_timeout(T, m.inbound.recv()).await else {
        return sh.note(format!("no control stream ({who})"));
    };
    let mut ctl = Framed::new(control, MAX_REQUEST_FRAME);
    match raw::outcome_req(&mut ctl).await {
        Some(Request::TunnelHello(_)) => sh.note(format!("tunnel hello ({who})")),
        other => return sh.note(format!("no tunnel hello ({who}): {other:?}")),
    }
    let me = ProxyRef {
        id: raw::host_id(&Identity::load(&sh.identity).unwrap()),
        name: "mitm".into(),
    };
    let mut set = sh.set.lock().unwrap().clone();
    if set.is_empty() {
        set.push(me.clone());
    }
    let welcome = Response::TunnelWelcome {
        proxy: me,
        cluster_name: CLUSTER_NAME.into(),
        heartbeat_interval_ms: 300,
        proxies: set,
    };
    if ctl.send(&welcome).await.is_err() {
        return;
    }
    if who == "impostor" {
        return dial(&sh, &m).await;
    }
    let mut swapped = false;
    loop {
        let req = raw::outcome_req(&mut ctl).await;
        if sh.impostor.lock().unwrap().is_some() {
            return;
        }
        if std::mem::take(&mut swapped) {
            sh.note(format!("after the swapped answer: {req:?}"));
        }
        let answer = match req {
            Some(Request::Heartbeat { seq }) => Response::HeartbeatAck {
                seq,
                proxies: Vec::new(),
                relayed: true,
                renew: sh.ask.load(Ordering::SeqCst),
                quiet: false,
            },
            Some(Request::Renew { .. }) if sh.hold.load(Ordering::SeqCst) => {
                sh.note("held a renewal");
                continue;
            }
            Some(Request::Renew { csr, proof }) if sh.withhold.swap(false, Ordering::SeqCst) => {
                *sh.kept.lock().unwrap() = Some((csr, proof, peer.clone()));
                sh.ask.store(false, Ordering::SeqCst);
                sh.note("kept a renewal");
                Response::error(ErrorCode::RateLimited, "retry shortly")
            }
            Some(Request::Renew { csr, proof }) => {
                let host_id = pki::subject_of(&pki::certs_from_pem(&peer).unwrap()[0])
                    .unwrap()
                    .host_id;
                let mut a = relay(&sh, host_id, csr, peer.clone(), proof).await;
                if let Response::Renewed {
                    tls,
                    tls_ca_certs,
                    ca_proof,
                    ..
                } = &mut a
                {
                    peer = tls.clone();
                    sh.ask.store(false, Ordering::SeqCst);
                    let auth_said = (tls_ca_certs.clone(), ca_proof.clone());
                    sh.answers.lock().unwrap().push(auth_said);
                    swapped = match sh.swap.lock().unwrap().take() {
                        Some((set, sigs)) => {
                            (*tls_ca_certs, *ca_proof) = (set, sigs);
                            true
                        }
                        None => false,
                    };
                    sh.note(if swapped {
                        "relayed, swapped"
                    } else {
                        "relayed"
                    });
                }
                a
            }
            Some(Request::Refresh { cert }) => {
                peer = cert;
                Response::Refreshed {
                    expires: now_unix() + 3600,
                }
            }
            _ => return,
        };
        if ctl.send(&answer).await.is_err() {
            return;
        }
    }
}

/// A link to auth with the proxy identity, after its hello answer; `None` if refused.
pub async fn link(auth: &str, id: &Identity) -> Option<raw::Conn> {
    let mut l = raw::connect(auth, Some(id)).await;
    l.send(&raw::proxy_hello()).await.ok()?;
    match raw::outcome(&mut l, T).await {
        Outcome::Reply(Response::HelloAck { .. }) => Some(l),
        _ => None,
    }
}

/// Renews the proxy identity over its link (request `n`) and stores it.
pub async fn renew_own(sh: &Shared, l: &mut raw::Conn, n: u64) {
    let id = Identity::load(&sh.identity).unwrap();
    let host_id = raw::host_id(&id);
    let (key_pem, csr) = new_key_and_csr(&host_id).unwrap();
    let req = Request::RelayRenew {
        id: n,
        host_id,
        csr,
        cert: String::new(),
        proof: String::new(),
    };
    l.send(&req).await.unwrap();
    if let Outcome::Reply(Response::Renewed {
        tls, tls_ca_certs, ..
    }) = raw::relay_answer(l, n).await
    {
        let renewed = Identity {
            key_pem,
            cert_pem: tls,
            ca_pems: tls_ca_certs,
        };
        renewed.save(&sh.identity).unwrap();
    }
}

/// Relays a node's renewal to auth over a new link, as the proxy does.
pub async fn relay(
    sh: &Shared,
    host_id: String,
    csr: String,
    cert: String,
    proof: String,
) -> Response {
    let id = Identity::load(&sh.identity).unwrap();
    let Some(mut l) = link(&sh.auth, &id).await else {
        return Response::error(ErrorCode::Internal, "auth refused the link");
    };
    let req = Request::RelayRenew {
        id: 1,
        host_id,
        csr,
        cert,
        proof,
    };
    if l.send(&req).await.is_err() {
        return Response::error(ErrorCode::Internal, "the link broke");
    }
    match raw::relay_answer(&mut l, 1).await {
        Outcome::Reply(r) => r,
        other => Response::error(ErrorCode::Internal, format!("no answer: {other:?}")),
    }
}

/// As the impostor: dial a service on the node's loopback through its tunnel.
pub async fn dial(sh: &Shared, m: &Mux) {
    let Ok(s) = m.opener.open().await else {
        return sh.note("could not open a stream");
    };
    let mut f = Framed::new(s, MAX_RESPONSE_FRAME);
    let target = format!("127.0.0.1:{}", sh.echo_port);
    if f.send(&raw::dial("", &target)).await.is_err() {
        return sh.note("dial refused: closed");
    }
    match raw::outcome(&mut f, T).await {
        Outcome::Reply(Response::DialOk) => {}
        other => return sh.note(format!("dial refused: {other:?}")),
    }
    let (mut s, _) = f.into_parts();
    let mut got = [0u8; 4];
    let echoed = async {
        s.write_all(b"ping").await?;
        s.flush().await?;
        s.read_exact(&mut got).await
    };
    let ok = tnet::with_timeout(T, echoed)
        .await
        .is_some_and(|r| r.is_ok());
    sh.note(if ok {
        format!("dialled {target} on the node and read {got:?}")
    } else {
        "dial refused: no echo".to_string()
    })
}

/// A proxy certificate for `host_id` minted with `ca` (the leaked key), as an identity.
pub fn minted_proxy(ca: &CertAuthority, host_id: &str) -> Identity {
    let subject = Subject {
        host_id: host_id.into(),
        role: "Proxy".into(),
        cluster: CLUSTER_NAME.into(),
        node_name: String::new(),
    };
    let sans = Sans {
        dns: vec!["proxy.teleport.cluster.local".into(), host_id.into()],
        ips: Vec::new(),
    };
    let (key_pem, cert_pem) = ca
        .issue_local(&subject, &sans, Duration::from_secs(3600))
        .unwrap();
    Identity {
        key_pem,
        cert_pem,
        ca_pems: vec![ca.cert_pem.clone()],
    }
}

/// A node that joined through the honest proxy at `proxy`, then restarted with its tunnel
/// to `mitm` (as a load balancer may send it there); waits for that tunnel.
pub fn node_on_mitm(c: &Cluster, name: &str, proxy: &str, mitm: &Mitm) -> Node {
    let pin = c.pin();
    let mut n = Node::new(name);
    n.start_via_proxy(proxy, &c.token("node", "30m"), Some(&pin));
    c.wait_tunnels(name, 1, T);
    n.proc().stop();
    let before = mitm.events().len();
    let cfg = n.configure_via_proxy(&mitm.addr(), &c.token("node", "30m"), Some(&pin));
    n.spawn(&["start".into(), "-c".into(), cfg.display().to_string()]);
    mitm.wait_event(before, &["tunnel hello (genuine)"]);
    n
}
