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
//! | proxy hello (link, with web pins) | Proxy | error, closed | error (bad or > 4 pins), closed | one link per connection | closed at 10 s |
//! | dial (transport ALPN) | Admin, User | closed | closed; bad address refused | User: 32 open per proxy | closed at 10 s |
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
    encode, ErrorCode, ProxyHello, Request, Response, WebTrust, MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
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
) -> Framed<futures_rustls::client::TlsStream<teleport_lite::net::Tcp>> {
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
    // Repeated: past the burst, anonymous join attempts from one source are refused (CA
    // fetches have their own, larger bucket: see core::limiter).
    let guess = Request::Register(wire::register_request(&"0".repeat(32), "guess", "").1);
    let limited = (0..600)
        .map(|_| wire::ask_auth(&addr, &guess, None))
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
) -> Framed<futures_rustls::client::TlsStream<teleport_lite::net::Tcp>> {
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

#[test]
fn proxy_hellos_with_bad_web_pins_end_that_link() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let proxy_id =
        teleport_lite::pki::identity::Identity::load(&c.path().join("auth/proxy-identity.pem"))
            .unwrap();
    let pin = format!("sha256//{}=", "A".repeat(43));
    let link = |pins: Vec<String>| {
        Request::ProxyHello(ProxyHello {
            version: PROTOCOL_VERSION,
            name: "authhost".into(),
            public_addr: format!("127.0.0.1:{web}"),
            server_version: "1".into(),
            web: WebTrust {
                pins,
                public: false,
            },
        })
    };
    for (what, pins, says) in [
        ("too many", vec![pin.clone(); 5], "too many web pins"),
        (
            "malformed",
            vec!["sha256//$(reboot)".into()],
            "malformed web pin",
        ),
        ("huge", vec!["A".repeat(100_000)], "malformed web pin"),
    ] {
        match wire::ask_auth(&c.addr(), &link(pins), Some(&proxy_id)) {
            Response::Error {
                code: ErrorCode::BadParameter,
                message,
            } => assert!(message.contains(says), "{what}: {message}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // 10x too large and never finished, with the proxy's own certificate.
    smol::block_on(async {
        let mut conn = auth_conn(&c.addr(), Some(&proxy_id)).await;
        conn.send_raw(&too_large()).await.unwrap();
        let o = outcome(&mut conn, T).await;
        assert!(is_error(&o, ErrorCode::BadParameter), "too large: {o:?}");
        let mut conn = auth_conn(&c.addr(), Some(&proxy_id)).await;
        conn.send_raw(&unfinished()).await.unwrap();
        let t = Instant::now();
        assert!(matches!(outcome(&mut conn, T).await, Outcome::Closed));
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    });
    // The real proxy's link is untouched: it is still listed, with its own pins.
    let ls = c.tctl_ok(&["proxies", "ls"]);
    assert!(ls.contains("authhost"), "{ls}");
    let added = c.tctl_ok(&["tokens", "add", "--type=node"]);
    assert!(
        !added.contains(&pin) && added.contains("--pinnedpubkey 'sha256//"),
        "{added}"
    );
}

#[test]
fn user_dials_end_at_the_sender_and_are_capped() {
    // A local service that accepts and holds every connection.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for c in held.incoming().flatten() {
            keep.push(c);
        }
    });
    let a = access::Access::start("dial-1", &[port]);
    let user = teleport_lite::pki::identity::Identity::load(&a.sign("mallory", "1h")).unwrap();
    let open = || {
        let cfg = wire::insecure_with_identity_alpn(&user, &[b"teleport-transport"]);
        let proxy = a.proxy.clone();
        async move {
            let tls = net::connect_tls_as(&proxy, cfg, "proxy.teleport.cluster.local")
                .await
                .unwrap();
            Framed::new(tls, MAX_RESPONSE_FRAME)
        }
    };
    let dial = |addr: &str| Request::Dial {
        version: PROTOCOL_VERSION,
        node: "dial-1".into(),
        addr: addr.into(),
    };
    smol::block_on(async {
        for (what, bytes) in [("too large", too_large()), ("malformed", malformed())] {
            let mut conn = open().await;
            conn.send_raw(&bytes).await.unwrap();
            let o = outcome(&mut conn, T).await;
            assert!(matches!(o, Outcome::Closed), "{what}: {o:?}");
        }
        let mut conn = open().await;
        conn.send(&dial("127.0.0.1:22\nforged log line"))
            .await
            .unwrap();
        let o = outcome(&mut conn, T).await;
        assert!(is_error(&o, ErrorCode::BadParameter), "bad address: {o:?}");
        // Never finished: the proxy gives up on the dial request after 10 s.
        let mut conn = open().await;
        conn.send_raw(&unfinished()).await.unwrap();
        let t = Instant::now();
        assert!(matches!(outcome(&mut conn, T).await, Outcome::Closed));
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        // Repeated: 32 open dials per user on a proxy, then refused until one closes.
        let target = format!("127.0.0.1:{port}");
        let mut open_dials = Vec::new();
        for i in 0..32 {
            let mut conn = open().await;
            conn.send(&dial(&target)).await.unwrap();
            let o = outcome(&mut conn, T).await;
            assert!(
                matches!(o, Outcome::Reply(Response::DialOk)),
                "dial {i}: {o:?}"
            );
            open_dials.push(conn);
        }
        let mut conn = open().await;
        conn.send(&dial(&target)).await.unwrap();
        let o = outcome(&mut conn, T).await;
        assert!(is_error(&o, ErrorCode::RateLimited), "dial 33: {o:?}");
        // A closed dial gives its slot back (the proxy sees the end of the connection).
        drop(open_dials.pop());
        let until = Instant::now() + T;
        loop {
            let mut conn = open().await;
            conn.send(&dial(&target)).await.unwrap();
            match outcome(&mut conn, T).await {
                Outcome::Reply(Response::DialOk) => break,
                o if is_error(&o, ErrorCode::RateLimited) && Instant::now() < until => {
                    smol::Timer::after(Duration::from_millis(50)).await;
                }
                o => panic!("after a dial closed: {o:?}"),
            }
        }
    });
}
