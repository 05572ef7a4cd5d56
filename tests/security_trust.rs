//! Attacks by a host that holds one node join token (and so, after joining, a real node
//! certificate): it must not get a server's names, another host's ID or name, pose as auth or a
//! proxy to anyone, or disturb other nodes. Each test runs the real processes.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wire::{self, FakeServer};
use common::*;
use teleport_lite::net::{self, Framed};
use teleport_lite::proto::{ErrorCode, Request, Response, StreamHello, MAX_RESPONSE_FRAME};

const T: Duration = Duration::from_secs(20);

fn uuid_of(c: &Cluster, name: &str) -> String {
    let nodes = c.nodes();
    let n = nodes
        .iter()
        .find(|n| n["hostname"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {nodes:?}"));
    n["uuid"].as_str().unwrap().to_string()
}

fn refused_as_bad(r: &Response, needle: &str) {
    match r {
        Response::Error { code, message } => {
            assert_eq!(*code, ErrorCode::BadParameter, "{message}");
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_join_cannot_choose_server_names_host_ids_or_the_server_usage() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let token = c.token("node", "30m");
    let mut victim = Node::new("victim");
    victim.start(&c, &token, &c.pin());
    c.wait_node("victim", T);
    let victim_id = uuid_of(&c, "victim");

    for name in [
        "teleport.cluster.local",
        "proxy.teleport.cluster.local",
        "Auth.Teleport.Cluster.Local",
    ] {
        // Straight to auth...
        let (_, req) = wire::register_request(&token, name, &victim_id);
        let r = wire::ask_auth(&c.addr(), &Request::Register(req.clone()), None);
        refused_as_bad(&r, "reserved");
        // ...and through the proxy's join relay.
        let out = Command::new("curl")
            .args(["-sk", "-X", "POST", "--data-binary", "@-"])
            .arg(format!(
                "https://127.0.0.1:{web}/v1/webapi/host/credentials"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin
                    .take()
                    .unwrap()
                    .write_all(&serde_json::to_vec(&req).unwrap())?;
                ch.wait_with_output()
            })
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("reserved"), "{body}");
    }

    // A name that is not reserved, another node's host ID and server names asked for: auth
    // gives a new host ID, keeps the name out of the SANs and issues a client-only cert.
    let (_, req) = wire::register_request(&token, "localhost", &victim_id);
    let cert = match wire::ask_auth(&c.addr(), &Request::Register(req), None) {
        Response::Registered { tls, .. } => tls,
        other => panic!("join refused: {other:?}"),
    };
    let facts = wire::cert_facts(&cert);
    assert_ne!(
        facts.subject.host_id, victim_id,
        "auth let a join take a host ID"
    );
    assert!(teleport_lite::secret::is_uuid(&facts.subject.host_id));
    assert_eq!(facts.subject.role, "Node");
    assert_eq!(facts.subject.node_name, "localhost");
    assert!(!facts.server_auth, "a node certificate must not serve TLS");
    let own = [
        facts.subject.host_id.clone(),
        format!("{}.{CLUSTER_NAME}", facts.subject.host_id),
    ];
    assert!(
        facts.dns.iter().all(|d| own.contains(d)),
        "names beyond the host ID: {:?}",
        facts.dns
    );
    // The victim is untouched.
    assert_eq!(uuid_of(&c, "victim"), victim_id);
}

/// A node that joined legitimately; returns its stored identity after stopping it.
fn joined_identity(c: &Cluster, name: &str) -> teleport_lite::pki::identity::Identity {
    let mut n = Node::new(name);
    n.start(c, &c.token("node", "30m"), &c.pin());
    c.wait_node(name, T);
    n.proc().stop();
    wire::stored_identity(&n.data_dir())
}

#[test]
fn a_joined_host_cannot_pose_as_auth_to_a_pinned_node_or_to_tctl() {
    let c = Cluster::start();
    let stolen = joined_identity(&c, "mallory");
    let fake = FakeServer::start(&stolen, &[b"teleport-auth"], &stolen.ca_pems[0]);

    // A new node with a real token and the real pin, pointed at the fake auth.
    let token = c.token("node", "30m");
    let mut victim = Node::new("victim");
    let mut args = victim.start_args(&c, &token, &c.pin());
    args.retain(|a| !a.starts_with("--auth-server"));
    args.push(format!("--auth-server={}", fake.addr()));
    let (st, log) = victim.run_expect_exit(&args);
    assert!(!st.success(), "{log}");
    assert!(log.contains("certificate"), "{log}");
    assert!(!fake.saw(&token), "the fake auth received the join token");
    assert!(victim.data_files().is_empty(), "{:?}", victim.data_files());

    // tctl with the admin identity refuses it before sending any command.
    let out = c.tctl(&["--auth-server", &fake.addr(), "status"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("certificate"), "{}", text(&out));
    assert!(!fake.saw("status"), "tctl sent a command to the fake auth");
    // The real cluster still answers.
    assert!(c.tctl(&["status"]).status.success());
}

#[test]
fn a_joined_host_cannot_pose_as_a_proxy_to_agents_or_to_tctl_dials() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let stolen = joined_identity(&c, "mallory");
    let alpns: [&[u8]; 3] = [
        b"teleport-reversetunnel",
        b"teleport-transport",
        b"http/1.1",
    ];
    let fake = FakeServer::start(&stolen, &alpns, &stolen.ca_pems[0]);

    // A node that joined through the real proxy, restarted against the fake one.
    let mut victim = Node::new("victim");
    let proxy = format!("127.0.0.1:{web}");
    victim.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("victim", 1, T);
    victim.proc().stop();
    victim.start_via_proxy(&fake.addr(), "unused", Some(&c.pin()));
    victim.proc().wait_log(
        "presented a certificate not issued by the trusted cluster CA",
        T,
    );
    assert!(!fake.saw("tunnel_hello"), "the agent introduced itself");
    assert_eq!(*fake.handshakes.lock().unwrap(), 0);

    // An admin's dial through the fake proxy never sends the dial.
    let out = c.tctl(&[
        "nodes",
        "dial",
        &format!("--proxy={}", fake.addr()),
        "victim",
        "127.0.0.1:22",
    ]);
    assert!(!out.status.success());
    assert!(!fake.saw("dial"), "tctl sent a dial to the fake proxy");
}

/// Opens a tunnel to the proxy with `id` and sends `hello`; returns the proxy's answer.
fn tunnel_hello(
    proxy: &str,
    id: &teleport_lite::pki::identity::Identity,
    hello: StreamHello,
) -> Option<Response> {
    smol::block_on(async {
        let cfg = wire::insecure_with_identity_alpn(id, &[b"teleport-reversetunnel"]);
        let tls = net::connect_tls_as(proxy, cfg, "proxy.teleport.cluster.local")
            .await
            .unwrap();
        let mux = teleport_lite::mux::start(tls, true);
        let stream = mux.opener.open().await.ok()?;
        let mut ctl = Framed::new(stream, MAX_RESPONSE_FRAME);
        ctl.send(&Request::TunnelHello(hello)).await.ok()?;
        net::with_timeout(T, ctl.recv::<Response>())
            .await
            .and_then(|r| r.ok())
            .flatten()
    })
}

fn stream_hello(name: &str, labels: BTreeMap<String, String>) -> StreamHello {
    match wire::hello(name, labels) {
        Request::Hello(h) => h,
        _ => unreachable!(),
    }
}

#[test]
fn a_node_is_bound_to_the_name_and_id_auth_chose_and_ambiguous_names_are_not_dialled() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let proxy = format!("127.0.0.1:{web}");
    let mut alpha = Node::new("alpha");
    alpha.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("alpha", 1, T);
    let alpha_id = uuid_of(&c, "alpha");
    let beta = joined_identity(&c, "beta");

    // beta announces itself as alpha: on auth's stream and on a tunnel.
    let r = wire::ask_auth(
        &c.addr(),
        &wire::hello("alpha", BTreeMap::new()),
        Some(&beta),
    );
    refused_as_bad(&r, "joined as \"beta\"");
    let r = tunnel_hello(&proxy, &beta, stream_hello("alpha", BTreeMap::new()));
    refused_as_bad(&r.expect("the proxy answers"), "joined as \"beta\"");
    assert_eq!(uuid_of(&c, "alpha"), alpha_id);

    // A second host legitimately named alpha: a dial by that name is refused as ambiguous;
    // a dial by UUID reaches the first alpha.
    let mut twin = Node::new("alpha");
    twin.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    wait_for(T, "two nodes named alpha", || {
        (c.nodes()
            .iter()
            .filter(|n| n["hostname"] == "alpha")
            .count()
            == 2)
            .then_some(())
    });
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(1) {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).unwrap_or(0);
            let _ = conn.write_all(&buf[..n]);
        }
    });
    let target = format!("127.0.0.1:{echo_port}");
    let dial = |node: &str| c.dial(&proxy, node, &target, b"ping");
    let out = dial("alpha");
    assert!(!out.status.success());
    assert!(text(&out).contains("2 nodes are named"), "{}", text(&out));
    let out = dial(&alpha_id);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ping",
        "{}",
        text(&out)
    );
    alpha.proc().wait_log("proxy opened a stream to", T);
    assert!(!twin.proc().log_text().contains("proxy opened a stream to"));
}

