//! Proxies behind a real HAProxy, agents joining through them and keeping a tunnel to every
//! proxy, and the failures around that.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// Auth plus proxies 0..n started, all with the load balancer as public address. The
/// load balancer has `slots` backends, so later proxies can be added to it.
fn setup(n: usize, slots: usize, balance: &str) -> (Cluster, Vec<ProxyNode>, HaProxy) {
    let c = Cluster::start();
    // Reserve the proxies' ports first: the load balancer must know them.
    let lb_port = free_port();
    let lb_addr = format!("127.0.0.1:{lb_port}");
    let mut proxies: Vec<ProxyNode> = (0..slots)
        .map(|i| c.proxy_config(&format!("proxy-{i}"), &lb_addr, ""))
        .collect();
    let ports: Vec<u16> = proxies.iter().map(|p| p.port).collect();
    let lb = HaProxy::start_on(lb_port, &ports, balance);
    for p in proxies.iter_mut().take(n) {
        c.start_proxy(p);
    }
    // Sticky balancing hashes over the servers that are up: wait for all of them.
    lb.wait_up(n);
    (c, proxies, lb)
}

fn echo_server() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        for conn in l.incoming().take(4) {
            let mut c = conn.unwrap();
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            let _ = c.write_all(b"echo:");
            let _ = c.write_all(&buf[..n]);
        }
    });
    (port, h)
}

#[test]
fn node_keeps_a_tunnel_to_every_proxy_behind_round_robin() {
    let (c, mut proxies, lb) = setup(3, 4, "roundrobin");
    let token = c.token("node", "30m");
    let mut n = Node::new("edge-1");
    n.start_via_proxy(&lb.addr(), &token, Some(&c.pin()));
    let t = c.wait_tunnels("edge-1", 3, T);
    assert_eq!(t, vec!["proxy-0", "proxy-1", "proxy-2"]);
    n.proc().wait_log("first heartbeat acknowledged", T);
    let listed = c.tctl_ok(&["nodes", "ls"]);
    assert!(listed.contains("⟵ Tunnel"), "{listed}");
    for p in c.proxies() {
        assert_eq!(p["tunnels"], 1, "{p}");
    }
    let pls = c.tctl_ok(&["proxies", "ls"]);
    assert!(pls.contains("Tunnels"), "{pls}");

    // The data plane: a dial through any proxy reaches a service on the node's loopback.
    let (echo_port, _h) = echo_server();
    for _ in 0..2 {
        let target = format!("127.0.0.1:{echo_port}");
        let out = c.dial(&lb.addr(), "edge-1", &target, b"ping");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "echo:ping",
            "{}",
            text(&out)
        );
    }

    // Kill one proxy: the node stays listed and holds two tunnels.
    proxies[1].proc().kill9();
    let t = wait_for(T, "two tunnels, node listed throughout", || {
        let t = c
            .tunnels_of("edge-1")
            .expect("node dropped out of tctl nodes ls");
        (t.len() == 2).then_some(t)
    });
    assert_eq!(t, vec!["proxy-0", "proxy-2"]);

    // Start it again: three.
    proxies[1].start();
    c.wait_tunnels("edge-1", 3, T);
    // A fourth proxy joins the set: four.
    c.start_proxy(&mut proxies[3]);
    let t = c.wait_tunnels("edge-1", 4, T);
    assert_eq!(t.len(), 4);
    assert!(n.proc().running());

    // Graceful stop: the node says goodbye on every tunnel and leaves the list at once.
    let (st, took) = n.proc().stop();
    assert!(st.success());
    assert!(took < Duration::from_secs(2), "{took:?}");
    c.wait_node_gone("edge-1", Duration::from_secs(2));
}

