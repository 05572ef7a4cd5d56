//! Runtime hardening as an attacker and an operator see it: listeners out of descriptors back
//! off instead of spinning and serve again afterwards; one source cannot hold more than its cap
//! of anonymous connections while others are still served; PROXY protocol v2 behind HAProxy.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::rt::{self, closed_by_server, cpu_seconds, curl, open_fds, open_many};
use common::{free_port, wait_for, Cluster, HaProxy, Node};

const T: Duration = Duration::from_secs(30);
/// The per-source cap of anonymous connections (net::caps::PER_SOURCE).
const PER_SOURCE: usize = teleport_lite::net::caps::PER_SOURCE;

fn http_status(diag: &str, path: &str) -> Option<String> {
    let out = curl(&[&format!("http://{diag}{path}")]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn out_of_descriptors_backs_off_without_spinning_and_recovers() {
    const NOFILE: u32 = 64;
    let mut c = Cluster::start();
    let diag = format!("127.0.0.1:{}", free_port());
    c.restart_auth_with(Some(NOFILE), &[("TELEPORT_DIAG_ADDR", &diag)]);
    wait_for(T, "diag /healthz", || http_status(&diag, "/healthz"));
    let pid = c.auth().child.id();
    println!(
        "auth (pid {pid}) holds {} descriptors at rest",
        open_fds(pid)
    );

    // Far more connections than descriptors: auth accepts until EMFILE, the rest wait in the
    // backlog, where they keep the listener readable; then some to diag's port too.
    let addr: SocketAddr = c.addr().parse().unwrap();
    let opened = Instant::now();
    let held = open_many(addr, 400, 50, Duration::from_millis(200));
    let diag_addr: SocketAddr = diag.parse().unwrap();
    let held_diag = open_many(diag_addr, 20, 20, Duration::from_millis(200));
    println!(
        "holding {} connections to auth and {} to diag after {:?}; auth holds {} descriptors",
        held.len(),
        held_diag.len(),
        opened.elapsed(),
        open_fds(pid)
    );
    assert!(
        held.len() > 2 * NOFILE as usize,
        "only {} connected",
        held.len()
    );
    c.auth()
        .wait_log("failed: Too many open files", Duration::from_secs(10));

    let before = cpu_seconds(pid);
    let window = Instant::now();
    // A measurement window, not a wait for readiness: the process must stay quiet in it.
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    println!(
        "CPU used while out of descriptors: {used:.2}s over {:.1}s",
        window.elapsed().as_secs_f64()
    );
    assert!(
        used < 0.5,
        "auth spun while out of descriptors: {used:.2}s CPU in 2s"
    );
    // One warning per burst, not per failure: every warning but the current ones (auth's
    // and diag's) is followed by a line saying accepting works again.
    let log = c.auth().log_text();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (warnings, recoveries) = (count("failed: Too many open files"), count("again after"));
    println!("{warnings} accept warnings, {recoveries} recoveries");
    assert!(
        warnings >= 1 && warnings <= recoveries + 2,
        "one warning per listener and burst, not per failure:\n{log}"
    );

    drop(held);
    drop(held_diag);
    wait_for(T, "auth to serve tctl again", || {
        c.tctl(&["status"]).status.success().then_some(())
    });
    wait_for(T, "diag to answer again", || http_status(&diag, "/healthz"));
    c.auth().wait_log("again after", Duration::from_secs(5));
    let metrics = http_status(&diag, "/metrics").unwrap();
    assert!(
        !metrics.contains("teleport_accept_error_bursts_total 0"),
        "{metrics}"
    );
}

#[test]
fn one_source_cannot_hold_more_than_its_cap_while_others_are_served() {
    let mut c = Cluster::start();
    let diag = format!("127.0.0.1:{}", free_port());
    c.restart_auth_with(None, &[("TELEPORT_DIAG_ADDR", &diag)]);
    wait_for(T, "diag /healthz", || http_status(&diag, "/healthz"));

    // Idle connections that never start a TLS handshake, all from 127.0.0.1.
    let extra = 20;
    let addr: SocketAddr = c.addr().parse().unwrap();
    let start = Instant::now();
    let conns = open_many(addr, PER_SOURCE + extra, 4, Duration::from_secs(2));
    assert_eq!(conns.len(), PER_SOURCE + extra);
    let closed = wait_for(
        Duration::from_secs(5),
        "the extra connections to be closed",
        || {
            let n = conns.iter().filter(|s| closed_by_server(s)).count();
            (n >= extra).then_some(n)
        },
    );
    println!(
        "{closed} of {} closed by the server after {:?}",
        conns.len(),
        start.elapsed()
    );
    assert_eq!(closed, extra, "only connections over the cap are closed");

    // Another source is not affected: a full TLS handshake from 127.0.0.2.
    let (ok, out) = rt::tls_handshake_from("127.0.0.2", &c.addr(), "teleport-auth");
    assert!(
        ok,
        "handshake from 127.0.0.2 failed while 127.0.0.1 is capped:\n{out}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "checked after the handshake deadline; the test proves nothing on a machine this slow"
    );
    let metrics = http_status(&diag, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "teleport_connections_refused_total{{cap=\"per_source\"}} {extra}"
        )),
        "{metrics}"
    );

    // Closing the idle connections gives their places back.
    drop(conns);
    wait_for(T, "tctl from 127.0.0.1 to work again", || {
        c.tctl(&["status"]).status.success().then_some(())
    });
}

