//! Shared by the identity-lifecycle tests (renewal, CA rotation, locks, node removal): a
//! cluster with lifecycle settings and proxies behind HAProxy, nodes with diagnostics, metrics
//! scraped over plain TCP (fast enough to time a 1 s cut-off), identity files read as a host
//! would, the audit log as `tctl audit ls` prints it, and a watcher that polls `tctl nodes ls`
//! in the background and reports every poll that missed a node.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::pin::Pin;

use super::CLUSTER_NAME;
use super::{free_port, text, wait_for, Cluster, HaProxy, Node, Proc, ProxyNode};

/// The usual wait for something that depends on backoffs and heartbeats.
pub const T: Duration = Duration::from_secs(30);

/// Auth alone (no node of its own) with 1 s heartbeats; `extra_auth` lines go under
/// `auth_service:`, indented by the caller (e.g. `"  host_cert_ttl: 6s\n"`).
pub fn cluster(extra_auth: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\nauth_service:\n  \
         enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
         heartbeat_interval: 1s\n{extra_auth}ssh_service:\n  enabled: no\n",
        dir.path().join("auth").display(),
    );
    // As `Cluster::launch`, but an auth that exits (a setting it refuses) fails the test at
    // once with its log, rather than after a timeout.
    let config = dir.path().join("auth.yaml");
    fs::write(&config, yaml).unwrap();
    let tctl = dir.path().join("tctl");
    std::os::unix::fs::symlink(super::bin(), &tctl).unwrap();
    let cfg = config.display().to_string();
    let auth = Proc::spawn("auth", dir.path(), &["start", "-c", &cfg]);
    let mut c = Cluster {
        dir,
        port,
        config,
        auth: Some(auth),
        tctl,
    };
    wait_for(
        Duration::from_secs(20),
        "auth to answer tctl status",
        || {
            let auth = c.auth();
            if !auth.running() {
                panic!("auth exited:\n{}", auth.log_text());
            }
            c.tctl(&["status"]).status.success().then_some(())
        },
    );
    c
}

pub fn diag_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Auth and `n` proxies behind a round-robin HAProxy (their public address), each proxy with
/// its diagnostics endpoint.
pub struct Fleet {
    pub c: Cluster,
    pub proxies: Vec<ProxyNode>,
    pub proxy_diags: Vec<String>,
    pub lb: HaProxy,
}

impl Fleet {
    /// Starts everything, the proxies together, and waits until auth lists every proxy and
    /// HAProxy sees them up.
    pub fn start(extra_auth: &str, n: usize) -> Fleet {
        let c = cluster(extra_auth);
        let (mut proxies, lb) = c.proxies_behind_lb(n);
        let proxy_diags: Vec<String> = (0..n).map(|_| diag_addr()).collect();
        for (p, diag) in proxies.iter_mut().zip(&proxy_diags) {
            start_proxy_with_diag(p, diag);
        }
        for p in &proxies {
            c.wait_proxy_listed(&p.name);
        }
        lb.wait_up(n);
        Fleet {
            c,
            proxies,
            proxy_diags,
            lb,
        }
    }

    /// A node joined through the load balancer with a fresh token, diagnostics on `diag`.
    pub fn node(&self, name: &str, diag: &str) -> Node {
        let mut n = Node::new(name);
        start_node_via(
            &mut n,
            &self.lb.addr(),
            &self.c.token("node", "30m"),
            &self.c.pin(),
            diag,
        );
        n
    }
}

/// `teleport start -c CONFIG --diag-addr=DIAG` for a proxy (not waited on).
pub fn start_proxy_with_diag(p: &mut ProxyNode, diag: &str) {
    let cfg = p.config.display().to_string();
    let flag = format!("--diag-addr={diag}");
    p.proc = Some(Proc::spawn(
        &p.name,
        p.dir.path(),
        &["start", "-c", &cfg, &flag],
    ));
}

/// `teleport node configure --proxy=PROXY ...`, then `start -c` with diagnostics on `diag`.
pub fn start_node_via(n: &mut Node, proxy: &str, token: &str, pin: &str, diag: &str) {
    let cfg = n.configure_via_proxy(proxy, token, Some(pin));
    n.spawn(&[
        "start".into(),
        "-c".into(),
        cfg.display().to_string(),
        format!("--diag-addr={diag}"),
    ]);
}

/// A node straight to auth (`--auth-server`) with a fresh token, diagnostics on `diag`; and
/// its command line, to start it again.
pub fn direct_node(c: &Cluster, name: &str, diag: &str) -> (Node, Vec<String>) {
    let mut n = Node::new(name);
    let mut args = n.start_args(c, &c.token("node", "30m"), &c.pin());
    args.push(format!("--diag-addr={diag}"));
    n.spawn(&args);
    (n, args)
}

/// The body of `GET /metrics` at `addr`; `None` while nothing answers there.
pub fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The value of one series (`name{labels}` exactly as exported) in a scrape.
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// One series at `addr` now; `None` if nothing answers or the series is absent.
pub fn metric(addr: &str, series: &str) -> Option<f64> {
    value(&scrape(addr)?, series)
}

pub const TUNNELS_HELD: &str = "teleport_tunnels_held";
pub const AUTH_STREAMS: &str = "teleport_auth_streams";
pub const RECONNECTS_TUNNEL: &str = "teleport_reconnects_total{link=\"tunnel\"}";
pub const RECONNECTS_STREAM: &str = "teleport_reconnects_total{link=\"auth_stream\"}";
pub const RECONNECTS_LINK: &str = "teleport_reconnects_total{link=\"auth_link\"}";

