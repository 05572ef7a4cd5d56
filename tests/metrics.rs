//! Metrics and readiness as an operator scrapes them: real auth, proxy and node processes with
//! `--diag-addr`, scraped with curl. Each role exports its own families; the numbers follow
//! what the cluster does (tunnels, beats, dials, restarts, refused joins); `/readyz` and
//! `teleport health` say why a node is not ready.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::*;
use teleport_lite::net::{self, Framed};
use teleport_lite::proto::{Request, Response, MAX_RESPONSE_FRAME};

const T: Duration = Duration::from_secs(30);

/// `GET http://addr/path` with curl: status and body (status 0 when nothing answers).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

fn scrape(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of one series (`name{labels}` exactly as exported).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn families(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// Waits until `series` at `addr` satisfies `ok`; returns the value.
fn wait_value(addr: &str, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    // The diagnostics server may not listen yet: keep asking until it answers.
    wait_for(T, &format!("{series} at {addr}"), || {
        let (code, body) = http_get(addr, "/metrics");
        (code == 200).then_some(())?;
        value(&body, series).filter(|v| ok(*v))
    })
}

fn diag_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Auth (500 ms beats) with its diagnostics on `diag`.
fn cluster_with_diag(diag: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\n  diag_addr: {diag}\n\
         auth_service:\n  enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: \
         {CLUSTER_NAME}\n  heartbeat_interval: 500ms\nssh_service:\n  enabled: no\n",
        dir.path().join("auth").display(),
    );
    Cluster::launch(dir, port, &yaml)
}

/// A proxy of `c` with its diagnostics on `diag`, started and listed.
fn start_proxy(c: &Cluster, p: &mut ProxyNode, diag: &str) {
    let cfg = p.config.display().to_string();
    let flag = format!("--diag-addr={diag}");
    p.proc = Some(Proc::spawn(
        &p.name,
        p.dir.path(),
        &["start", "-c", &cfg, &flag],
    ));
    c.wait_proxy_listed(&p.name);
}

/// `teleport node configure --proxy=...`, then `start -c` with diagnostics on `diag`.
fn start_node_via_proxy(n: &mut Node, proxy: &str, token: &str, pin: &str, diag: &str) {
    let cfg = n.dir.path().join("teleport.yaml");
    let out = run(&[
        "node",
        "configure",
        &format!("--token={token}"),
        &format!("--proxy={proxy}"),
        &format!("--ca-pin={pin}"),
        &format!("--node-name={}", n.name),
        &format!("--data-dir={}", n.data_dir().display()),
        "-o",
        &format!("file://{}", cfg.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    n.spawn(&[
        "start".into(),
        "-c".into(),
        cfg.display().to_string(),
        format!("--diag-addr={diag}"),
    ]);
}

/// A node straight to auth with diagnostics on `diag`.
fn start_direct_node(c: &Cluster, n: &mut Node, diag: &str) {
    let mut args = n.start_args(c, &c.token("node", "10m"), &c.pin());
    args.push(format!("--diag-addr={diag}"));
    n.spawn(&args);
}

/// Echoes every connection back until the client half-closes; serves `n` connections.
fn echo_server(n: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(n) {
            let mut c = conn.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        if c.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    port
}

const RTT_TUNNEL: &str = "teleport_heartbeat_rtt_seconds_count{link=\"tunnel\"}";
const RTT_STREAM: &str = "teleport_heartbeat_rtt_seconds_count{link=\"auth_stream\"}";
const RTT_LINK: &str = "teleport_heartbeat_rtt_seconds_count{link=\"auth_link\"}";

#[test]
fn each_role_exports_its_own_families_and_counts_tunnels_beats_and_dials() {
    let (adiag, pdiag, ndiag, ddiag) = (diag_addr(), diag_addr(), diag_addr(), diag_addr());
    let c = cluster_with_diag(&adiag);
    let mut p = c.proxy_config("px", "127.0.0.1", "");
    start_proxy(&c, &mut p, &pdiag);
    let mut n = Node::new("tunnelled");
    start_node_via_proxy(&mut n, &p.addr(), &c.token("node", "10m"), &c.pin(), &ndiag);
    let mut d = Node::new("direct");
    start_direct_node(&c, &mut d, &ddiag);
    for diag in [&adiag, &pdiag, &ndiag, &ddiag] {
        wait_for(T, &format!("{diag}/readyz 200"), || {
            (http_get(diag, "/readyz").0 == 200).then_some(())
        });
    }

    let (a, px, node) = (scrape(&adiag), scrape(&pdiag), scrape(&ndiag));
    for (m, roles) in [(&a, "auth"), (&px, "proxy"), (&node, "node")] {
        let build = format!(
            "teleport_build_info{{version=\"{}\",arch=\"{}\",roles=\"{roles}\"}}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert_eq!(value(m, &build), Some(1.0), "{m}");
        assert_eq!(value(m, "teleport_ready"), Some(1.0), "{m}");
        assert!(m.contains("# TYPE teleport_log_lines_dropped_total counter"));
    }
    let (fa, fp, fnode) = (families(&a), families(&px), families(&node));
    let has = |f: &[String], name: &str| f.iter().any(|x| x == name);
    // Auth: the inventory and joins; nothing of tunnels or beats it does not send.
    assert!(has(&fa, "teleport_nodes_online") && has(&fa, "teleport_joins_total"));
    for name in [
        "teleport_tunnels_held",
        "teleport_proxy_tunnels",
        "teleport_heartbeats_sent_total",
        "teleport_heartbeat_rtt_seconds",
    ] {
        assert!(!has(&fa, name), "auth exports {name}:\n{a}");
    }
    // Node: its tunnels, beats and data plane; no cluster-wide gauges.
    for name in [
        "teleport_tunnels_held",
        "teleport_heartbeat_rtt_seconds",
        "teleport_join_failures_total",
        "teleport_node_streams_opened_total",
    ] {
        assert!(has(&fnode, name), "node lacks {name}:\n{node}");
    }
    for name in [
        "teleport_nodes_online",
        "teleport_joins_total",
        "teleport_proxy_tunnels",
    ] {
        assert!(!has(&fnode, name), "node exports {name}:\n{node}");
    }
    // Proxy: the tunnels it holds and its link, not the node's or auth's families.
    assert!(has(&fp, "teleport_proxy_tunnels") && has(&fp, "teleport_proxy_dials_total"));
    for name in ["teleport_nodes_online", "teleport_tunnels_held"] {
        assert!(!has(&fp, name), "proxy exports {name}:\n{px}");
    }
    assert_eq!(value(&px, "teleport_proxy_auth_link_up"), Some(1.0));

    // The proxy's gauge follows the nodes connected to it.
    wait_value(&pdiag, "teleport_proxy_tunnels", |v| v == 1.0);
    assert_eq!(value(&node, "teleport_tunnels_held"), Some(1.0));
    assert_eq!(value(&scrape(&ddiag), "teleport_auth_streams"), Some(1.0));
    let mut n2 = Node::new("tunnelled-2");
    start_node_via_proxy(
        &mut n2,
        &p.addr(),
        &c.token("node", "10m"),
        &c.pin(),
        &diag_addr(),
    );
    wait_value(&pdiag, "teleport_proxy_tunnels", |v| v == 2.0);
    n2.proc().stop();
    wait_value(&pdiag, "teleport_proxy_tunnels", |v| v == 1.0);

    // Round trips are measured on every kind of link, and keep being measured.
    for (diag, series) in [
        (&ndiag, RTT_TUNNEL),
        (&ddiag, RTT_STREAM),
        (&pdiag, RTT_LINK),
    ] {
        let first = wait_value(diag, series, |v| v >= 1.0);
        wait_value(diag, series, |v| v >= first + 2.0);
        let inf = series
            .replace("_count{", "_bucket{")
            .replace("\"}", "\",le=\"+Inf\"}");
        assert!(value(&scrape(diag), &inf).unwrap() >= first + 2.0);
    }

    // A dial through the tunnel: one stream and its bytes, on the node and on the proxy.
    let echo = echo_server(1);
    let payload = vec![b'x'; 100_000];
    let out = c.dial(
        &p.addr(),
        "tunnelled",
        &format!("127.0.0.1:{echo}"),
        &payload,
    );
    assert_eq!(out.stdout.len(), payload.len(), "{}", text(&out));
    let node = scrape(&ndiag);
    assert_eq!(
        value(&node, "teleport_node_streams_opened_total"),
        Some(1.0)
    );
    let sent = payload.len() as f64;
    let to = "teleport_node_stream_bytes_total{direction=\"to_service\"}";
    let from = "teleport_node_stream_bytes_total{direction=\"from_service\"}";
    assert_eq!(value(&node, to), Some(sent), "{node}");
    assert_eq!(value(&node, from), Some(sent), "{node}");
    wait_value(&ndiag, "teleport_node_streams_active", |v| v == 0.0);
    let px = scrape(&pdiag);
    assert_eq!(
        value(&px, "teleport_proxy_dials_total{result=\"ok\"}"),
        Some(1.0)
    );
    let to = "teleport_proxy_stream_bytes_total{direction=\"to_service\"}";
    let from = "teleport_proxy_stream_bytes_total{direction=\"from_service\"}";
    assert_eq!(value(&px, to), Some(sent), "{px}");
    assert_eq!(value(&px, from), Some(sent), "{px}");
    // A dial to a node that is not there counts as failed.
    let out = c.dial(&p.addr(), "nobody", "127.0.0.1:22", b"");
    assert!(!out.status.success());
    let px = scrape(&pdiag);
    assert_eq!(
        value(&px, "teleport_proxy_dials_total{result=\"error\"}"),
        Some(1.0)
    );
}

#[test]
fn restarts_count_a_reconnect_on_every_link_that_came_back() {
    let (pdiag, ndiag, ddiag) = (diag_addr(), diag_addr(), diag_addr());
    let mut c = cluster_with_diag(&diag_addr());
    let mut p = c.proxy_config("px", "127.0.0.1", "");
    start_proxy(&c, &mut p, &pdiag);
    let mut n = Node::new("tunnelled");
    start_node_via_proxy(&mut n, &p.addr(), &c.token("node", "10m"), &c.pin(), &ndiag);
    let mut d = Node::new("direct");
    start_direct_node(&c, &mut d, &ddiag);
    let tunnel = "teleport_reconnects_total{link=\"tunnel\"}";
    let stream = "teleport_reconnects_total{link=\"auth_stream\"}";
    let link = "teleport_reconnects_total{link=\"auth_link\"}";
    wait_value(&ndiag, "teleport_ready", |v| v == 1.0);
    wait_value(&ddiag, "teleport_ready", |v| v == 1.0);
    // First connections are not reconnects.
    assert_eq!(value(&scrape(&ndiag), tunnel), Some(0.0));
    assert_eq!(value(&scrape(&ddiag), stream), Some(0.0));
    assert_eq!(value(&scrape(&pdiag), link), Some(0.0));

    // The proxy goes away: the node is not ready and says why; it comes back: one reconnect.
    p.proc().stop();
    let (code, body) = wait_for(T, "the node's /readyz to fail", || {
        Some(http_get(&ndiag, "/readyz")).filter(|(code, _)| *code == 503)
    });
    assert!(body.contains("\"status\":\"not ready\""), "{code} {body}");
    assert!(body.contains("tunnel"), "{body}");
    start_proxy(&c, &mut p, &pdiag);
    wait_value(&ndiag, tunnel, |v| v == 1.0);
    wait_value(&ndiag, "teleport_ready", |v| v == 1.0);
    let failures = "teleport_link_failures_total{link=\"tunnel\"}";
    assert!(value(&scrape(&ndiag), failures).unwrap() >= 1.0);

    // Auth restarts: the proxy's link and the direct node's stream come back, one each.
    c.auth().stop();
    c.start_auth();
    wait_value(&pdiag, link, |v| v == 1.0);
    wait_value(&ddiag, stream, |v| v == 1.0);
    wait_value(&pdiag, "teleport_proxy_auth_link_up", |v| v == 1.0);
    // The tunnel itself never dropped.
    assert_eq!(value(&scrape(&ndiag), tunnel), Some(1.0));
}

#[test]
fn a_node_waiting_for_an_unreachable_proxy_says_why() {
    let diag = diag_addr();
    let proxy = format!("127.0.0.1:{}", free_port());
    let mut n = Node::new("waiting");
    let pin = format!("sha256:{}", "ab".repeat(32));
    let token = "0f".repeat(16);
    start_node_via_proxy(&mut n, &proxy, &token, &pin, &diag);
    let unreachable = "teleport_join_failures_total{reason=\"unreachable\"}";
    wait_value(&diag, unreachable, |v| v >= 2.0);
    let (code, body) = http_get(&diag, "/readyz");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let why = v["reason"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("joining through proxy {proxy}: ")),
        "{why}"
    );
    assert!(why.contains("refused"), "{why}");
    let m = scrape(&diag);
    assert!(!body.contains(&token) && !m.contains(&token));
    assert_eq!(value(&m, "teleport_ready"), Some(0.0));
    assert_eq!(value(&m, "teleport_tunnels_held"), Some(0.0));

    // `teleport health`: "not ready" with the reason, exit 1...
    let out = run(&["health", "--diag-addr", &diag]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("not ready: joining through proxy {proxy}: ")),
        "{err}"
    );
    // ... and a different message and status when nothing answers.
    let nobody = diag_addr();
    let out = run(&["health", "--diag-addr", &nobody]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "cannot reach the diagnostics endpoint at {nobody}: "
        )),
        "{err}"
    );
    assert!(!err.contains("not ready"), "{err}");
}

#[test]
fn a_rate_limited_join_is_counted_by_reason_and_the_node_joins_after() {
    let c = Cluster::start();
    let diag = diag_addr();
    let token = c.token("node", "10m");
    // Drain this address's join budget and keep it empty until the node has been refused.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, flag) = (c.addr(), stop.clone());
    let (drained_tx, drained) = std::sync::mpsc::channel();
    let hammer = std::thread::spawn(move || {
        // Wrong tokens: failed join attempts spend the source's budget (CA fetches do not).
        let guess = Request::Register(wire::register_request(&"0".repeat(32), "guess", "").1);
        let mut refused = 0u32;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(Response::Error {
                code: teleport_lite::proto::ErrorCode::RateLimited,
                ..
            }) = ask(&addr, &guess)
            {
                refused += 1;
                let _ = drained_tx.send(());
            }
        }
        refused
    });
    drained.recv_timeout(T).expect("auth to refuse the flood");
    let mut n = Node::new("limited");
    start_direct_node_with(&c, &mut n, &token, &diag);
    let limited = "teleport_join_failures_total{reason=\"rate_limited\"}";
    wait_value(&diag, limited, |v| v >= 1.0);
    let (code, body) = http_get(&diag, "/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("too many join requests"), "{body}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(hammer.join().unwrap() > 0);
    // Limits are for floods: the node keeps trying and gets in once the budget refills.
    c.wait_node("limited", Duration::from_secs(60));
    wait_value(&diag, "teleport_ready", |v| v == 1.0);
    let m = scrape(&diag);
    assert_eq!(
        value(&m, "teleport_join_failures_total{reason=\"invalid_token\"}"),
        Some(0.0)
    );
    assert!(value(&m, "teleport_join_duration_seconds").unwrap() > 0.0);
}

fn start_direct_node_with(c: &Cluster, n: &mut Node, token: &str, diag: &str) {
    let mut args = n.start_args(c, token, &c.pin());
    args.push(format!("--diag-addr={diag}"));
    n.spawn(&args);
}

/// One anonymous request to auth; `None` when the connection failed (auth sheds load too).
fn ask(addr: &str, req: &Request) -> Option<Response> {
    smol::block_on(async {
        let tls = net::connect_tls(addr, net::insecure_client_config())
            .await
            .ok()?;
        let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
        conn.send(req).await.ok()?;
        let got = net::with_timeout(Duration::from_secs(10), conn.recv::<Response>()).await;
        got?.ok()?
    })
}
