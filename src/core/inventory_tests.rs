//! Unit tests of the inventory: expiry, paths, proxies, and other auth servers' records.

use super::*;

fn n(uuid: &str) -> NodeInfo {
    node_info(uuid, &format!("host-{uuid}"), "", BTreeMap::new(), "1")
}

fn p(id: &str) -> ProxyRef {
    ProxyRef {
        id: id.into(),
        name: format!("proxy-{id}"),
    }
}

#[test]
fn nodes_expire_after_ttl_without_heartbeats() {
    let mut inv = Inventory::default();
    inv.upsert(n("a"), 1, 0, 15_000);
    assert_eq!(inv.list(14_999).len(), 1);
    assert!(inv.heartbeat("a", 1, 10_000, 15_000));
    assert_eq!(inv.list(24_999).len(), 1);
    assert_eq!(inv.list(25_000).len(), 0);
    assert_eq!(inv.expire(25_000), 1);
}

#[test]
fn an_old_stream_cannot_remove_or_refresh_a_reconnected_node() {
    let mut inv = Inventory::default();
    inv.upsert(n("a"), 1, 0, 1000);
    inv.upsert(n("a"), 2, 10, 1000);
    assert!(!inv.heartbeat("a", 1, 20, 1000));
    assert!(!inv.remove("a", 1));
    assert_eq!(inv.count(20), 1);
    assert!(inv.remove("a", 2));
    assert_eq!(inv.count(20), 0);
}

#[test]
fn one_dead_proxy_loses_no_node() {
    let mut inv = Inventory::default();
    inv.upsert_proxy(p("1"), "", "1", 1, 0, 10_000);
    inv.upsert_proxy(p("2"), "", "1", 2, 0, 10_000);
    inv.upsert_via(n("a"), "1", 0, 1000);
    inv.upsert_via(n("a"), "2", 500, 1000);
    let l = inv.list(600);
    assert_eq!(l[0].tunnels, vec!["proxy-1", "proxy-2"]);
    assert_eq!(l[0].addr, TUNNEL_ADDR);
    // Proxy 1 stops relaying: the node stays, through proxy 2 only.
    let l = inv.list(1200);
    assert_eq!(l[0].tunnels, vec!["proxy-2"]);
    assert_eq!(inv.list_proxies(1200)[1].tunnels, 1);
    assert_eq!(inv.name_via("a", "2", 1200).as_deref(), Some("host-a"));
    assert_eq!(inv.name_via("a", "1", 1200), None, "proxy 1's path expired");
    inv.remove_via("a", "2");
    assert_eq!(inv.count(1200), 0);
}

#[test]
fn a_forgotten_node_is_gone_on_every_path() {
    let mut inv = Inventory::default();
    inv.upsert(n("a"), 1, 0, 1000);
    inv.upsert_via(n("a"), "p", 0, 1000);
    assert_eq!(inv.find("host-a", 0).len(), 1);
    assert_eq!(inv.find("a", 0).len(), 1);
    assert_eq!(inv.forget("a").unwrap().hostname, "host-a");
    assert_eq!(inv.count(0), 0);
    assert!(inv.find("a", 0).is_empty());
}

#[test]
fn web_trust_is_public_only_when_every_live_proxy_is() {
    let mut inv = Inventory::default();
    assert!(!inv.web_trust(0).public);
    inv.upsert_proxy(p("1"), "", "1", 1, 0, 1000);
    inv.upsert_proxy(p("2"), "", "1", 2, 0, 2000);
    let web = |pin: &str, public| WebTrust {
        pins: vec![pin.to_string()],
        public,
    };
    inv.set_proxy_web("1", web("b", false));
    inv.set_proxy_web("2", web("a", true));
    // A heartbeat keeps what the hello reported.
    inv.upsert_proxy(p("2"), "", "1", 2, 0, 2000);
    assert_eq!(
        inv.web_trust(0),
        WebTrust {
            pins: vec!["a".into(), "b".into()],
            public: false
        }
    );
    // Proxy 1 expires: only public proxies are left.
    assert_eq!(inv.web_trust(1500), web("a", true));
}

#[test]
fn other_auth_servers_nodes_and_proxies_are_merged_by_host_id() {
    let mut inv = Inventory::default();
    inv.upsert_proxy(p("1"), "", "1", 1, 0, 1000);
    inv.upsert_via(n("a"), "1", 0, 1000);
    let mut a = n("a");
    a.tunnels = vec!["proxy-2".into()];
    let mut b = n("b");
    b.tunnels = vec!["proxy-2".into()];
    let rec = |node: NodeInfo| (node, 2000);
    let info = |id: &str| ProxyInfo {
        name: format!("proxy-{id}"),
        uuid: id.into(),
        addr: String::new(),
        version: "1".into(),
        tunnels: 2,
    };
    let prx = |id: &str| ProxyRecord {
        proxy: p(id),
        info: info(id),
        web: WebTrust::default(),
    };
    inv.set_remote(Remote::new(
        vec![rec(a), rec(b)],
        vec![(prx("1"), 2000), (prx("2"), 2000)],
    ));
    let l = inv.list(500);
    assert_eq!(l.len(), 2);
    assert_eq!(
        l[0].tunnels,
        vec!["proxy-1", "proxy-2"],
        "both auths' tunnels"
    );
    assert_eq!(inv.count(500), 2);
    assert_eq!(inv.proxy_set(500), vec![p("1"), p("2")]);
    assert_eq!(inv.list_proxies(500).len(), 2, "proxy 1 is listed once");
    // This server's own entries expire; the other's stay until theirs do.
    assert_eq!(inv.proxy_set(1500), vec![p("1"), p("2")]);
    assert_eq!(inv.count(1500), 2);
    assert_eq!(inv.count(2000), 0);
    inv.forget("b");
    assert_eq!(inv.count(500), 1);
}

#[test]
fn proxy_set_follows_heartbeats() {
    let mut inv = Inventory::default();
    inv.upsert_proxy(p("1"), "", "1", 7, 0, 1000);
    inv.upsert_proxy(p("2"), "", "1", 8, 500, 1000);
    assert_eq!(inv.proxy_set(900).len(), 2);
    assert_eq!(inv.proxy_set(1000), vec![p("2")]);
    inv.remove_proxy("2", 99);
    assert_eq!(inv.proxy_set(1000).len(), 1);
    inv.remove_proxy("2", 8);
    assert!(inv.proxy_set(1000).is_empty());
}
