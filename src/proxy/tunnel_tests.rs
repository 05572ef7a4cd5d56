//! The tunnel control handler driven over an in-memory socket pair: what a node, honest or
//! not, sees on its side, and what the proxy registers and relays to auth.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use smol::channel::Receiver;
use smol::net::unix::UnixStream;

use super::serve;
use crate::core::limiter::Limiter;
use crate::mux;
use crate::net::Framed;
use crate::pki::identity::Identity;
use crate::pki::Subject;
use crate::proto::pace::MAX_EARLY_BEATS;
use crate::proto::{
    ErrorCode, ProxyRef, RelayedBeat, Request, Response, StreamHello, WebTrust, MAX_RESPONSE_FRAME,
    PROTOCOL_VERSION,
};
use crate::proxy::{dials, ProxyState};
use crate::rt::{block_on, shutdown_pair, Trigger};

const HOST: &str = "9b6c1c3e-2a7f-4a4e-9d7e-3f1f0c2b5a11";

/// A proxy whose link to auth is up; returns the queue of what it relays to auth.
fn state() -> (Arc<ProxyState>, Receiver<Request>) {
    let (relay_tx, relay_rx) = smol::channel::bounded(64);
    let ca = crate::pki::ca::CertAuthority::generate("test").unwrap();
    let me = Subject {
        host_id: "p-1".into(),
        role: crate::proto::ROLE_PROXY.into(),
        cluster: "test".into(),
        node_name: String::new(),
    };
    let (key_pem, cert_pem) = ca
        .issue_local(&me, &Default::default(), Duration::from_secs(60))
        .unwrap();
    let identity = Identity {
        key_pem,
        cert_pem,
        ca_pems: vec![ca.cert_pem.clone()],
    };
    let state = ProxyState {
        me: ProxyRef {
            id: "p-1".into(),
            name: "proxy-1".into(),
        },
        public_addr: String::new(),
        web_listen_addr: "127.0.0.1:0".parse().unwrap(),
        cluster_name: "test".into(),
        auth: crate::join::servers::AuthAddrs::new(vec![String::new()], 0),
        identity: RwLock::new(identity.clone()),
        identity_path: std::path::PathBuf::new(),
        tls: crate::pki::live::LiveTls::new(&identity).unwrap(),
        trust: RwLock::new(None),
        denied: RwLock::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        renew_now: smol::channel::bounded(1).0,
        denials_saved: (AtomicU64::new(0), Mutex::new(0)),
        proxies: Mutex::new(Vec::new()),
        tunnels: Mutex::new(HashMap::new()),
        relay_tx,
        link_up: AtomicBool::new(true),
        heartbeat_interval_ms: AtomicU64::new(5000),
        limiter: Mutex::new(Limiter::default()),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
        own_web: WebTrust::default(),
        cluster_web: Mutex::new(WebTrust::default()),
        user_dial_ports: Vec::new(),
        user_dials: dials::UserDials::default(),
    };
    (Arc::new(state), relay_rx)
}

/// The certificate auth issued names the node "web-1".
fn subject() -> Subject {
    Subject {
        host_id: HOST.into(),
        role: crate::proto::ROLE_NODE.into(),
        cluster: "test".into(),
        node_name: "web-1".into(),
    }
}

struct Node {
    ctl: Framed<mux::Stream>,
    _mux: mux::Mux,
    handler: smol::Task<()>,
    _stop: Trigger,
}

/// Starts the handler on one end of a socket pair and, as the node, opens the control stream
/// and says hello as `name`.
async fn connect(state: &Arc<ProxyState>, name: &str) -> Node {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (stop, shutdown) = shutdown_pair();
    let peer = "192.0.2.7:40000".parse().unwrap();
    let cert = crate::core::rotation::CertFacts {
        issuer: Vec::new(),
        issued: crate::clock::now_unix(),
        not_after: crate::clock::now_unix() + 60,
    };
    let handler = crate::rt::spawn(serve(
        theirs,
        subject(),
        (cert, String::new()),
        peer,
        state.clone(),
        shutdown,
    ));
    let m = mux::start(ours, true);
    let stream = m.opener.open().await.unwrap();
    let mut ctl = Framed::new(stream, MAX_RESPONSE_FRAME);
    let hello = StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name.into(),
        server_version: "1.0.0".into(),
        labels: BTreeMap::new(),
        public_addr: String::new(),
    };
    ctl.send(&Request::TunnelHello(hello)).await.unwrap();
    Node {
        ctl,
        _mux: m,
        handler,
        _stop: stop,
    }
}

impl Node {
    /// The node hangs up; the handler must end promptly, without a shutdown.
    async fn close_and_wait(self) {
        let Node {
            ctl,
            _mux,
            handler,
            _stop,
        } = self;
        drop((ctl, _mux));
        let ended = crate::net::with_timeout(Duration::from_millis(900), handler).await;
        assert!(ended.is_some(), "the handler ends when the node hangs up");
    }
}

async fn recv(node: &mut Node) -> Option<Response> {
    crate::net::with_timeout(Duration::from_secs(10), node.ctl.recv::<Response>())
        .await
        .expect("the proxy answers within 10s")
        .ok()
        .flatten()
}

