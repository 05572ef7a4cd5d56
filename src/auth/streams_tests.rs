//! The node stream handler driven over an in-memory socket pair: what a node, honest or not,
//! sees on its side, and what the inventory records.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::net::unix::UnixStream;

use super::heartbeat_stream;
use crate::auth::backend::sqlite::SqliteBackend;
use crate::auth::cas::CaSet;
use crate::auth::revoke::Revocations;
use crate::auth::state::AuthState;
use crate::auth::tokens::TokenStore;
use crate::core::inventory::Inventory;
use crate::core::limiter::Limiter;
use crate::core::rotation::CertFacts;
use crate::net::Framed;
use crate::pki::ca::Sans;
use crate::pki::live::LiveTls;
use crate::pki::Subject;
use crate::proto::pace::MAX_EARLY_BEATS;
use crate::proto::{
    ErrorCode, Request, Response, StreamHello, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
    PROTOCOL_VERSION,
};
use crate::rt::{block_on, shutdown_pair, Trigger};

fn state() -> Arc<AuthState> {
    let backend: Arc<dyn crate::auth::backend::Backend> =
        Arc::new(SqliteBackend::in_memory().unwrap());
    let ca = CaSet::load_or_create(backend.clone(), "test", 0).unwrap();
    let auth = crate::auth::state::issue(
        &ca.get(),
        &Subject {
            host_id: "auth".into(),
            role: "Auth".into(),
            cluster: "test".into(),
            node_name: String::new(),
        },
        &Sans::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    Arc::new(AuthState {
        cluster_name: "test".into(),
        ca,
        host_ttl: Duration::from_secs(90),
        revoke: Revocations::load(backend.clone(), 0).unwrap(),
        tls: LiveTls::new(&auth).unwrap(),
        renewed: Mutex::new(Default::default()),
        own: crate::auth::own::Own {
            host_id: "auth".into(),
            listen_addr: "127.0.0.1:3025".parse().unwrap(),
            admin_path: Default::default(),
            admin: Mutex::new(None),
            trusted: Mutex::new(Vec::new()),
            served: Mutex::new(None),
        },
        tokens: TokenStore::new(backend.clone(), &[]).unwrap(),
        inventory: Mutex::new(Inventory::default()),
        limiter: Mutex::new(Limiter::default()),
        heartbeat_interval: Duration::from_secs(5),
        advertise_addr: String::new(),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
        audit: crate::auth::audit::AuditLog::discard(),
        storage: "sqlite".into(),
        backend,
    })
}

/// The certificate auth issued names the node "web-1".
fn subject() -> Subject {
    Subject {
        host_id: "9b6c1c3e-2a7f-4a4e-9d7e-3f1f0c2b5a11".into(),
        role: crate::proto::ROLE_NODE.into(),
        cluster: "test".into(),
        node_name: "web-1".into(),
    }
}

/// A certificate of the current CA, issued now for 90 s.
fn cert(state: &AuthState) -> CertFacts {
    let ca = state.ca.get().current.cert_der().unwrap();
    CertFacts {
        issuer: crate::pki::subject_name_of(&ca).unwrap(),
        issued: crate::clock::now_unix(),
        not_after: crate::clock::now_unix() + 90,
    }
}

fn hello(name: &str) -> StreamHello {
    StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name.into(),
        server_version: "1.0.0".into(),
        labels: BTreeMap::new(),
        public_addr: String::new(),
    }
}

/// Starts the handler on one end of a socket pair; returns the node's end and what keeps the
/// handler running (dropping the trigger stops it).
fn start(
    state: &Arc<AuthState>,
    hello: StreamHello,
) -> (Framed<UnixStream>, smol::Task<()>, Trigger) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (trigger, shutdown) = shutdown_pair();
    let conn = Framed::new(theirs, MAX_REQUEST_FRAME);
    let peer = "192.0.2.7:40000".parse().unwrap();
    let task = crate::rt::spawn(heartbeat_stream(
        conn,
        hello,
        subject(),
        cert(state),
        peer,
        state.clone(),
        shutdown,
    ));
    (Framed::new(ours, MAX_RESPONSE_FRAME), task, trigger)
}

async fn recv(node: &mut Framed<UnixStream>) -> Option<Response> {
    crate::net::with_timeout(Duration::from_secs(10), node.recv::<Response>())
        .await
        .expect("the handler answers within 10s")
        .ok()
        .flatten()
}

fn count(state: &AuthState) -> usize {
    state.inventory.lock().unwrap().count(state.now_ms())
}

#[test]
fn a_hello_naming_another_node_than_the_certificate_is_refused() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("db-1"));
    block_on(async {
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
        task.await;
        assert!(recv(&mut node).await.is_none(), "the stream is closed");
    });
    assert_eq!(count(&state), 0);
}

