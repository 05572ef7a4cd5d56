//! Every kind of message the services read from the network, sent 10x too large, malformed,
//! repeated, and never finished, by the certificate role that may send it (or anonymously).
//! Each must end at the sender (an error, a closed connection, a limit) within a deadline, and
//! the service must keep serving.
//!
//! | message | who may send it | too large | malformed | repeated | never finished |
//! |---|---|---|---|---|---|
//! | first message on auth's port | anyone | error, closed | error, closed | rate limit (429) | closed at 10 s |
//! | heartbeat stream | Node | closed | closed | paced, flood closed | closed after 3 intervals |
//! | tunnel hello | Node | closed | closed | 4 tunnels per host | closed at 10 s |
//!
//! The web port, PROXY headers and tunnel floods have their own tests (security_web,
//! security_runtime, security_abuse); the live fuzz test throws all of it at once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wire;
use common::*;
use teleport_lite::net::{self, Framed};
use teleport_lite::proto::{
    encode, ErrorCode, Request, Response, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

const T: Duration = Duration::from_secs(20);

/// How a connection answered.
#[derive(Debug)]
enum Outcome {
    Reply(Response),
    Closed,
    StillOpen,
}

/// A length prefix announcing ten times the request limit, and a little of its body.
fn too_large() -> Vec<u8> {
    let mut b = ((10 * MAX_REQUEST_FRAME) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&[b'{'; 4096]);
    b
}

fn malformed() -> Vec<u8> {
    let body = br#"{"type":"hello","version":"#;
    let mut b = (body.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    b
}

/// Half a length prefix, and nothing more.
fn unfinished() -> Vec<u8> {
    vec![0, 0]
}

/// Reads until a reply, the end of the connection, or `within`.
async fn outcome<S>(conn: &mut Framed<S>, within: Duration) -> Outcome
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    match net::with_timeout(within, conn.recv::<Response>()).await {
        Some(Ok(Some(r))) => Outcome::Reply(r),
        Some(_) => Outcome::Closed,
        None => Outcome::StillOpen,
    }
}

/// A connection to auth with `identity` (or none), after sending `first`.
async fn auth_conn(
    addr: &str,
    identity: Option<&teleport_lite::pki::identity::Identity>,
) -> Framed<futures_rustls::client::TlsStream<smol::net::TcpStream>> {
    let cfg = match identity {
        Some(id) => wire::insecure_with_identity_alpn(id, &[b"teleport-auth"]),
        None => net::insecure_client_config(),
    };
    let tls = net::connect_tls(addr, cfg).await.unwrap();
    Framed::new(tls, MAX_RESPONSE_FRAME)
}

fn is_error(o: &Outcome, code: ErrorCode) -> bool {
    matches!(o, Outcome::Reply(Response::Error { code: c, .. }) if *c == code)
}

#[test]
fn first_messages_on_auths_port_end_at_the_sender() {
    let c = Cluster::start();
    let addr = c.addr();
    smol::block_on(async {
        let mut conn = auth_conn(&addr, None).await;
        conn.send_raw(&too_large()).await.unwrap();
        let o = outcome(&mut conn, T).await;
        assert!(is_error(&o, ErrorCode::BadParameter), "too large: {o:?}");
        assert!(matches!(outcome(&mut conn, T).await, Outcome::Closed));

        let mut conn = auth_conn(&addr, None).await;
        conn.send_raw(&malformed()).await.unwrap();
        let o = outcome(&mut conn, T).await;
        assert!(is_error(&o, ErrorCode::BadParameter), "malformed: {o:?}");

        // Never finished: closed once the first-message deadline (10 s) passes.
        let mut conn = auth_conn(&addr, None).await;
        conn.send_raw(&unfinished()).await.unwrap();
        let t = Instant::now();
        let o = outcome(&mut conn, T).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    });
    // Repeated: past the burst, anonymous requests from one source are refused.
    let get_ca = Request::GetCa {
        version: PROTOCOL_VERSION,
    };
    let limited = (0..600)
        .map(|_| wire::ask_auth(&addr, &get_ca, None))
        .filter(|r| {
            matches!(
                r,
                Response::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert!(limited >= 100, "only {limited} of 600 were limited");
    // And the admin is served throughout.
    assert!(c.tctl(&["status"]).status.success());
}

/// A node's stream to auth after a good hello.
async fn node_stream(
    c: &Cluster,
    id: &teleport_lite::pki::identity::Identity,
) -> Framed<futures_rustls::client::TlsStream<smol::net::TcpStream>> {
    let mut conn = auth_conn(&c.addr(), Some(id)).await;
    let name = id.subject().unwrap().node_name;
    let hello = wire::hello(&name, Default::default());
    conn.send(&hello).await.unwrap();
    let o = outcome(&mut conn, T).await;
    assert!(
        matches!(o, Outcome::Reply(Response::HelloAck { .. })),
        "{o:?}"
    );
    conn
}

fn joined_identity(c: &Cluster, name: &str) -> teleport_lite::pki::identity::Identity {
    let mut n = Node::new(name);
    n.start(c, &c.token("node", "30m"), &c.pin());
    c.wait_node(name, T);
    n.proc().stop();
    wire::stored_identity(&n.data_dir())
}

#[test]
fn messages_on_a_nodes_stream_end_only_that_stream() {
    let mut c = Cluster::start();
    let mut calm = Node::new("calm");
    calm.start(&c, &c.token("node", "30m"), &c.pin());
    c.wait_node("calm", T);
    let noisy = joined_identity(&c, "noisy");
    smol::block_on(async {
        for (what, bytes) in [("too large", too_large()), ("malformed", malformed())] {
            let mut conn = node_stream(&c, &noisy).await;
            conn.send_raw(&bytes).await.unwrap();
            let o = outcome(&mut conn, T).await;
            assert!(matches!(o, Outcome::Closed), "{what}: {o:?}");
        }
        // Never finished: the stream is dropped after three silent intervals (500 ms here).
        let mut conn = node_stream(&c, &noisy).await;
        conn.send_raw(&unfinished()).await.unwrap();
        let o = outcome(&mut conn, Duration::from_secs(5)).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        // Repeated: a heartbeat flood is answered for a moment, then the stream is closed.
        let mut conn = node_stream(&c, &noisy).await;
        let flood: Vec<u8> = (0..2000u64)
            .flat_map(|seq| encode(&Request::Heartbeat { seq }))
            .collect();
        let _ = net::with_timeout(T, conn.send_raw(&flood)).await;
        let mut acks = 0;
        let end = loop {
            match outcome(&mut conn, T).await {
                Outcome::Reply(Response::HeartbeatAck { .. }) => acks += 1,
                other => break other,
            }
        };
        assert!(
            matches!(end, Outcome::Closed),
            "flood: {end:?} after {acks} acks"
        );
        assert!(acks < 2000, "every beat of the flood was answered");
    });
    c.auth().wait_log("far faster than the interval", T);
    assert!(c.has_node("calm"), "the honest node dropped out");
}

#[test]
fn tunnel_hellos_end_only_that_tunnel() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let proxy = format!("127.0.0.1:{web}");
    let noisy = joined_identity(&c, "noisy");
    let open = |id: &teleport_lite::pki::identity::Identity| {
        let cfg: Arc<rustls::ClientConfig> =
            wire::insecure_with_identity_alpn(id, &[b"teleport-reversetunnel"]);
        let proxy = proxy.clone();
        async move {
            let tls = net::connect_tls_as(&proxy, cfg, "proxy.teleport.cluster.local")
                .await
                .unwrap();
            let mux = teleport_lite::mux::start(tls, true);
            let stream = mux.opener.open().await.unwrap();
            (mux, Framed::new(stream, MAX_RESPONSE_FRAME))
        }
    };
    smol::block_on(async {
        for (what, bytes) in [("too large", too_large()), ("malformed", malformed())] {
            let (_mux, mut ctl) = open(&noisy).await;
            ctl.send_raw(&bytes).await.unwrap();
            let o = outcome(&mut ctl, T).await;
            assert!(matches!(o, Outcome::Closed), "{what}: {o:?}");
        }
        // Never finished: the proxy gives up on the hello after 10 s.
        let (_mux, mut ctl) = open(&noisy).await;
        ctl.send_raw(&unfinished()).await.unwrap();
        let t = Instant::now();
        let o = outcome(&mut ctl, T).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    });
    // The proxy still serves: a new node joins and tunnels through it.
    let mut later = Node::new("later");
    later.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("later", 1, T);
}
