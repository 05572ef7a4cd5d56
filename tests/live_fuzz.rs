//! Process-level fuzzing: a real auth server and a real proxy (each with diagnostics) and a
//! joined node; for `LIVE_FUZZ_SECS` (default 15) their ports get random bytes, mutated TLS
//! ClientHellos, valid TLS followed by mutated HTTP requests and mutated frames (anonymous, as
//! a node, as an admin, and yamux frames on a node's tunnel), idle and half-closed
//! connections and slowloris writers. Each connection comes from its own loopback address
//! (127.1.x.y), as many attackers would, so the per-source limits do not shut out the checks
//! after it. Then: every process still runs, no log holds a panic, `tctl status` works, both
//! /healthz answer, the slow and idle connections were cut, and new nodes can still join.

mod common;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/samples.rs"]
mod samples;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mutate::{Mutator, Rng};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use teleport_lite::net::{self, with_alpn};
use teleport_lite::pki::identity::Identity;
use teleport_lite::proto::{self, Request, StreamHello, PROTOCOL_VERSION};
use teleport_lite::proto::{AUTH_SERVER_NAME, PROXY_SERVER_NAME};

const T: Duration = Duration::from_secs(30);
/// How long the services give a client for a TLS handshake and for a request head (see
/// net::serve_tls and proxy::web), and the diagnostics server for a request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DIAG_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of a server timeout before a connection counts as never cut.
const SLACK: Duration = Duration::from_secs(5);

/// A fresh loopback source address for every connection: 127.1.0.1, 127.1.0.2, ...
fn next_source() -> Ipv4Addr {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(
        127,
        1 + (n / 62_500 % 200) as u8,
        (n / 250 % 250) as u8,
        1 + (n % 250) as u8,
    )
}

fn connect(dst: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(next_source(), 0))?;
    rustix::net::connect(&fd, &dst)?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tls(dst: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> std::io::Result<Tls> {
    let tcp = connect(dst)?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// What the attacker saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    /// Bytes came back.
    Answer,
    /// The server closed without a byte.
    Closed,
    /// Nothing within the read timeout.
    Silent,
    /// Connect or handshake refused (reset, alert).
    Refused,
}

/// Reads until the server closes (or `cap` bytes, or the timeout).
fn drain<R: Read>(r: &mut R, cap: usize) -> Seen {
    let mut buf = [0u8; 16 * 1024];
    let mut got = 0usize;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got >= cap {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return if got > 0 { Seen::Answer } else { Seen::Silent };
            }
            Err(_) => break,
        }
    }
    if got > 0 {
        Seen::Answer
    } else {
        Seen::Closed
    }
}

/// Writes `data` in TLS and says close_notify, then reads what comes back.
fn over_tls(mut s: Tls, data: &[u8]) -> Seen {
    if s.write_all(data).and_then(|_| s.flush()).is_err() {
        return Seen::Refused;
    }
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    drain(&mut s, 256 * 1024)
}

fn over_tcp(mut s: TcpStream, data: &[u8]) -> Seen {
    if s.write_all(data).is_err() {
        return Seen::Refused;
    }
    let _ = s.shutdown(Shutdown::Write);
    drain(&mut s, 256 * 1024)
}