#[test]
fn a_good_hello_is_acked_beats_are_acked_and_goodbye_removes_the_node() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("web-1"));
    block_on(async {
        match recv(&mut node).await {
            Some(Response::HelloAck {
                cluster_name,
                heartbeat_interval_ms,
                ..
            }) => {
                assert_eq!(cluster_name, "test");
                assert_eq!(heartbeat_interval_ms, 5000);
            }
            other => panic!("expected hello_ack, got {other:?}"),
        }
        let listed = state.inventory.lock().unwrap().list(state.now_ms());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].hostname, "web-1");
        assert_eq!(listed[0].uuid, subject().host_id);
        assert_eq!(listed[0].addr, "192.0.2.7");
        for seq in 1..=3 {
            node.send(&Request::Heartbeat { seq }).await.unwrap();
            match recv(&mut node).await {
                Some(Response::HeartbeatAck { seq: got, .. }) => assert_eq!(got, seq),
                other => panic!("expected heartbeat_ack {seq}, got {other:?}"),
            }
        }
        node.send(&Request::Goodbye).await.unwrap();
        assert!(matches!(recv(&mut node).await, Some(Response::GoodbyeAck)));
        task.await;
    });
    assert_eq!(count(&state), 0);
}

#[test]
fn a_beat_flood_closes_the_stream() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("web-1"));
    block_on(async {
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::HelloAck { .. })
        ));
        // One due beat, then every early one is still answered, up to the limit.
        for seq in 0..=u64::from(MAX_EARLY_BEATS) {
            node.send(&Request::Heartbeat { seq }).await.unwrap();
            assert!(
                matches!(recv(&mut node).await, Some(Response::HeartbeatAck { .. })),
                "beat {seq} is acked"
            );
        }
        let _ = node.send(&Request::Heartbeat { seq: 99 }).await;
        assert!(
            recv(&mut node).await.is_none(),
            "the flood closed the stream"
        );
        task.await;
    });
    // A flood is not a goodbye: the node stays listed until its TTL.
    assert_eq!(count(&state), 1);
}

#[test]
fn a_renewal_gets_a_certificate_named_by_auth_for_the_key_of_the_csr() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("web-1"));
    block_on(async {
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::HelloAck { .. })
        ));
        let (_key, csr) = crate::pki::ca::new_key_and_csr("attacker-chosen").unwrap();
        node.send(&Request::Renew {
            csr,
            proof: String::new(),
        })
        .await
        .unwrap();
        match recv(&mut node).await {
            Some(Response::Renewed {
                tls, tls_ca_certs, ..
            }) => {
                let der = crate::pki::certs_from_pem(&tls).unwrap().remove(0);
                assert_eq!(crate::pki::subject_of(&der).unwrap(), subject());
                assert_eq!(tls_ca_certs, state.trusted_pems());
            }
            other => panic!("expected renewed, got {other:?}"),
        }
        // At once again: too soon, so a node cannot keep auth signing in a loop.
        let (_key, csr) = crate::pki::ca::new_key_and_csr("h").unwrap();
        node.send(&Request::Renew {
            csr,
            proof: String::new(),
        })
        .await
        .unwrap();
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ));
        drop(node);
        task.await;
    });
}

#[test]
fn a_renewal_with_a_broken_csr_is_refused_and_the_stream_goes_on() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("web-1"));
    block_on(async {
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::HelloAck { .. })
        ));
        node.send(&Request::Renew {
            proof: String::new(),
            csr: "not a csr".into(),
        })
        .await
        .unwrap();
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::Error {
                code: ErrorCode::BadParameter,
                ..
            })
        ));
        node.send(&Request::Heartbeat { seq: 1 }).await.unwrap();
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::HeartbeatAck { seq: 1, .. })
        ));
        drop(node);
        task.await;
    });
}

#[test]
fn a_lock_closes_the_stream_at_once_with_its_message_and_refuses_the_next_hello() {
    let state = state();
    let (mut node, task, _t) = start(&state, hello("web-1"));
    block_on(async {
        assert!(matches!(
            recv(&mut node).await,
            Some(Response::HelloAck { .. })
        ));
        let target = crate::proto::LockTarget::ServerId(subject().host_id);
        state
            .revoke
            .add_lock(crate::proto::LockInfo {
                target,
                message: "stolen laptop".into(),
                created: 0,
                expires: None,
            })
            .unwrap();
        // No beat needed: the stream is closed with the reason as soon as the lock exists.
        match recv(&mut node).await {
            Some(Response::Error { code, message }) => {
                assert_eq!(code, ErrorCode::AccessDenied);
                assert!(message.contains("stolen laptop"), "{message}");
            }
            other => panic!("expected the lock's refusal, got {other:?}"),
        }
        assert!(recv(&mut node).await.is_none(), "then the stream closes");
        task.await;
        let (mut again, task, _t) = start(&state, hello("web-1"));
        match recv(&mut again).await {
            Some(Response::Error { message, .. }) => assert!(message.contains("stolen laptop")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        task.await;
    });
    assert_eq!(count(&state), 0);
}
