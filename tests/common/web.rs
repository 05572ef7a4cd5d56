//! Clients for the proxy's web port as an outsider sees it: raw HTTPS requests over a blocking
//! rustls connection that trusts any certificate, downloads that stall, the proxy's memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use super::{free_port, wait_for, Cluster, CLUSTER_NAME};

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// What came back: status 0 and an empty body when the connection closed without a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn parse(raw: &[u8]) -> Reply {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Reply {
                status: 0,
                body: raw.to_vec(),
            };
        };
        let head = String::from_utf8_lossy(&raw[..end]);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            body: raw[end + 4..].to_vec(),
        }
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let base = teleport_lite::net::insecure_client_config();
    teleport_lite::net::with_alpn(&base, &[b"http/1.1"])
}

/// A TLS connection with ALPN http/1.1, handshake done.
pub fn connect(addr: &str) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Sends `request` as it is and reads until the server closes.
pub fn raw(addr: &str, request: &[u8]) -> Reply {
    let mut tls = connect(addr);
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    let mut out = Vec::new();
    // A close without close_notify still leaves what arrived in `out`.
    let _ = tls.read_to_end(&mut out);
    Reply::parse(&out)
}

pub fn get(addr: &str, path: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Sends a GET, reads until the response head arrived (so the server is writing the body),
/// then reads no more.
pub fn stalled_get(addr: &str, path: &str) -> Tls {
    let mut tls = connect(addr);
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    tls.flush().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "the proxy closed the download before its head");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    tls
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Samples VmRSS until it stays within 256 KiB for a second (or 20 s pass); returns the
/// highest value seen.
pub fn settled_rss_kib(pid: u32) -> u64 {
    let start = Instant::now();
    let (mut max, mut prev, mut steady) = (0, 0u64, 0);
    while steady < 5 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(pid);
        max = max.max(now);
        steady = if now.abs_diff(prev) < 256 {
            steady + 1
        } else {
            0
        };
        prev = now;
    }
    max
}

/// Auth and proxy in one process logging at DEBUG to its log file; the proxy's web port is
/// `web_port`.
pub fn debug_cluster_with_proxy(web_port: u16) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\n  log:\n    output: stderr\n    \
         severity: DEBUG\nauth_service:\n  enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  \
         cluster_name: {CLUSTER_NAME}\nssh_service:\n  enabled: no\nproxy_service:\n  \
         enabled: yes\n  web_listen_addr: 127.0.0.1:{web_port}\n  public_addr: 127.0.0.1:{web_port}\n",
        dir.path().join("auth").display(),
    );
    let c = Cluster::launch(dir, port, &yaml);
    wait_for(
        Duration::from_secs(20),
        "the in-process proxy to be listed",
        || (c.proxies().len() == 1).then_some(()),
    );
    c
}