#[derive(Default)]
struct Stats(Mutex<BTreeMap<&'static str, BTreeMap<Seen, u64>>>);

impl Stats {
    fn add(&self, kind: &'static str, seen: Seen) {
        let mut m = self.0.lock().unwrap();
        *m.entry(kind).or_default().entry(seen).or_default() += 1;
    }

    fn print(&self) {
        let m = self.0.lock().unwrap();
        let mut total = 0;
        for (kind, seen) in m.iter() {
            let n: u64 = seen.values().sum();
            total += n;
            println!("[live_fuzz] {kind:<18} {n:>6} connections  {seen:?}");
        }
        println!("[live_fuzz] {:<18} {total:>6} connections", "total");
    }
}

/// The cluster under fire: auth (+diag), a proxy process (+diag), a node joined through it.
struct Target {
    c: Cluster,
    proxy: ProxyNode,
    node: Node,
    auth: SocketAddr,
    web: SocketAddr,
    auth_diag: SocketAddr,
    proxy_diag: SocketAddr,
    token: String,
    node_id: Identity,
    admin_id: Identity,
}

fn start() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let auth_diag: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\n  diag_addr: {auth_diag}\n\
         auth_service:\n  enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: \
         {CLUSTER_NAME}\n  heartbeat_interval: 500ms\nssh_service:\n  enabled: no\n",
        dir.path().join("auth").display()
    );
    let c = Cluster::launch(dir, port, &yaml);

    let mut proxy = c.proxy_config("proxy1", "127.0.0.1", "");
    let web: SocketAddr = proxy.addr().parse().unwrap();
    let proxy_diag: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = proxy.config.to_string_lossy().to_string();
    proxy.proc = Some(Proc::spawn(
        &proxy.name,
        proxy.dir.path(),
        &["start", "-c", &cfg, &format!("--diag-addr={proxy_diag}")],
    ));
    wait_for(T, "proxy1 in tctl proxies ls", || {
        c.proxies()
            .iter()
            .any(|p| p["name"] == "proxy1")
            .then_some(())
    });

    let token = c.token("node", "30m");
    let pin = c.pin();
    let mut node = Node::new("fuzznode");
    node.start_via_proxy(&proxy.addr(), &token, Some(&pin));
    c.wait_tunnels("fuzznode", 1, T);
    let node_id = Identity::load(&node.data_dir().join("node-identity.pem")).unwrap();
    let admin_id = Identity::load(&c.path().join("auth/admin-identity.pem")).unwrap();
    Target {
        auth: c.addr().parse().unwrap(),
        c,
        proxy,
        node,
        web,
        auth_diag,
        proxy_diag,
        token,
        node_id,
        admin_id,
    }
}

/// One mutator per kind of input.
struct Inputs {
    raw: Mutator,
    hello: Mutator,
    http: Mutator,
    frames_anon: Mutator,
    frames_node: Mutator,
    frames_admin: Mutator,
    yamux: Mutator,
}

fn client_hellos(configs: &[(Arc<ClientConfig>, &str)]) -> Vec<Vec<u8>> {
    configs
        .iter()
        .map(|(config, name)| {
            let name = ServerName::try_from(name.to_string()).unwrap();
            let mut conn = ClientConnection::new(config.clone(), name).unwrap();
            let mut out = Vec::new();
            conn.write_tls(&mut out).unwrap();
            out
        })
        .collect()
}