fn held(state: &ProxyState) -> usize {
    state.tunnels().get(HOST).map_or(0, Vec::len)
}

#[test]
fn a_hello_naming_another_node_than_the_certificate_is_refused() {
    let (state, relayed) = state();
    block_on(async {
        let mut node = connect(&state, "db-1").await;
        match recv(&mut node).await {
            Some(Response::Error { code, message }) => {
                assert_eq!(code, ErrorCode::BadParameter);
                assert!(
                    message.contains("db-1") && message.contains("web-1"),
                    "{message}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        node.close_and_wait().await;
    });
    assert_eq!(held(&state), 0);
    assert!(
        relayed.is_empty(),
        "nothing of a refused tunnel reaches auth"
    );
}

#[test]
fn a_good_hello_is_welcomed_beats_are_acked_and_relayed_under_the_certificate_name() {
    let (state, relayed) = state();
    block_on(async {
        let mut node = connect(&state, "web-1").await;
        match recv(&mut node).await {
            Some(Response::TunnelWelcome {
                proxy,
                heartbeat_interval_ms,
                proxies,
                ..
            }) => {
                assert_eq!(proxy.name, "proxy-1");
                assert_eq!(heartbeat_interval_ms, 5000);
                assert_eq!(proxies, vec![proxy]);
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
        assert_eq!(held(&state), 1);
        for seq in 1..=3 {
            node.ctl.send(&Request::Heartbeat { seq }).await.unwrap();
            match recv(&mut node).await {
                Some(Response::HeartbeatAck {
                    seq: got,
                    relayed,
                    proxies,
                    ..
                }) => {
                    assert_eq!(got, seq);
                    assert!(relayed, "the link is up: the beat counts as relayed");
                    // The first ack repeats the set (it may have changed since the welcome).
                    assert_eq!(proxies.len(), usize::from(seq == 1), "{proxies:?}");
                }
                other => panic!("expected heartbeat_ack {seq}, got {other:?}"),
            }
        }
        // Beats cause no relays: the proxy relays a tunnel it holds at once, then once per
        // interval (5 s here), however the node beats.
        match relayed.try_recv() {
            Ok(Request::Relay(RelayedBeat {
                host_id, node_name, ..
            })) => {
                assert_eq!(host_id, HOST);
                assert_eq!(node_name, "web-1");
            }
            other => panic!("expected one relayed beat, got {other:?}"),
        }
        assert!(relayed.is_empty());
        node.ctl.send(&Request::Goodbye).await.unwrap();
        assert!(matches!(recv(&mut node).await, Some(Response::GoodbyeAck)));
        node.close_and_wait().await;
    });
    assert!(matches!(
        relayed.try_recv(),
        Ok(Request::RelayGoodbye { host_id }) if host_id == HOST
    ));
    assert_eq!(held(&state), 0);
}

#[test]
fn a_beat_flood_closes_the_tunnel() {
    let (state, _relayed) = state();
    block_on(async {
        let mut node = connect(&state, "web-1").await;
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::TunnelWelcome { .. })
        ));
        for seq in 0..=u64::from(MAX_EARLY_BEATS) {
            node.ctl.send(&Request::Heartbeat { seq }).await.unwrap();
            assert!(
                matches!(recv(&mut node).await, Some(Response::HeartbeatAck { .. })),
                "beat {seq} is acked"
            );
        }
        let _ = node.ctl.send(&Request::Heartbeat { seq: 99 }).await;
        assert!(
            recv(&mut node).await.is_none(),
            "the flood closed the tunnel"
        );
        node.handler.await;
    });
    assert_eq!(held(&state), 0);
}

#[test]
fn a_held_tunnel_is_relayed_every_interval_without_beats_and_closed_when_silent_too_long() {
    let (state, relayed) = state();
    state
        .heartbeat_interval_ms
        .store(100, std::sync::atomic::Ordering::Relaxed);
    let interval = Duration::from_millis(100);
    block_on(async {
        let mut node = connect(&state, "web-1").await;
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::TunnelWelcome { .. })
        ));
        node.ctl.send(&Request::Heartbeat { seq: 1 }).await.unwrap();
        match recv(&mut node).await {
            Some(Response::HeartbeatAck { quiet, .. }) => {
                assert!(
                    quiet,
                    "this proxy tells auth itself: the node may beat rarely"
                )
            }
            other => panic!("expected an ack, got {other:?}"),
        }
        // The node stays silent; the proxy keeps telling auth it holds the tunnel.
        let started = Instant::now();
        for _ in 0..4 {
            let got = crate::net::with_timeout(interval * 5, relayed.recv()).await;
            assert!(
                matches!(got, Some(Ok(Request::Relay(RelayedBeat { ref host_id, .. }))) if host_id == HOST),
                "{got:?}"
            );
        }
        // A tunnel silent for longer than a quiet node's pace is judged dead.
        let ended = crate::net::with_timeout(Duration::from_secs(10), recv(&mut node)).await;
        assert!(matches!(ended, Some(None)), "closed: {ended:?}");
        assert!(
            started.elapsed() >= crate::proxy::control::silence_allowed(interval) / 2,
            "not closed before a quiet node's pace: {:?}",
            started.elapsed()
        );
        node.handler.await;
    });
    assert_eq!(held(&state), 0);
}
