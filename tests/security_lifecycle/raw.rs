//! The attacker's hands for the identity-lifecycle attack tests: identities signed by a raw
//! join (no process needed), and raw connections that speak as a node's heartbeat stream, a
//! proxy's link to auth, a node's tunnel or a user's dial, with the library's own parts.

// A toolbox, as `common`: each test uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use teleport_lite::mux::{self, Mux};
use teleport_lite::net::{self, Framed};
use teleport_lite::pki::ca::new_key_and_csr;
use teleport_lite::pki::identity::Identity;
use teleport_lite::proto::{
    ErrorCode, ProxyHello, RegisterRequest, Request, Response, StreamHello, WebTrust,
    MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

use crate::common::{wire, Cluster};

/// A connection to auth (or a user's transport connection to a proxy).
pub type Conn = Framed<futures_rustls::client::TlsStream<teleport_lite::net::Tcp>>;
/// A tunnel's control stream.
pub type Ctl = Framed<mux::Stream>;

/// The longest wait for an answer that must come.
pub const T: Duration = Duration::from_secs(20);

/// How a connection answered.
#[derive(Debug)]
pub enum Outcome {
    Reply(Response),
    Closed,
    StillOpen,
}

impl Outcome {
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Outcome::Reply(Response::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }

    /// The error's message, or "" when this is no error.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Reply(Response::Error { message, .. }) => message,
            _ => "",
        }
    }

    pub fn renewed(&self) -> bool {
        matches!(self, Outcome::Reply(Response::Renewed { .. }))
    }
}

/// Reads until a reply, the end of the connection, or `within`.
pub async fn outcome<S>(conn: &mut Framed<S>, within: Duration) -> Outcome
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    match net::with_timeout(within, conn.recv::<Response>()).await {
        Some(Ok(Some(r))) => Outcome::Reply(r),
        Some(_) => Outcome::Closed,
        None => Outcome::StillOpen,
    }
}

/// The next reply that is not something auth pushes on its own (web pins, trust, denials).
pub async fn answer<S>(conn: &mut Framed<S>, within: Duration) -> Outcome
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match outcome(conn, left).await {
            Outcome::Reply(
                Response::ProxyWeb(_) | Response::Trust(_) | Response::Denied { .. },
            ) => {}
            other => return other,
        }
    }
}

/// A length prefix announcing ten times the request limit, and a little of its body.
pub fn too_large() -> Vec<u8> {
    let mut b = ((10 * MAX_REQUEST_FRAME) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&[b'{'; 4096]);
    b
}

/// Half a length prefix, and nothing more.
pub fn unfinished() -> Vec<u8> {
    vec![0, 0]
}