fn inputs(t: &Target, hellos: Vec<Vec<u8>>) -> Inputs {
    let (_, csr) = teleport_lite::pki::ca::new_key_and_csr("x").unwrap();
    let mut reg = samples::register_request(&csr, "node");
    reg.token = t.token.clone();
    let reg_body = serde_json::to_vec(&reg).unwrap();
    let mut anon: Vec<Vec<u8>> = samples::requests(&csr).iter().map(proto::encode).collect();
    anon.push(proto::encode(&Request::Register(reg)));
    let http = samples::http_requests(&reg_body);

    let hello = StreamHello {
        node_name: "fuzznode".into(),
        ..samples::stream_hello()
    };
    let mut stream = proto::encode(&Request::Hello(hello.clone()));
    for seq in 1..4 {
        stream.extend(proto::encode(&Request::Heartbeat { seq }));
    }
    let mut node_frames = vec![stream.clone()];
    node_frames.extend(anon.iter().map(|f| {
        let mut s = proto::encode(&Request::Hello(hello.clone()));
        s.extend_from_slice(f);
        s
    }));
    let admin: Vec<Vec<u8>> = samples::admin_cmds()
        .into_iter()
        .map(|cmd| {
            proto::encode(&Request::Admin {
                version: PROTOCOL_VERSION,
                cmd,
            })
        })
        .chain([proto::encode(&Request::Dial {
            version: PROTOCOL_VERSION,
            node: "fuzznode".into(),
            addr: format!("127.0.0.1:{}", t.auth_diag.port()),
        })])
        .collect();

    // A tunnel: open stream 1 with the hello, beats, a ping, a window update, then goodbye.
    let mut tunnel = samples::yamux_data(1, true, &proto::encode(&Request::TunnelHello(hello)));
    for seq in 1..3 {
        tunnel.extend(samples::yamux_data(
            1,
            false,
            &proto::encode(&Request::Heartbeat { seq }),
        ));
    }
    tunnel.extend(samples::yamux_header(2, 1, 0, 7));
    tunnel.extend(samples::yamux_header(1, 0, 1, 1 << 20));
    tunnel.extend(samples::yamux_data(
        1,
        false,
        &proto::encode(&Request::Goodbye),
    ));
    let mut opens = Vec::new();
    for id in [3u32, 5, 2, 0] {
        opens.extend(samples::yamux_data(id, true, b"x"));
    }
    let yamux = vec![
        tunnel.clone(),
        [tunnel.clone(), opens].concat(),
        [tunnel, samples::yamux_header(3, 0, 0, 0)].concat(),
    ];

    let mut raw = hellos.clone();
    raw.extend(http.iter().cloned());
    raw.extend(anon.iter().cloned());
    raw.push((0..=255u8).collect());
    let mut json_http = samples::HTTP_DICT.to_vec();
    json_http.extend(samples::JSON_DICT);
    let dict: &'static [&'static str] = Box::leak(json_http.into_boxed_slice());
    Inputs {
        raw: Mutator::new(raw, dict, 8 * 1024),
        hello: Mutator::new(hellos, &[], 4 * 1024),
        http: Mutator::new(http, samples::HTTP_DICT, 32 * 1024),
        frames_anon: Mutator::new(anon, samples::JSON_DICT, 32 * 1024),
        frames_node: Mutator::new(node_frames, samples::JSON_DICT, 32 * 1024),
        frames_admin: Mutator::new(admin, samples::JSON_DICT, 8 * 1024),
        yamux: Mutator::new(yamux, samples::JSON_DICT, 32 * 1024),
    }
}

struct Clients {
    anon: Arc<ClientConfig>,
    node: Arc<ClientConfig>,
    admin: Arc<ClientConfig>,
}