#[test]
fn one_node_cannot_disturb_the_others() {
    let c = Cluster::start();
    let mut p = c.proxy_config("proxy-0", "127.0.0.1:1", "");
    c.start_proxy(&mut p);
    let proxy = p.addr();
    let mut calm = Node::new("calm");
    calm.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("calm", 1, T);
    let noisy = joined_identity(&c, "noisy");

    // Hellos with oversized labels, escape sequences and forged rows, again and again.
    let huge: BTreeMap<String, String> = (0..48)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    let forged: BTreeMap<String, String> =
        [("env".to_string(), "\u{1b}[2J\nnoisy2 10.0.0.1".to_string())].into();
    for _ in 0..5 {
        if let Some(r) = tunnel_hello(&proxy, &noisy, stream_hello("noisy", huge.clone())) {
            refused_as_bad(&r, "label");
        }
        let r = tunnel_hello(&proxy, &noisy, stream_hello("noisy", forged.clone()));
        refused_as_bad(&r.expect("the proxy answers"), "label");
        let r = wire::ask_auth(
            &c.addr(),
            &wire::hello("noisy", forged.clone()),
            Some(&noisy),
        );
        refused_as_bad(&r, "label");
        // The honest node stays listed every time we look, through the same proxy link.
        assert!(c.tunnels_of("calm").is_some(), "calm dropped out");
    }
    let plog = p.proc().log_text();
    assert!(
        !plog.contains(" lost: "),
        "the proxy lost its link to auth: {plog}"
    );
    let listing = c.tctl_ok(&["nodes", "ls"]);
    assert!(
        !listing.contains('\u{1b}') && !listing.contains("noisy2"),
        "{listing}"
    );
}