/// `json` framed as it is, valid or not.
pub fn frame(json: &str) -> Vec<u8> {
    let mut b = (json.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b
}

/// Joins as `role` ("Node" or "Proxy") named `name` with a fresh token, as a modified agent
/// would, and keeps the key: the identity auth signed, with no process behind it.
pub fn join(c: &Cluster, role: &str, name: &str) -> Identity {
    let token = c.token(&role.to_lowercase(), "30m");
    let (key, mut req) = wire::register_request(&token, name, "");
    req.role = role.to_string();
    req.dns_names = Vec::new();
    match wire::ask_auth(&c.addr(), &Request::Register(req), None) {
        Response::Registered {
            tls, tls_ca_certs, ..
        } => Identity {
            key_pem: key,
            cert_pem: tls,
            ca_pems: tls_ca_certs,
        },
        other => panic!("the join of {role} {name} was refused: {other:?}"),
    }
}

/// A join request for `role` with `token`, as a relaying proxy would send it for `remote`.
pub fn register(token: &str, name: &str, remote: &str) -> RegisterRequest {
    let (_, mut req) = wire::register_request(token, name, "");
    req.dns_names = Vec::new();
    req.remote_addr = remote.to_string();
    req
}

/// A TLS connection to auth presenting `id` (or nothing), not verifying auth.
pub async fn connect(addr: &str, id: Option<&Identity>) -> Conn {
    let cfg = match id {
        Some(id) => wire::insecure_with_identity_alpn(id, &[b"teleport-auth"]),
        None => net::insecure_client_config(),
    };
    Framed::new(
        net::connect_tls(addr, cfg).await.unwrap(),
        MAX_RESPONSE_FRAME,
    )
}

/// A node's heartbeat stream to auth, after its hello was acknowledged.
pub async fn stream(addr: &str, id: &Identity) -> Conn {
    let mut conn = connect(addr, Some(id)).await;
    let name = id.subject().unwrap().node_name;
    conn.send(&wire::hello(&name, BTreeMap::new()))
        .await
        .unwrap();
    let o = outcome(&mut conn, T).await;
    assert!(
        matches!(o, Outcome::Reply(Response::HelloAck { .. })),
        "the stream of {name} was not opened: {o:?}"
    );
    conn
}

/// A proxy's link to auth, after its hello was acknowledged.
pub async fn link(addr: &str, id: &Identity) -> Conn {
    let mut conn = connect(addr, Some(id)).await;
    conn.send(&proxy_hello()).await.unwrap();
    let o = outcome(&mut conn, T).await;
    assert!(
        matches!(o, Outcome::Reply(Response::HelloAck { .. })),
        "the link was not opened: {o:?}"
    );
    conn
}

/// A link as soon as auth accepts it: auth takes up to a second to trust a CA that a
/// rotation phase just introduced at its TLS handshakes.
pub async fn link_when_trusted(addr: &str, id: &Identity) -> Conn {
    let until = Instant::now() + T;
    loop {
        let mut conn = connect(addr, Some(id)).await;
        conn.send(&proxy_hello()).await.unwrap();
        match outcome(&mut conn, T).await {
            Outcome::Reply(Response::HelloAck { .. }) => return conn,
            o => assert!(Instant::now() < until, "the link was not opened: {o:?}"),
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

pub fn proxy_hello() -> Request {
    Request::ProxyHello(ProxyHello {
        version: PROTOCOL_VERSION,
        name: "mallory-proxy".into(),
        public_addr: "127.0.0.1:9".into(),
        server_version: "1".into(),
        web: WebTrust::default(),
    })
}

/// A TLS connection to a proxy presenting `id` with `alpn`, not verifying the proxy.
pub async fn to_proxy(proxy: &str, id: &Identity, alpn: &[u8]) -> Conn {
    let cfg = wire::insecure_with_identity_alpn(id, &[alpn]);
    let tls = net::connect_tls_as(proxy, cfg, "proxy.teleport.cluster.local")
        .await
        .unwrap();
    Framed::new(tls, MAX_RESPONSE_FRAME)
}

/// A tunnel to `proxy` presenting `id`, its control stream open but nothing said on it;
/// `None` when the proxy closed the connection before the stream could be opened.
pub async fn try_tunnel_raw(proxy: &str, id: &Identity) -> Option<(Mux, Ctl)> {
    let (tls, _) = to_proxy(proxy, id, b"teleport-reversetunnel")
        .await
        .into_parts();
    let m = mux::start(tls, true);
    // Bounded: a refused tunnel's connection may end while the stream opens.
    let ctl = net::with_timeout(T, m.opener.open()).await?.ok()?;
    Some((m, Framed::new(ctl, MAX_RESPONSE_FRAME)))
}

/// As `try_tunnel_raw`, for a tunnel that must open.
pub async fn tunnel_raw(proxy: &str, id: &Identity) -> (Mux, Ctl) {
    try_tunnel_raw(proxy, id)
        .await
        .expect("the proxy closed the tunnel at once")
}

/// A tunnel to `proxy` presenting `id`, after the proxy's welcome.
pub async fn tunnel(proxy: &str, id: &Identity) -> (Mux, Ctl) {
    let (m, mut ctl) = tunnel_raw(proxy, id).await;
    let name = id.subject().unwrap().node_name;
    ctl.send(&Request::TunnelHello(StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name.clone(),
        server_version: "x".into(),
        labels: BTreeMap::new(),
        public_addr: String::new(),
    }))
    .await
    .unwrap();
    let o = outcome(&mut ctl, T).await;
    assert!(
        matches!(o, Outcome::Reply(Response::TunnelWelcome { .. })),
        "the tunnel of {name} was not welcomed: {o:?}"
    );
    (m, ctl)
}

/// A renewal of `id` as its agent sends it: a new key, the CSR signed with the current key.
/// Returns the new key too.
pub fn renew_of(id: &Identity) -> (String, Request) {
    let host = id.subject().unwrap().host_id;
    let (key, csr) = new_key_and_csr(&host).unwrap();
    let proof = teleport_lite::pki::proof::sign(&id.key_pem, &csr).unwrap();
    (key, Request::Renew { csr, proof })
}

/// What a proxy relays for `id`'s renewal (certificate and proof included), as request `n`.
pub fn relay_of(n: u64, id: &Identity) -> Request {
    let host_id = id.subject().unwrap().host_id;
    match renew_of(id).1 {
        Request::Renew { csr, proof } => Request::RelayRenew {
            id: n,
            host_id,
            csr,
            cert: id.cert_pem.clone(),
            proof,
        },
        _ => unreachable!(),
    }
}

/// A proxy's renewal of its own certificate, as request `n`.
pub fn own_relay(n: u64, proxy: &Identity) -> Request {
    let host_id = proxy.subject().unwrap().host_id;
    let (_, csr) = new_key_and_csr(&host_id).unwrap();
    Request::RelayRenew {
        id: n,
        host_id,
        csr,
        cert: String::new(),
        proof: String::new(),
    }
}

/// Reads `count` answers to relayed requests off a link, in whatever order auth finished
/// them; the inner answers by request ID (fewer if the link ended).
pub async fn relay_answers(conn: &mut Conn, count: usize) -> HashMap<u64, Outcome> {
    let mut got = HashMap::new();
    let until = Instant::now() + T;
    while got.len() < count {
        let left = until.saturating_duration_since(Instant::now());
        match outcome(conn, left).await {
            Outcome::Reply(Response::RelayAnswer { id, answer }) => {
                got.insert(id, Outcome::Reply(*answer));
            }
            Outcome::Reply(_) => {}
            _ => break,
        }
    }
    got
}

/// Reads a link until the answer to relayed request `n` (the only one in flight); its inner
/// answer.
pub async fn relay_answer(conn: &mut Conn, n: u64) -> Outcome {
    let until = Instant::now() + T;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match outcome(conn, left).await {
            Outcome::Reply(Response::RelayAnswer { id, answer }) if id == n => {
                return Outcome::Reply(*answer)
            }
            Outcome::Reply(_) => {}
            other => return other,
        }
    }
}

/// A heartbeat and its acknowledgement: proof that a stream, link or tunnel still works and
/// that everything sent before it was handled.
pub async fn beat<S>(conn: &mut Framed<S>, seq: u64) -> bool
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    if conn.send(&Request::Heartbeat { seq }).await.is_err() {
        return false;
    }
    matches!(answer(conn, T).await, Outcome::Reply(Response::HeartbeatAck { seq: s, .. }) if s == seq)
}

/// A user's (or admin's) dial request to `node`.
pub fn dial(node: &str, addr: &str) -> Request {
    Request::Dial {
        version: PROTOCOL_VERSION,
        node: node.into(),
        addr: addr.into(),
    }
}

/// The subject's host ID of an identity.
pub fn host_id(id: &Identity) -> String {
    id.subject().unwrap().host_id
}

/// The subject of the certificate in a `Renewed` answer.
pub fn renewed_subject(o: &Outcome) -> teleport_lite::pki::Subject {
    match o {
        Outcome::Reply(Response::Renewed { tls, .. }) => wire::cert_facts(tls).subject,
        other => panic!("not renewed: {other:?}"),
    }
}

/// A raw frame that is JSON but not a valid request of its type.
pub const MALFORMED: &str = r#"{"type":"renew","csr":17}"#;

/// The next request a peer sends (the server's side of a connection); `None` when it closed,
/// broke the protocol or stayed silent for `T`.
pub async fn outcome_req<S>(conn: &mut Framed<S>) -> Option<Request>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    match net::with_timeout(T, conn.recv::<Request>()).await {
        Some(Ok(Some(r))) => Some(r),
        _ => None,
    }
}

/// The cluster's host CA, key included, read straight from auth's database: what an attacker
/// who stole the data directory holds.
pub fn stored_ca(c: &Cluster) -> teleport_lite::pki::ca::CertAuthority {
    let db = rusqlite::Connection::open(c.path().join("auth/auth.db")).unwrap();
    let value: Vec<u8> = db
        .query_row(
            "SELECT value FROM kv WHERE key = 'authorities/host'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
    teleport_lite::pki::ca::CertAuthority {
        cert_pem: v["cert_pem"].as_str().unwrap().into(),
        key_pem: v["key_pem"].as_str().unwrap().into(),
    }
}