/// One mutated input of a random kind against the port that takes it.
fn one(t: &Target, c: &Clients, i: &Inputs, rng: &mut Rng, stats: &Stats) {
    let alpn = |cfg: &Arc<ClientConfig>, p: &[u8]| with_alpn(cfg, &[p]);
    let (kind, seen) = match rng.below(12) {
        0 => {
            let dst = *rng.pick(&[t.auth, t.web, t.auth_diag, t.proxy_diag]);
            let data = i.raw.mutate(rng);
            let seen = connect(dst).map_or(Seen::Refused, |s| over_tcp(s, &data));
            ("raw bytes", seen)
        }
        1 | 2 => {
            let dst = *rng.pick(&[t.auth, t.web]);
            let data = i.hello.mutate(rng);
            let seen = connect(dst).map_or(Seen::Refused, |s| over_tcp(s, &data));
            ("client hello", seen)
        }
        3..=5 => {
            let data = i.http.mutate(rng);
            let seen = if rng.one_in(4) {
                let dst = *rng.pick(&[t.auth_diag, t.proxy_diag]);
                connect(dst).map_or(Seen::Refused, |s| over_tcp(s, &data))
            } else {
                tls(t.web, &alpn(&c.anon, b"http/1.1"), "localhost")
                    .map_or(Seen::Refused, |s| over_tls(s, &data))
            };
            ("http", seen)
        }
        6 | 7 => {
            let data = i.frames_anon.mutate(rng);
            let (dst, p) = match rng.below(4) {
                0 => (t.web, &b"teleport-reversetunnel"[..]),
                1 => (t.web, &b"teleport-transport"[..]),
                _ => (t.auth, &b"teleport-auth"[..]),
            };
            let seen = tls(dst, &alpn(&c.anon, p), AUTH_SERVER_NAME)
                .map_or(Seen::Refused, |s| over_tls(s, &data));
            ("frames anonymous", seen)
        }
        8 => {
            let data = i.frames_node.mutate(rng);
            let seen = tls(t.auth, &c.node, AUTH_SERVER_NAME)
                .map_or(Seen::Refused, |s| over_tls(s, &data));
            ("frames as node", seen)
        }
        9 | 10 => {
            let data = i.yamux.mutate(rng);
            let cfg = alpn(&c.node, b"teleport-reversetunnel");
            let seen =
                tls(t.web, &cfg, PROXY_SERVER_NAME).map_or(Seen::Refused, |s| over_tls(s, &data));
            ("tunnel (yamux)", seen)
        }
        _ => {
            let data = i.frames_admin.mutate(rng);
            let seen = if rng.one_in(2) {
                let cfg = alpn(&c.admin, b"teleport-transport");
                tls(t.web, &cfg, PROXY_SERVER_NAME).map_or(Seen::Refused, |s| over_tls(s, &data))
            } else {
                tls(t.auth, &c.admin, AUTH_SERVER_NAME)
                    .map_or(Seen::Refused, |s| over_tls(s, &data))
            };
            ("frames as admin", seen)
        }
    };
    stats.add(kind, seen);
}

/// True once the server has closed `s` (read gives EOF or an error rather than blocking).
fn closed_by_server(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 4096];
    let r = loop {
        match (&*s).read(&mut b) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    let _ = s.set_nonblocking(false);
    r
}

/// Connections that say nothing, half a ClientHello, or close their write side; and TLS
/// connections that send half a request head. All must be cut by the server's timeouts.
fn idle_connections(t: &Target, c: &Clients, hello: &[u8]) -> Vec<(&'static str, TcpStream)> {
    let mut held = Vec::new();
    for dst in [t.auth, t.web] {
        for i in 0..12 {
            let Ok(s) = connect(dst) else { continue };
            match i % 3 {
                0 => held.push(("idle", s)),
                1 => {
                    let mut s = s;
                    let _ = s.write_all(&hello[..hello.len() / 2]);
                    held.push(("half ClientHello", s));
                }
                _ => {
                    // Half-closed: our FIN, their side left open.
                    let _ = s.shutdown(Shutdown::Write);
                    held.push(("half-closed", s));
                }
            }
        }
    }
    for _ in 0..8 {
        if let Ok(mut s) = tls(t.web, &with_alpn(&c.anon, &[b"http/1.1"]), "localhost") {
            let _ = s.write_all(b"GET /webapi/find HTTP/1.1\r\nHost: x\r\n");
            let _ = s.flush();
            held.push(("half request (TLS)", s.sock));
        }
    }
    for _ in 0..6 {
        if let Ok(mut s) = connect(t.auth_diag) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n");
            held.push(("half request (diag)", s));
        }
    }
    held
}