#[test]
fn a_failed_join_does_not_use_up_a_single_use_token() {
    let c = Cluster::start();
    // bot tokens are single-use.
    let token = c.token("bot,node", "10m");
    let (_, good) = wire::register_request(&token, "late", "");
    let mut garbage_csr = good.clone();
    garbage_csr.csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE \
                       REQUEST-----\n"
        .into();
    let mut bad_name = good.clone();
    bad_name.node_name = "evil\nname".into();
    let mut bad_labels = good.clone();
    bad_labels.labels = [("k".to_string(), "v".repeat(1000))].into();
    for req in [garbage_csr, bad_name, bad_labels] {
        let r = wire::ask_auth(&c.addr(), &Request::Register(req), None);
        assert!(
            matches!(
                &r,
                Response::Error {
                    code: ErrorCode::BadParameter,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    // The token still admits one real node, and only one.
    let mut n = Node::new("late");
    n.start(&c, &token, &c.pin());
    c.wait_node("late", T);
    let r = wire::ask_auth(&c.addr(), &Request::Register(good), None);
    assert!(
        matches!(
            &r,
            Response::Error {
                code: ErrorCode::AccessDenied,
                ..
            }
        ),
        "{r:?}"
    );
}

/// POSTs `n` bad joins to a proxy's relay from one address; returns the HTTP status counts.
fn bad_joins_via(web: u16, n: usize) -> BTreeMap<String, usize> {
    let (_, req) = wire::register_request("0123456789abcdef0123456789abcdef", "guess", "");
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, serde_json::to_vec(&req).unwrap()).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}\\n"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!(
            "https://127.0.0.1:{web}/v1/webapi/host/credentials?[1-{n}]"
        ))
        .output()
        .unwrap();
    let mut counts = BTreeMap::new();
    for code in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(code.to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn joins_relayed_by_several_proxies_share_one_budget_per_source() {
    let c = Cluster::start();
    let mut a = c.proxy_config("proxy-a", "127.0.0.1:1", "");
    let mut b = c.proxy_config("proxy-b", "127.0.0.1:1", "");
    c.start_proxy(&mut a);
    c.start_proxy(&mut b);
    // Each proxy alone would allow its own burst of 480; auth keys relayed joins by the real
    // source, so the two together allow one burst (plus a little refill).
    let first = bad_joins_via(a.port, 400);
    let second = bad_joins_via(b.port, 400);
    let refused = first.get("429").unwrap_or(&0) + second.get("429").unwrap_or(&0);
    let denied = first.get("403").unwrap_or(&0) + second.get("403").unwrap_or(&0);
    eprintln!("via proxy a: {first:?}; via proxy b: {second:?}");
    assert_eq!(refused + denied, 800, "{first:?} {second:?}");
    assert!(
        denied <= 480 + 40,
        "{denied} bad joins reached the token check"
    );
    assert!(refused >= 280, "only {refused} refused by the rate limit");
}
