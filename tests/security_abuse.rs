//! A host with a real node certificate abusing its tunnel: oversized hello fields, a heartbeat
//! flood, many tunnels with parked streams, and a name shaped like another host's UUID. Each
//! attack must stay with the attacker: the proxy's link to auth holds, honest nodes stay
//! listed, and the proxy's memory stays flat.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::wire;
use common::*;
use futures_lite::AsyncWriteExt;
use teleport_lite::mux::Mux;
use teleport_lite::net::{self, Framed};
use teleport_lite::pki::identity::Identity;
use teleport_lite::proto::{encode, ErrorCode, Request, Response, StreamHello, MAX_RESPONSE_FRAME};

const T: Duration = Duration::from_secs(20);

fn joined_identity(c: &Cluster, name: &str) -> Identity {
    let mut n = Node::new(name);
    n.start(c, &c.token("node", "30m"), &c.pin());
    c.wait_node(name, T);
    n.proc().stop();
    wire::stored_identity(&n.data_dir())
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn hello(name: &str) -> StreamHello {
    StreamHello {
        version: 1,
        node_name: name.into(),
        server_version: "1.0.0".into(),
        labels: BTreeMap::new(),
        public_addr: String::new(),
    }
}

/// A tunnel as a modified agent opens it: TLS with `id`, the control stream, `hello`; returns
/// the multiplexer, the control stream and the proxy's answer.
async fn open_tunnel(
    proxy: &str,
    id: &Identity,
    hello: &StreamHello,
) -> (Mux, Framed<teleport_lite::mux::Stream>, Option<Response>) {
    let cfg = wire::insecure_with_identity_alpn(id, &[b"teleport-reversetunnel"]);
    let tls = net::connect_tls_as(proxy, cfg, "proxy.teleport.cluster.local")
        .await
        .unwrap();
    let mux = teleport_lite::mux::start(tls, true);
    let stream = mux.opener.open().await.unwrap();
    let mut ctl = Framed::new(stream, MAX_RESPONSE_FRAME);
    ctl.send(&Request::TunnelHello(hello.clone()))
        .await
        .unwrap();
    let answer = net::with_timeout(T, ctl.recv::<Response>())
        .await
        .and_then(|r| r.ok())
        .flatten();
    (mux, ctl, answer)
}

fn refused(r: &Option<Response>, needle: &str) {
    match r {
        Some(Response::Error { code, message }) => {
            assert_eq!(*code, ErrorCode::BadParameter, "{message}");
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
    }
}

/// Auth, one proxy process and an honest node tunnelled through it.
fn cluster_with_calm_node() -> (Cluster, ProxyNode, Node) {
    let c = Cluster::start();
    let mut p = c.proxy_config("proxy-0", "127.0.0.1:1", "");
    c.start_proxy(&mut p);
    let mut calm = Node::new("calm");
    calm.start_via_proxy(&p.addr(), &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("calm", 1, T);
    (c, p, calm)
}

#[test]
fn oversized_or_odd_hello_fields_are_refused_before_they_are_relayed() {
    let (c, mut p, _calm) = cluster_with_calm_node();
    let noisy = joined_identity(&c, "noisy");
    let mut big_version = hello("noisy");
    big_version.server_version = "v".repeat(200_000);
    let mut odd_addr = hello("noisy");
    odd_addr.public_addr = format!("{}\u{1b}[2J", "a".repeat(1000));
    smol::block_on(async {
        refused(
            &open_tunnel(&p.addr(), &noisy, &big_version).await.2,
            "server_version",
        );
        refused(
            &open_tunnel(&p.addr(), &noisy, &odd_addr).await.2,
            "public_addr",
        );
    });
    for h in [big_version, odd_addr] {
        let r = wire::ask_auth(&c.addr(), &Request::Hello(h), Some(&noisy));
        refused(&Some(r), "invalid");
    }
    assert!(
        c.tunnels_of("calm").is_some(),
        "the honest node dropped out"
    );
    let plog = p.proc().log_text();
    assert!(!plog.contains(" lost: "), "the proxy lost its link: {plog}");
}

#[test]
fn a_heartbeat_flood_closes_only_the_flooding_tunnel() {
    let (c, mut p, _calm) = cluster_with_calm_node();
    let noisy = joined_identity(&c, "noisy");
    let pid = p.proc().child.id();
    let before = rss_kb(pid);
    // The largest hello the caps allow, so every relayed beat is as big as it can be.
    let mut h = hello("noisy");
    h.labels = (0..64)
        .map(|i| (format!("{i:0>128}"), "v".repeat(256)))
        .collect();
    let closed = smol::block_on(async {
        let (_mux, ctl, answer) = open_tunnel(&p.addr(), &noisy, &h).await;
        assert!(
            matches!(answer, Some(Response::TunnelWelcome { .. })),
            "{answer:?}"
        );
        let (stream, _) = ctl.into_parts();
        let (rd, mut wr) = futures_lite::io::split(stream);
        let beats: Vec<u8> = (0..5000u64)
            .flat_map(|seq| encode(&Request::Heartbeat { seq }))
            .collect();
        let _ = net::with_timeout(T, wr.write_all(&beats)).await;
        // The proxy answers some, then closes the tunnel: the reader reaches its end.
        let mut r = Framed::new(rd, MAX_RESPONSE_FRAME);
        let mut acks = 0;
        loop {
            match net::with_timeout(T, r.recv::<Response>()).await {
                Some(Ok(Some(_))) => acks += 1,
                Some(Ok(None)) | Some(Err(_)) => return Some(acks),
                None => return None,
            }
        }
    });
    let acks = closed.expect("the proxy kept the flooding tunnel open");
    assert!(acks < 5000, "all {acks} beats were answered");
    p.proc().wait_log("far faster than the interval", T);
    let after = rss_kb(pid);
    eprintln!("flood: {acks} acks before the close; proxy RSS {before} -> {after} KiB");
    assert!(
        after < before + 16 * 1024,
        "proxy grew {before} -> {after} KiB"
    );
    assert!(
        c.tunnels_of("calm").is_some(),
        "the honest node dropped out"
    );
    assert!(!p.proc().log_text().contains(" lost: "));
}

#[test]
fn one_host_holds_few_tunnels_and_cannot_park_data_in_streams() {
    let (c, mut p, _calm) = cluster_with_calm_node();
    let noisy = joined_identity(&c, "noisy");
    let pid = p.proc().child.id();
    let before = rss_kb(pid);
    smol::block_on(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            let (mux, ctl, answer) = open_tunnel(&p.addr(), &noisy, &hello("noisy")).await;
            assert!(
                matches!(answer, Some(Response::TunnelWelcome { .. })),
                "{answer:?}"
            );
            held.push((mux, ctl));
        }
        let (_m, _c, answer) = open_tunnel(&p.addr(), &noisy, &hello("noisy")).await;
        refused(&answer, "already holds 4 tunnels");
        // Streams the node opens towards the proxy are dropped, not kept with their data.
        let chunk = vec![b'x'; 256 * 1024];
        for (mux, _) in &held {
            for _ in 0..16 {
                let Ok(mut s) = mux.opener.open().await else {
                    break;
                };
                let _ = net::with_timeout(Duration::from_secs(2), s.write_all(&chunk)).await;
            }
        }
        let during = rss_kb(pid);
        eprintln!("4 tunnels x 16 parked streams: proxy RSS {before} -> {during} KiB");
        assert!(
            during < before + 16 * 1024,
            "proxy grew {before} -> {during} KiB"
        );
    });
    assert!(c.tunnels_of("calm").is_some());
}

#[test]
fn a_node_name_shaped_like_a_host_uuid_is_refused() {
    let c = Cluster::start();
    let token = c.token("node", "30m");
    for name in [
        "6805dda3-779e-493b-8000-000000000000",
        "6805DDA3-779E-493B-8000-000000000000",
    ] {
        let (_, req) = wire::register_request(&token, name, "");
        let r = wire::ask_auth(&c.addr(), &Request::Register(req), None);
        refused(&Some(r), "looks like a host UUID");
    }
}