/// Slowloris: request heads trickled a byte at a time; the servers must cut each one within
/// their timeout. Returns (connections, longest life) per kind.
fn slowloris(t: &Target, c: &Clients, until: Instant) -> Vec<(&'static str, usize, Duration)> {
    enum Conn {
        Tls(Box<Tls>),
        Tcp(TcpStream),
    }
    let head = b"GET /webapi/find HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    let open = |tls_kind: bool| -> Option<Conn> {
        if tls_kind {
            tls(t.web, &with_alpn(&c.anon, &[b"http/1.1"]), "localhost")
                .ok()
                .map(|s| Conn::Tls(Box::new(s)))
        } else {
            connect(t.proxy_diag).ok().map(Conn::Tcp)
        }
    };
    // (is TLS, conn, opened at, bytes sent)
    let mut conns: Vec<(bool, Conn, Instant, usize)> = Vec::new();
    for i in 0..8 {
        if let Some(c) = open(i % 2 == 0) {
            conns.push((i % 2 == 0, c, Instant::now(), 0));
        }
    }
    let mut lives: BTreeMap<bool, (usize, Duration)> = BTreeMap::new();
    while !conns.is_empty() {
        let now = Instant::now();
        let mut next = Vec::new();
        for (is_tls, mut conn, opened, sent) in conns {
            let byte = [*head.get(sent).unwrap_or(&b'a')];
            let (wrote, sock) = match &mut conn {
                Conn::Tls(s) => (s.write_all(&byte).and_then(|_| s.flush()).is_ok(), &s.sock),
                Conn::Tcp(s) => ((&*s).write_all(&byte).is_ok(), &*s),
            };
            let limit = if is_tls {
                HANDSHAKE_TIMEOUT
            } else {
                DIAG_TIMEOUT
            };
            if !wrote || closed_by_server(sock) {
                let life = now - opened;
                let e = lives.entry(is_tls).or_default();
                e.0 += 1;
                e.1 = e.1.max(life);
                if now < until {
                    if let Some(c) = open(is_tls) {
                        next.push((is_tls, c, Instant::now(), 0));
                    }
                }
            } else if now - opened > limit + SLACK {
                let e = lives.entry(is_tls).or_default();
                e.0 += 1;
                e.1 = e.1.max(now - opened);
            } else {
                next.push((is_tls, conn, opened, sent + 1));
            }
        }
        conns = next;
        std::thread::sleep(Duration::from_millis(250));
    }
    lives
        .into_iter()
        .map(|(is_tls, (n, life))| {
            (
                if is_tls {
                    "proxy web (TLS)"
                } else {
                    "proxy diag"
                },
                n,
                life,
            )
        })
        .collect()
}

fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1)?.parse().ok()
}

