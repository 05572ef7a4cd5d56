//! Test harness: runs the real `teleport` binary (and its `tctl` link) as separate processes on
//! free loopback ports, waits on observable readiness, and kills everything on drop.

#![allow(dead_code)]

pub mod access;
pub mod certs;
pub mod lifecycle;
pub mod pg;
pub mod rt;
pub mod web;
pub mod wire;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_teleport"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 25 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running process with its log file; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, dir: &Path, args: &[&str]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("{:?} in the log of {}", needle, self.name),
            || self.log_text().contains(needle).then_some(()),
        );
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for(timeout, &format!("{} to exit", self.name), || {
            self.child.try_wait().unwrap()
        })
    }

    /// SIGTERM and wait; returns the exit status and how long it took.
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        let t = Instant::now();
        self.signal("TERM");
        let st = self.wait_exit(Duration::from_secs(10));
        (st, t.elapsed())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An auth server (with its own node unless disabled) in a temp dir.
pub struct Cluster {
    pub dir: TempDir,
    pub port: u16,
    pub config: PathBuf,
    pub auth: Option<Proc>,
    pub tctl: PathBuf,
}

pub const CLUSTER_NAME: &str = "example.test";

impl Cluster {
    /// Starts auth with a 500 ms heartbeat interval; `extra_auth` lines go under
    /// `auth_service:` (indented by the caller).
    pub fn start_with(extra_auth: &str, own_node: bool) -> Cluster {
        Cluster::start_full(extra_auth, own_node, None, "")
    }

    /// Auth and a proxy in one process; the proxy's web port is `web_port`.
    pub fn start_with_proxy(own_node: bool, web_port: u16) -> Cluster {
        Cluster::start_with_proxy_config(own_node, web_port, "")
    }

    /// As `start_with_proxy`, with `extra_proxy` lines under `proxy_service:` (indented by the
    /// caller).
    pub fn start_with_proxy_config(own_node: bool, web_port: u16, extra_proxy: &str) -> Cluster {
        let c = Cluster::start_full("", own_node, Some(web_port), extra_proxy);
        wait_for(
            Duration::from_secs(20),
            "the in-process proxy to be listed",
            || (c.proxies().len() == 1).then_some(()),
        );
        c
    }

    fn start_full(
        extra_auth: &str,
        own_node: bool,
        web_port: Option<u16>,
        extra_proxy: &str,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let proxy = match web_port {
            Some(w) => format!(
                "proxy_service:\n  enabled: yes\n  web_listen_addr: 127.0.0.1:{w}\n  \
                 public_addr: 127.0.0.1:{w}\n{extra_proxy}"
            ),
            None => String::new(),
        };
        let yaml = format!(
            "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\nauth_service:\n  \
             enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
             heartbeat_interval: 500ms\n{extra_auth}ssh_service:\n  enabled: {}\n{proxy}",
            dir.path().join("auth").display(),
            if own_node { "yes" } else { "no" }
        );
        Cluster::launch(dir, port, &yaml)
    }

    /// Writes `yaml` as auth's config in `dir`, links `tctl` and starts auth listening on
    /// `port` (which the config must name).
    pub fn launch(dir: TempDir, port: u16, yaml: &str) -> Cluster {
        let config = dir.path().join("auth.yaml");
        fs::write(&config, yaml).unwrap();
        let tctl = dir.path().join("tctl");
        std::os::unix::fs::symlink(bin(), &tctl).unwrap();
        let mut c = Cluster {
            dir,
            port,
            config,
            auth: None,
            tctl,
        };
        c.start_auth();
        c
    }