#[test]
fn proxy_protocol_v2_behind_haproxy_names_the_real_client_and_is_required() {
    let c = Cluster::start();
    let lb_port = free_port();
    let lb_addr = format!("127.0.0.1:{lb_port}");
    let mut p = c.proxy_config("pp-proxy", &lb_addr, "  proxy_protocol: on\n");
    c.start_proxy_debug(&mut p);
    let lb = HaProxy::start_proxy_v2(lb_port, &[p.port]);
    lb.wait_up(1);
    p.proc().wait_log("PROXY protocol v2 required", T);

    // (a) A node joins through the load balancer and holds its tunnel.
    let mut n = Node::new("pp-node");
    n.start_via_proxy(&lb_addr, &c.token("node", "10m"), Some(&c.pin()));
    c.wait_tunnels("pp-node", 1, T);

    // (b) The proxy sees the client's address, not the load balancer's: curl connects from
    // 127.0.0.2 while HAProxy connects to the proxy from 127.0.0.1.
    let out = curl(&[
        "-k",
        "--interface",
        "127.0.0.2",
        "-w",
        "\n%{local_ip}:%{local_port}",
        &format!("https://{lb_addr}/webapi/find"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", common::text(&out));
    assert!(stdout.contains("\"server_version\""), "{stdout}");
    let client = stdout.lines().last().unwrap().to_string();
    assert!(client.starts_with("127.0.0.2:"), "{client}");
    let line = format!("GET /webapi/find from {client}: 200");
    p.proc().wait_log(&line, Duration::from_secs(5));
    let log = p.proc().log_text();
    assert!(
        log.contains(&format!("connection from {client} relayed by 127.0.0.1:")),
        "{log}"
    );
    // Health checks (LOCAL headers) are not refused.
    assert!(!log.contains("rejected a connection"), "{log}");

    // (c) Without the header the proxy refuses, and says why.
    let direct = p.addr();
    let out = curl(&[
        "-k",
        "-w",
        "%{local_port}",
        &format!("https://{direct}/webapi/find"),
    ]);
    assert!(!out.status.success(), "a direct connection was served");
    let port = String::from_utf8_lossy(&out.stdout).trim().to_string();
    p.proc().wait_log(
        &format!(
            "rejected a connection from 127.0.0.1:{port}: it did not start with a PROXY \
             protocol v2 header"
        ),
        Duration::from_secs(5),
    );
    // A v1 (text) header is refused by name, and the connection closed.
    let mut v1 = TcpStream::connect(&direct).unwrap();
    v1.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 443\r\n")
        .unwrap();
    v1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(v1.read(&mut [0u8; 16]).unwrap_or(0), 0);
    p.proc()
        .wait_log("PROXY protocol v1 (text) header", Duration::from_secs(5));
}

#[test]
fn a_proxy_header_is_refused_where_proxy_protocol_is_off() {
    let mut c = Cluster::start();
    let header = teleport_lite::net::proxy_protocol::encode(
        &teleport_lite::net::proxy_protocol::Header::Proxy {
            source: "192.0.2.1:5000".parse().unwrap(),
            destination: "127.0.0.1:3025".parse().unwrap(),
        },
        &[],
    );
    let mut s = TcpStream::connect(c.addr()).unwrap();
    s.write_all(&header).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0);
    c.auth().wait_log(
        "it starts with a PROXY protocol header, but this port does not accept one",
        Duration::from_secs(5),
    );
    assert!(c.tctl(&["status"]).status.success());
}

#[test]
fn a_stalled_stderr_does_not_stall_the_service_and_drops_are_reported() {
    let mut c = Cluster::start();
    let mut stderr = c.restart_auth_stderr_piped();
    // The smallest pipe: a page. Nobody reads it until the end.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&stderr),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096),
    )
    .unwrap();
    // Each connection that opens with a PROXY header logs a warning (about 300 bytes): far
    // more than the pipe and the log queue (1024 lines) hold.
    let addr: SocketAddr = c.addr().parse().unwrap();
    let header = teleport_lite::net::proxy_protocol::encode(
        &teleport_lite::net::proxy_protocol::Header::Local,
        &[],
    );
    let flood = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let header = header.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 / 8 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(&header);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    println!("2000 connections in {:?}", flood.elapsed());
    let start = Instant::now();
    let out = c.tctl(&["status"]);
    assert!(out.status.success(), "{}", common::text(&out));
    println!(
        "tctl status with a stalled stderr took {:?}",
        start.elapsed()
    );

    // Once someone reads, the writer catches up and says how many lines it dropped.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut text = Vec::new();
    let line = wait_for(T, "a line reporting dropped log lines", || {
        while let Ok(chunk) = rx.try_recv() {
            text.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&text)
            .lines()
            .find(|l| l.contains("log lines: the log output could not keep up"))
            .map(str::to_string)
    });
    println!("{line}");
    assert!(line.contains("WARN  [logging] dropped "), "{line}");
}