#[test]
fn sticky_balancing_leaves_the_node_on_one_proxy_and_says_why() {
    let (c, _proxies, lb) = setup(3, 3, "source");
    let mut n = Node::new("sticky");
    n.start_via_proxy(&lb.addr(), &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("sticky", 1, T);
    n.proc().wait_log("must use round-robin, not sticky", T);
    assert_eq!(c.tunnels_of("sticky").unwrap().len(), 1);
}

#[test]
fn nodes_reappear_after_auth_restarts_without_being_restarted() {
    let (mut c, mut proxies, lb) = setup(2, 2, "roundrobin");
    let mut n = Node::new("steady");
    n.start_via_proxy(&lb.addr(), &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("steady", 2, T);
    let before = c.auth().child.id();
    c.auth().kill9();
    c.start_auth();
    assert_ne!(c.auth().child.id(), before, "auth was not restarted");
    // The new auth process starts with an empty inventory: the node is listed again only
    // once both proxies re-linked and relayed its beats.
    for p in proxies.iter_mut().take(2) {
        p.proc().wait_log("link to auth at", T);
        p.proc().wait_log("re-established", T);
    }
    c.wait_tunnels("steady", 2, T);
    assert!(n.proc().running());
    assert!(c.proxies().len() == 2);
}

#[test]
fn join_through_proxy_with_wrong_token_gets_the_same_clear_errors() {
    let (c, _proxies, lb) = setup(1, 1, "roundrobin");
    let mut n = Node::new("bad");
    n.start_via_proxy(&lb.addr(), &c.token("proxy", "30m"), Some(&c.pin()));
    let st = n.proc().wait_exit(T);
    assert!(!st.success());
    let log = n.proc().log_text();
    assert!(
        log.contains("does not allow joining as Node (it allows Proxy)"),
        "{log}"
    );
    assert!(n.data_files().is_empty());

    // The seed's version check works through the load balancer.
    let out = Command::new("curl")
        .args(["-sk", &format!("https://{}/v1/webapi/find", lb.addr())])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["cluster_name"], CLUSTER_NAME);
    assert_eq!(v["proxy"]["ssh"]["tunnel_public_addr"], lb.addr().as_str());
    let out = Command::new("curl")
        .args(["-sk", &format!("https://{}/webapi/find", lb.addr())])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls_routing_enabled"));
}

#[test]
fn untrusted_proxy_certificate_is_refused_unless_the_cluster_ca_is_pinned() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=foreign",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    let extra = format!(
        "  https_keypairs:\n  - cert_file: {}\n    key_file: {}\n",
        cert.display(),
        key.display()
    );
    let mut p = c.proxy_config("foreign-cert", "127.0.0.1:1", &extra);
    let addr = p.addr();
    c.start_proxy(&mut p);
    let token = c.token("node", "30m");
    // Without a pin the node checks the public certificate against the system roots: refused.
    let mut n = Node::new("wary");
    n.start_via_proxy(&addr, &token, None);
    let st = n.proc().wait_exit(T);
    assert!(!st.success());
    let log = n.proc().log_text();
    assert!(log.contains("is not trusted"), "{log}");
    assert!(n.data_files().is_empty());
    // With the pin it asks for the proxy's cluster certificate, verifies it by the pinned CA
    // and the Proxy role, and joins.
    let mut pinned = Node::new("pinned");
    pinned.start_via_proxy(&addr, &token, Some(&c.pin()));
    c.wait_node("pinned", T);
}

#[test]
fn garbage_on_the_tunnel_port_is_rejected_and_service_continues() {
    let (c, mut proxies, lb) = setup(1, 1, "roundrobin");
    let addr = proxies[0].addr();
    // Plain bytes, no TLS at all.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // TLS with the tunnel ALPN but no client certificate.
    let no_cert = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr,
            "-alpn",
            "teleport-reversetunnel",
            "-quiet",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = no_cert;
    // A certificate of another cluster.
    let other = Cluster::start();
    let id = other.path().join("auth/admin-identity.pem");
    let other_cert = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr,
            "-alpn",
            "teleport-reversetunnel",
            "-quiet",
        ])
        .arg("-cert")
        .arg(&id)
        .arg("-key")
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = other_cert;
    // The proxy logs through a writer thread: wait for the lines rather than read at once.
    wait_for(T, "both refusals in the proxy's log", || {
        let log = proxies[0].proc().log_text();
        (log.matches("TLS handshake failed").count() >= 2 && log.contains("rejected a tunnel"))
            .then_some(())
    });
    // Everyone else is still served.
    let mut n = Node::new("after-garbage");
    n.start_via_proxy(&lb.addr(), &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("after-garbage", 1, T);
}

#[test]
fn auth_and_proxy_in_one_process_serve_a_tunnelled_node() {
    let web_port = free_port();
    let c = Cluster::start_with_proxy(true, web_port);
    c.wait_node("authhost", T);
    let mut n = Node::new("remote");
    let proxy = format!("127.0.0.1:{web_port}");
    n.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    assert_eq!(c.wait_tunnels("remote", 1, T), vec!["authhost"]);
}