/// A reconnect counter that must have stayed at 0 (an absent family counts as 0).
pub fn assert_no_reconnects(diag: &str, series: &str, who: &str) {
    let m = scrape(diag).unwrap_or_else(|| panic!("{who}'s diagnostics at {diag} do not answer"));
    let v = value(&m, series).unwrap_or(0.0);
    assert_eq!(v, 0.0, "{who} reconnected ({series} = {v})");
}

/// Waits at most `limit` (from `since`) for `done`; panics naming `what` and how long it took.
pub fn within(since: Instant, limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    loop {
        if done() {
            return;
        }
        let took = since.elapsed();
        assert!(
            took <= limit,
            "{what}: not within {limit:?} (waited {took:?})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn node_identity_path(n: &Node) -> PathBuf {
    n.data_dir().join("node-identity.pem")
}

pub fn proxy_identity_path(p: &ProxyNode) -> PathBuf {
    p.dir.path().join("data").join("proxy-identity.pem")
}

/// An identity file as the host reads it; a torn or partial file fails the test.
pub fn read_identity(path: &Path) -> Identity {
    let pem =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Identity::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{} is not a whole identity: {e}", path.display()))
}

/// The pins of the CA certificates an identity trusts, in file order.
pub fn ca_pins(id: &Identity) -> Vec<String> {
    id.ca_ders()
        .unwrap()
        .iter()
        .map(|der| Pin::of_cert(der).unwrap().to_string())
        .collect()
}

/// The audit log as `tctl audit ls --format=json` prints it.
pub fn audit(c: &Cluster) -> Vec<Value> {
    let out = c.tctl_ok(&["audit", "ls", "--format=json"]);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("tctl audit ls --format=json is not JSON ({e}): {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("tctl audit ls --format=json is not an array: {out}"))
        .clone()
}

/// The events named `event`.
pub fn events(all: &[Value], event: &str) -> Vec<Value> {
    all.iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

/// The UUID auth lists for node `name`.
pub fn node_uuid(c: &Cluster, name: &str) -> String {
    let nodes = c.nodes();
    nodes
        .iter()
        .find(|n| n["hostname"] == name)
        .and_then(|n| n["uuid"].as_str())
        .unwrap_or_else(|| panic!("node {name} not in tctl nodes ls: {nodes:?}"))
        .to_string()
}

/// The UUID auth lists for proxy `name`.
pub fn proxy_uuid(c: &Cluster, name: &str) -> String {
    let proxies = c.proxies();
    proxies
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["uuid"].as_str())
        .unwrap_or_else(|| panic!("proxy {name} not in tctl proxies ls: {proxies:?}"))
        .to_string()
}

/// Lines of a log that contain every one of `needles`.
pub fn log_lines_with(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Polls `tctl nodes ls` in the background (every 100 ms) until `finish`, recording each poll
/// where one of the watched nodes was missing, or where tctl itself failed.
pub struct NodeWatch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl NodeWatch {
    pub fn start(c: &Cluster, names: &[&str]) -> NodeWatch {
        let (tctl, config) = (c.tctl.clone(), c.config.clone());
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let (mut polls, mut misses) = (0usize, Vec::new());
            loop {
                // One last poll starts after `finish`: the state at the end counts too.
                let last = flag.load(Ordering::Relaxed);
                let out = Command::new(&tctl)
                    .arg("-c")
                    .arg(&config)
                    .args(["nodes", "ls", "--format=json"])
                    .output()
                    .unwrap();
                polls += 1;
                let at = start.elapsed().as_secs_f64();
                if !out.status.success() {
                    misses.push(format!("+{at:.1}s: tctl nodes ls failed: {}", text(&out)));
                } else {
                    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
                    let listed: Vec<&str> = listed
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|n| n["hostname"].as_str())
                        .collect();
                    for name in &names {
                        if !listed.contains(&name.as_str()) {
                            misses.push(format!("+{at:.1}s: {name} missing"));
                        }
                    }
                }
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, misses)
        });
        NodeWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops polling; fails the test if any poll missed a node, or if it hardly polled.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (polls, misses) = self.handle.take().unwrap().join().unwrap();
        assert!(polls >= 10, "tctl nodes ls was polled only {polls} times");
        assert!(
            misses.is_empty(),
            "{} of {polls} polls of tctl nodes ls missed a node:\n{}",
            misses.len(),
            misses
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl Drop for NodeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until the process exits; it must fail, and its log must contain every one of
/// `needles`. Returns the log.
pub fn exits_with(p: &mut Proc, needles: &[&str]) -> String {
    let st = p.wait_exit(T);
    let log = p.log_text();
    assert!(!st.success(), "{} exited successfully:\n{log}", p.name);
    for n in needles {
        assert!(
            log.contains(n),
            "{n:?} not in the log of {}:\n{log}",
            p.name
        );
    }
    log
}

/// Waits until `tctl nodes ls` lists `name` with `count` tunnels and the node's own gauge
/// agrees.
pub fn wait_held(c: &Cluster, name: &str, diag: &str, count: usize) -> Vec<String> {
    let t = c.wait_tunnels(name, count, T);
    wait_for(T, &format!("{name}'s {TUNNELS_HELD} to be {count}"), || {
        (metric(diag, TUNNELS_HELD) == Some(count as f64)).then_some(())
    });
    t
}

/// The process is still the one we started: it never exited (so it was never restarted).
pub fn assert_running(p: &mut Proc) {
    if !p.running() {
        panic!("{} exited:\n{}", p.name, p.log_text());
    }
}

/// Whether `tctl nodes ls` lists `name` (a failing tctl fails the test, never counts as "no").
pub fn is_listed(c: &Cluster, name: &str) -> bool {
    let out = c.tctl_ok(&["nodes", "ls", "--format=json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().iter().any(|n| n["hostname"] == name)
}

pub const FAILURES_TUNNEL: &str = "teleport_link_failures_total{link=\"tunnel\"}";
