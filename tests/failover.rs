//! A proxy given several auth server addresses (`auth_server: [A, B]`) moves its link to the
//! next one when the one in use dies. Here both addresses are HAProxy frontends in front of the
//! same auth server, so killing frontend A kills exactly the path the link uses, as the death
//! of an auth server behind a shared backend would.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_proxy_whose_auth_server_dies_moves_its_link_to_the_next_and_keeps_serving_joins() {
    let c = Cluster::start();
    let auth_port: u16 = c.addr().rsplit(':').next().unwrap().parse().unwrap();
    let a = HaProxy::start_on(free_port(), &[auth_port], "roundrobin");
    let b = HaProxy::start_on(free_port(), &[auth_port], "roundrobin");
    let mut p = c.proxy_config("proxy-f", "127.0.0.1:443", "");
    let yaml = fs::read_to_string(&p.config).unwrap();
    let list = format!("auth_server: [{}, {}]", a.addr(), b.addr());
    let yaml = yaml.replace(&format!("auth_server: {}", c.addr()), &list);
    assert!(yaml.contains(&list), "{yaml}");
    fs::write(&p.config, yaml).unwrap();
    c.start_proxy(&mut p);

    // Kill the frontend the link uses: the proxy must say it moves to B, and get there.
    drop(a);
    let moved = format!("reconnecting to {}", b.addr());
    p.proc().wait_log(&moved, T);
    p.proc()
        .wait_log(&format!("link to auth at {} re-established", b.addr()), T);

    // Proof that it is served through B: a node joins through this proxy (the join is
    // relayed to auth), and is listed with its tunnel.
    let token = c.token("node", "30m");
    let mut n = Node::new("after-failover");
    n.start_via_proxy(&p.addr(), &token, Some(&c.pin()));
    assert_eq!(c.wait_tunnels("after-failover", 1, T), vec!["proxy-f"]);
    assert!(
        c.proxies().iter().any(|x| x["name"] == "proxy-f"),
        "the proxy stays listed"
    );
}
