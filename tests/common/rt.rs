//! Helpers of the runtime and connection-cap tests: auth under resource limits, a proxy with
//! debug logging, HAProxy with PROXY protocol v2, CPU time of a process, raw connections.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{bin, wait_for, Cluster, HaProxy, Proc, ProxyNode};

/// Spawns the binary with `args` through `prlimit` (when `nofile` is set) and extra
/// environment; the log goes to `dir/NAME.log`. prlimit execs, so the PID is teleport's.
pub fn spawn_with(
    name: &str,
    dir: &Path,
    nofile: Option<u32>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = fs::File::create(&log).unwrap();
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("prlimit (util-linux) must be installed");
    Proc {
        child,
        log,
        name: name.to_string(),
    }
}

impl Cluster {
    /// `n` proxies (`proxy-0`...), configured but not started, behind a round-robin HAProxy
    /// that is: what the fleet tests start from.
    pub fn proxies_behind_lb(&self, n: usize) -> (Vec<ProxyNode>, HaProxy) {
        let lb_port = super::free_port();
        let lb_addr = format!("127.0.0.1:{lb_port}");
        let proxies: Vec<ProxyNode> = (0..n)
            .map(|i| self.proxy_config(&format!("proxy-{i}"), &lb_addr, ""))
            .collect();
        let ports: Vec<u16> = proxies.iter().map(|p| p.port).collect();
        (proxies, HaProxy::start_on(lb_port, &ports, "roundrobin"))
    }

    /// Stops auth and starts it again (same data) under `nofile` with extra environment,
    /// waiting until `tctl status` answers.
    pub fn restart_auth_with(&mut self, nofile: Option<u32>, env: &[(&str, &str)]) {
        drop(self.auth.take());
        let cfg = self.config.to_string_lossy().to_string();
        let p = spawn_with("auth", self.dir.path(), nofile, env, &["start", "-c", &cfg]);
        self.auth = Some(p);
        wait_for(
            Duration::from_secs(20),
            "auth to answer tctl status",
            || self.tctl(&["status"]).status.success().then_some(()),
        );
    }

    /// Stops auth and starts it again logging at DEBUG to a pipe that nobody reads until the
    /// caller does; returns the read end.
    pub fn restart_auth_stderr_piped(&mut self) -> std::process::ChildStderr {
        drop(self.auth.take());
        let cfg = self.config.to_string_lossy().to_string();
        let mut child = Command::new(bin())
            .args(["start", "-c", &cfg, "--debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        self.auth = Some(Proc {
            child,
            log: self.dir.path().join("auth-stderr-is-a-pipe"),
            name: "auth".into(),
        });
        wait_for(
            Duration::from_secs(20),
            "auth to answer tctl status",
            || self.tctl(&["status"]).status.success().then_some(()),
        );
        stderr
    }

    /// Starts a proxy that logs at DEBUG and waits until auth lists it.
    pub fn start_proxy_debug(&self, p: &mut ProxyNode) {
        let cfg = p.config.to_string_lossy().to_string();
        p.proc = Some(spawn_with(
            &p.name,
            p.dir.path(),
            None,
            &[],
            &["start", "-c", &cfg, "--debug"],
        ));
        self.wait_proxy_listed(&p.name);
    }
}

impl HaProxy {
    /// HAProxy on 127.0.0.1:`port` in TCP mode that sends a PROXY protocol v2 header (with a
    /// CRC32C TLV) on every connection to the backends, health checks included (LOCAL).
    pub fn start_proxy_v2(port: u16, backends: &[u16]) -> HaProxy {
        HaProxy::start_with(
            port,
            backends,
            "roundrobin",
            "send-proxy-v2 proxy-v2-options crc32c check-send-proxy",
        )
    }
}

/// User plus system CPU time of a process so far, in seconds (from /proc/PID/stat).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Up to `n` TCP connections to `addr` from 127.0.0.1, each given `timeout` to connect,
/// opened by `threads` threads; the ones that connected.
pub fn open_many(addr: SocketAddr, n: usize, threads: usize, timeout: Duration) -> Vec<TcpStream> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = n / threads + usize::from(t < n % threads);
            std::thread::spawn(move || {
                (0..count)
                    .filter_map(|_| TcpStream::connect_timeout(&addr, timeout).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// Whether the server has closed `s` (EOF or reset), without blocking.
pub fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let closed = match (&*s).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// `curl` with extra arguments; stdout carries `-w` output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed")
}

/// `openssl s_client` from `source` to `addr` with ALPN `alpn`: whether the TLS handshake
/// completed, and what it printed.
pub fn tls_handshake_from(source: &str, addr: &str, alpn: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-brief",
            "-bind",
            &format!("{source}:0"),
            "-connect",
            addr,
            "-alpn",
            alpn,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("CONNECTION ESTABLISHED"), text)
}