    pub fn start() -> Cluster {
        Cluster::start_with("", false)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start_auth(&mut self) {
        let cfg = self.config.to_string_lossy().to_string();
        let p = Proc::spawn("auth", self.dir.path(), &["start", "-c", &cfg]);
        self.auth = Some(p);
        wait_for(
            Duration::from_secs(20),
            "auth to answer tctl status",
            || self.tctl(&["status"]).status.success().then_some(()),
        );
    }

    pub fn auth(&mut self) -> &mut Proc {
        self.auth.as_mut().unwrap()
    }

    pub fn tctl(&self, args: &[&str]) -> Output {
        let cfg = self.config.to_string_lossy().to_string();
        let mut all = vec!["-c", cfg.as_str()];
        all.extend_from_slice(args);
        Command::new(&self.tctl).args(&all).output().unwrap()
    }

    pub fn tctl_ok(&self, args: &[&str]) -> String {
        let out = self.tctl(args);
        assert!(
            out.status.success(),
            "tctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn pin(&self) -> String {
        let status = self.tctl_ok(&["status"]);
        status
            .lines()
            .find_map(|l| l.strip_prefix("CA pin").map(|p| p.trim().to_string()))
            .expect("tctl status prints a CA pin")
    }

    /// Every CA pin `tctl status` prints, comma-separated (two during a CA rotation).
    pub fn pins(&self) -> String {
        let status = self.tctl_ok(&["status"]);
        let pins: Vec<&str> = status
            .lines()
            .filter_map(|l| l.strip_prefix("CA pin").map(str::trim))
            .collect();
        assert!(!pins.is_empty(), "tctl status prints no CA pin:\n{status}");
        pins.join(",")
    }

    pub fn token(&self, kind: &str, ttl: &str) -> String {
        self.tctl_ok(&[
            "tokens",
            "add",
            &format!("--type={kind}"),
            &format!("--ttl={ttl}"),
            "--format=text",
        ])
        .trim()
        .to_string()
    }

    pub fn nodes(&self) -> Vec<Value> {
        self.json_list(&["nodes", "ls", "--format=json"])
    }

    /// A JSON list printed by tctl; empty while tctl fails (auth not up yet).
    fn json_list(&self, args: &[&str]) -> Vec<Value> {
        let out = self.tctl(args);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .map(|n| n["hostname"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn has_node(&self, name: &str) -> bool {
        self.node_names().iter().any(|n| n == name)
    }

    pub fn wait_node(&self, name: &str, timeout: Duration) {
        wait_for(timeout, &format!("node {name} in tctl nodes ls"), || {
            self.has_node(name).then_some(())
        });
    }

    pub fn wait_node_gone(&self, name: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("node {name} to leave tctl nodes ls"),
            || (!self.has_node(name)).then_some(()),
        );
    }
}

/// A node process with its own data dir.
pub struct Node {
    pub dir: TempDir,
    pub name: String,
    pub proc: Option<Proc>,
}

impl Node {
    pub fn new(name: &str) -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_string(),
            proc: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The flags of the seed's `teleport start --roles=node ...` line, plus our data dir.
    pub fn start_args(&self, c: &Cluster, token: &str, pin: &str) -> Vec<String> {
        vec![
            "start".into(),
            "--roles=node".into(),
            format!("--token={token}"),
            format!("--ca-pin={pin}"),
            format!("--auth-server={}", c.addr()),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--nodename={}", self.name),
        ]
    }

    pub fn spawn(&mut self, args: &[String]) -> &mut Proc {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Proc::spawn(&self.name, self.dir.path(), &refs);
        self.proc = Some(p);
        self.proc.as_mut().unwrap()
    }

    pub fn start(&mut self, c: &Cluster, token: &str, pin: &str) -> &mut Proc {
        let args = self.start_args(c, token, pin);
        self.spawn(&args)
    }

    /// Runs a start that is expected to fail; returns its exit status and log.
    pub fn run_expect_exit(&mut self, args: &[String]) -> (ExitStatus, String) {
        let p = self.spawn(args);
        let st = p.wait_exit(Duration::from_secs(20));
        (st, p.log_text())
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap()
    }

    /// Files in the data dir (empty if it does not exist), but for the lock of the running
    /// process (`teleport.lock`, which holds only its PID).
    pub fn data_files(&self) -> Vec<String> {
        fs::read_dir(self.data_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n != "teleport.lock")
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs the binary to completion with arguments (for configure, version, help).
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every byte of every file under `dir`, recursively.
pub fn all_bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_bytes_under(&p));
            } else if let Ok(b) = fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A proxy process joined to a cluster.
pub struct ProxyNode {
    pub dir: TempDir,
    pub name: String,
    pub port: u16,
    pub config: PathBuf,
    pub proc: Option<Proc>,
}

impl ProxyNode {
    pub fn start(&mut self) {
        let cfg = self.config.to_string_lossy().to_string();
        self.proc = Some(Proc::spawn(
            &self.name,
            self.dir.path(),
            &["start", "-c", &cfg],
        ));
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Cluster {
    /// Writes the config of a proxy (not started) with the given public address.
    pub fn proxy_config(&self, name: &str, public_addr: &str, extra_proxy: &str) -> ProxyNode {
        let token = self.token("proxy", "30m");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("proxy.yaml");
        let yaml = format!(
            "version: v3\nteleport:\n  nodename: {name}\n  data_dir: {}\n  auth_server: {}\n  \
             ca_pin: \"{}\"\n  join_params:\n    token_name: \"{token}\"\n    method: token\n\
             auth_service:\n  enabled: no\nssh_service:\n  enabled: no\nproxy_service:\n  \
             enabled: yes\n  web_listen_addr: 127.0.0.1:{port}\n  public_addr: {public_addr}\n\
             {extra_proxy}",
            dir.path().join("data").display(),
            self.addr(),
            self.pin()
        );
        fs::write(&config, yaml).unwrap();
        ProxyNode {
            dir,
            name: name.to_string(),
            port,
            config,
            proc: None,
        }
    }

    /// Starts a proxy and waits until auth lists it.
    pub fn start_proxy(&self, p: &mut ProxyNode) {
        p.start();
        self.wait_proxy_listed(&p.name);
    }

    /// `tctl nodes dial --proxy=PROXY NODE TARGET` with `input` on its stdin, to the end.
    pub fn dial(&self, proxy: &str, node: &str, target: &str, input: &[u8]) -> Output {
        let mut child = Command::new(&self.tctl)
            .args(["-c", self.config.to_str().unwrap(), "nodes", "dial"])
            .args([format!("--proxy={proxy}").as_str(), node, target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Waits until auth lists the proxy named `name`.
    pub fn wait_proxy_listed(&self, name: &str) {
        wait_for(
            Duration::from_secs(20),
            &format!("proxy {name} in tctl proxies ls"),
            || {
                self.proxies()
                    .iter()
                    .any(|x| x["name"] == name)
                    .then_some(())
            },
        );
    }

    pub fn proxies(&self) -> Vec<Value> {
        self.json_list(&["proxies", "ls", "--format=json"])
    }

    /// The names of the proxies `node` holds tunnels to, if it is listed.
    pub fn tunnels_of(&self, node: &str) -> Option<Vec<String>> {
        self.nodes()
            .iter()
            .find(|n| n["hostname"] == node)
            .map(|n| {
                n["tunnels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
    }

    pub fn wait_tunnels(&self, node: &str, count: usize, timeout: Duration) -> Vec<String> {
        wait_for(timeout, &format!("{node} to hold {count} tunnels"), || {
            self.tunnels_of(node).filter(|t| t.len() == count)
        })
    }
}

/// A real HAProxy in TCP mode in front of the given backend ports.
pub struct HaProxy {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl HaProxy {
    pub fn start_on(port: u16, backends: &[u16], balance: &str) -> HaProxy {
        HaProxy::start_with(port, backends, balance, "")
    }

    /// Like `start_on`, with `server_opts` added to every backend line (e.g. `send-proxy-v2`).
    pub fn start_with(port: u16, backends: &[u16], balance: &str, server_opts: &str) -> HaProxy {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = format!(
            "global\n  maxconn 4096\n  stats socket {}/admin.sock\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  \
             timeout server 1h\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  balance {balance}\n",
            dir.path().display()
        );
        for (i, b) in backends.iter().enumerate() {
            cfg.push_str(&format!(
                "  server p{i} 127.0.0.1:{b} {server_opts} check inter 200ms fall 2 rise 1\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        fs::write(&path, cfg).unwrap();
        let log = fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let exe = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(exe)
            .args(["-f", path.to_str().unwrap(), "-db"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy must be installed (scripts/deps.sh installs it)");
        wait_for(Duration::from_secs(10), "haproxy to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        HaProxy { child, port, dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many backends HAProxy's health checks consider up (from its stats socket).
    pub fn servers_up(&self) -> usize {
        use std::os::unix::net::UnixStream;
        let Ok(mut s) = UnixStream::connect(self.dir.path().join("admin.sock")) else {
            return 0;
        };
        let _ = std::io::Write::write_all(&mut s, b"show stat\n");
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        out.lines()
            .filter(|l| l.starts_with("be,p"))
            .filter(|l| l.split(',').nth(17) == Some("UP"))
            .count()
    }

    pub fn wait_up(&self, n: usize) {
        wait_for(
            Duration::from_secs(20),
            &format!("haproxy to see {n} backends up"),
            || (self.servers_up() == n).then_some(()),
        );
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// `teleport node configure --proxy=...` then `teleport start -c`, as in the seed.
    pub fn start_via_proxy(
        &mut self,
        proxy_addr: &str,
        token: &str,
        pin: Option<&str>,
    ) -> &mut Proc {
        let cfg = self.configure_via_proxy(proxy_addr, token, pin);
        self.spawn(&["start".into(), "-c".into(), cfg.display().to_string()])
    }

    /// `teleport node configure --proxy=...` into the node's own `teleport.yaml`; its path.
    pub fn configure_via_proxy(&self, proxy_addr: &str, token: &str, pin: Option<&str>) -> PathBuf {
        let cfg = self.dir.path().join("teleport.yaml");
        let _ = fs::remove_file(&cfg);
        let mut args = vec![
            "node".to_string(),
            "configure".into(),
            format!("--token={token}"),
            format!("--proxy={proxy_addr}"),
            format!("--node-name={}", self.name),
            format!("--data-dir={}", self.data_dir().display()),
            "-o".into(),
            format!("file://{}", cfg.display()),
        ];
        if let Some(p) = pin {
            args.push(format!("--ca-pin={p}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&refs);
        assert!(out.status.success(), "{}", text(&out));
        cfg
    }
}

/// The one-line install in what `tctl tokens add` printed, without its "> " prompt.
pub fn install_line(added: &str) -> String {
    added
        .lines()
        .find_map(|l| l.strip_prefix("> ").filter(|l| l.starts_with("{ curl ")))
        .unwrap_or_else(|| panic!("no install line in:\n{added}"))
        .to_string()
}