#[test]
fn live_ports_survive_fuzzing() {
    let secs: f64 = std::env::var("LIVE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15.0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| match s.trim().strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.trim().parse().ok(),
        })
        .unwrap_or(0x7e1e_9047_f022_2024);
    println!("[live_fuzz] seed {seed:#x} (FUZZ_SEED), {secs}s (LIVE_FUZZ_SECS)");

    let mut t = start();
    let clients = Clients {
        anon: net::insecure_client_config(),
        // The attacker's clients present real identities but do not care whom they talk to.
        node: common::wire::insecure_with_identity_alpn(&t.node_id, &[]),
        admin: common::wire::insecure_with_identity_alpn(&t.admin_id, &[]),
    };
    let hellos = client_hellos(&[
        (with_alpn(&clients.anon, &[b"http/1.1"]), "localhost"),
        (
            with_alpn(&clients.node, &[b"teleport-reversetunnel"]),
            PROXY_SERVER_NAME,
        ),
        (clients.anon.clone(), AUTH_SERVER_NAME),
        (
            with_alpn(&clients.admin, &[b"teleport-transport", b"http/1.1"]),
            "127.0.0.1",
        ),
    ]);
    let inputs = inputs(&t, hellos.clone());
    let stats = Stats::default();

    // A request that once panicked the proxy (a slice whose start is past its end), always
    // sent first; then the random ones.
    for path in ["/scripts/install-node.sh", "/v1/scripts/install-node.sh"] {
        let req = samples::client_request("GET", path, None);
        let seen = tls(
            t.web,
            &with_alpn(&clients.anon, &[b"http/1.1"]),
            "localhost",
        )
        .map_or(Seen::Refused, |s| over_tls(s, &req));
        stats.add("regressions", seen);
    }

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let held = idle_connections(&t, &clients, &hellos[0]);
    let opened_idle = Instant::now();
    let slow = std::thread::scope(|scope| {
        let slow = scope.spawn(|| slowloris(&t, &clients, until));
        for w in 0..3u64 {
            let (t, clients, inputs, stats) = (&t, &clients, &inputs, &stats);
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ mutate::fnv(b"live") ^ w);
                while Instant::now() < until {
                    one(t, clients, inputs, &mut rng, stats);
                }
            });
        }
        slow.join().unwrap()
    });
    println!(
        "[live_fuzz] fuzzed for {:.1}s",
        started.elapsed().as_secs_f64()
    );
    stats.print();
    for (kind, n, life) in &slow {
        println!("[live_fuzz] slowloris {kind}: {n} connections, longest lived {life:?}");
    }

    // Every process runs and none of them panicked (a panic aborts a release build).
    let procs: Vec<&mut Proc> = vec![t.c.auth(), t.proxy.proc(), t.node.proc()];
    let mut panics = std::collections::BTreeSet::new();
    for p in procs {
        assert!(
            p.running(),
            "{} died under fuzzing:\n{}",
            p.name,
            p.log_text()
        );
        let log = p.log_text();
        let mut lines = log.lines();
        while let Some(line) = lines.next() {
            if line.contains("panicked") {
                // Thread names and ids differ between occurrences; location and message do not.
                let at = line.split(" panicked at ").nth(1).unwrap_or(line);
                let msg = lines.next().unwrap_or_default();
                panics.insert(format!("{}: panicked at {at} {msg}", p.name));
            }
        }
    }
    assert!(
        panics.is_empty(),
        "panics under fuzzing (each one aborts a release build):\n{}",
        panics.into_iter().collect::<Vec<_>>().join("\n")
    );

    // The slow writers were cut within the servers' timeouts.
    for (kind, _, life) in &slow {
        let limit = if kind.contains("TLS") {
            HANDSHAKE_TIMEOUT
        } else {
            DIAG_TIMEOUT
        };
        assert!(
            *life <= limit + SLACK,
            "a slowloris connection to {kind} lived {life:?}"
        );
    }
    // Idle, half-sent and half-closed connections are cut too.
    wait_for(
        HANDSHAKE_TIMEOUT + SLACK + SLACK,
        "the servers to close idle connections",
        || {
            let open: Vec<_> = held
                .iter()
                .filter(|(_, s)| !closed_by_server(s))
                .map(|(k, _)| *k)
                .collect();
            open.is_empty().then_some(())
        },
    );
    println!(
        "[live_fuzz] {} idle/half-open connections all cut within {:?}",
        held.len(),
        opened_idle.elapsed()
    );

    // The cluster still works: tctl, health, the joined node, and new joins both ways.
    let status = t.c.tctl(&["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert_eq!(http_get(t.auth_diag, "/healthz"), Some(200));
    assert_eq!(http_get(t.proxy_diag, "/healthz"), Some(200));
    t.c.wait_node("fuzznode", T);
    let token = t.c.token("node", "10m");
    // The fuzzed admin commands may have started a CA rotation (the admin may): new hosts
    // accept every pin the cluster has now.
    let pins = t.c.pins();
    let mut via_proxy = Node::new("after-fuzz-proxy");
    via_proxy.start_via_proxy(&t.proxy.addr(), &token, Some(&pins));
    let mut direct = Node::new("after-fuzz-direct");
    let args = direct.start_args(&t.c, &token, &pins);
    direct.spawn(&args);
    let held = std::time::Instant::now();
    while t.c.tunnels_of("after-fuzz-proxy").map(|v| v.len()) != Some(1) {
        assert!(
            held.elapsed() < T,
            "after fuzzing, a node could not hold a tunnel through the proxy; node log:\n{}\n\
             proxy log (tail):\n{}",
            via_proxy.proc().log_text(),
            tail(&t.proxy.proc().log_text(), 40)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    t.c.wait_node("after-fuzz-direct", T);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
