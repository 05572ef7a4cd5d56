//! A node behind three proxies beats at the full rate over one tunnel only; the proxies tell
//! auth themselves that they hold its tunnels. What an operator sees in `tctl nodes ls` must
//! not change: every tunnel listed, and a node that loses a proxy (the one carrying its beats
//! or another) stays listed while that proxy drops out of its tunnel list.
//! Auth here beats every 500 ms: quiet tunnels beat every 3 s.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// Auth plus three proxies behind a round-robin HAProxy, and a node holding all three tunnels.
fn three_tunnels(node: &str) -> (Cluster, Vec<ProxyNode>, HaProxy, Node) {
    let c = Cluster::start();
    let (mut proxies, lb) = c.proxies_behind_lb(3);
    for p in proxies.iter_mut() {
        c.start_proxy(p);
    }
    lb.wait_up(3);
    let token = c.token("node", "30m");
    let mut n = Node::new(node);
    n.start_via_proxy(&lb.addr(), &token, Some(&c.pin()));
    let t = c.wait_tunnels(node, 3, T);
    assert_eq!(t, vec!["proxy-0", "proxy-1", "proxy-2"]);
    (c, proxies, lb, n)
}

/// The proxies whose tunnel carried the node's beats, in the order the node said so.
fn carriers(n: &mut Node, node: &str) -> Vec<String> {
    let prefix = format!("heartbeats of {node:?} go over the tunnel to proxy \"");
    n.proc()
        .log_text()
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// Watches `tctl nodes ls` for `window`: the node is listed with all of `expected` each time.
fn stays_listed_with(c: &Cluster, node: &str, expected: &[&str], window: Duration) {
    let start = Instant::now();
    let mut looks = 0;
    while start.elapsed() < window {
        let t = c
            .tunnels_of(node)
            .unwrap_or_else(|| panic!("{node} dropped out of tctl nodes ls after {looks} looks"));
        assert_eq!(t, expected, "after {:?}", start.elapsed());
        looks += 1;
    }
    assert!(looks > 3, "looked only {looks} times");
}

#[test]
fn quiet_tunnels_stay_listed_and_a_dead_quiet_proxy_drops_out_while_the_node_stays() {
    let (c, mut proxies, _lb, mut n) = three_tunnels("edge-q");
    n.proc().wait_log("go over the tunnel to proxy", T);
    let carrier = carriers(&mut n, "edge-q");
    assert_eq!(
        carrier.len(),
        1,
        "one tunnel carries the beats: {carrier:?}"
    );
    // Three quiet periods: the two quiet tunnels stay listed all along.
    let all = ["proxy-0", "proxy-1", "proxy-2"];
    stays_listed_with(&c, "edge-q", &all, Duration::from_secs(9));

    // A proxy that does not carry the beats dies: its tunnel leaves the list, the node stays.
    let quiet = (0..3)
        .find(|&i| format!("proxy-{i}") != carrier[0])
        .unwrap();
    proxies[quiet].proc().kill9();
    let killed_at = Instant::now();
    let t = wait_for(T, "the dead proxy to leave the tunnel list", || {
        let t = c
            .tunnels_of("edge-q")
            .expect("the node dropped out of tctl nodes ls");
        (t.len() == 2).then_some(t)
    });
    assert!(!t.contains(&format!("proxy-{quiet}")), "{t:?}");
    assert!(t.contains(&carrier[0]), "{t:?}");
    // Auth forgets a proxy's path three intervals (1.5 s) after its last word; allow a loaded
    // machine ten times that.
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed_at.elapsed()
    );
    let rest: Vec<&str> = t.iter().map(String::as_str).collect();
    stays_listed_with(&c, "edge-q", &rest, Duration::from_secs(4));
    assert_eq!(
        carriers(&mut n, "edge-q"),
        carrier,
        "the carrier did not change"
    );
}

#[test]
fn killing_the_proxy_that_carries_the_beats_keeps_the_node_listed_and_another_takes_over() {
    let (c, mut proxies, _lb, mut n) = three_tunnels("edge-c");
    n.proc().wait_log("go over the tunnel to proxy", T);
    let carrier = carriers(&mut n, "edge-c").remove(0);
    let i: usize = carrier.trim_start_matches("proxy-").parse().unwrap();
    proxies[i].proc().kill9();
    let t = wait_for(T, "the carrier to leave the tunnel list", || {
        let t = c
            .tunnels_of("edge-c")
            .expect("the node dropped out of tctl nodes ls");
        (t.len() == 2).then_some(t)
    });
    assert!(!t.contains(&carrier), "{t:?}");
    // Another tunnel carries the beats now.
    let next = wait_for(T, "another tunnel to carry the beats", || {
        let all = carriers(&mut n, "edge-c");
        (all.len() >= 2).then(|| all[all.len() - 1].clone())
    });
    assert_ne!(next, carrier);
    assert!(t.contains(&next), "{t:?} {next}");
    let rest: Vec<&str> = t.iter().map(String::as_str).collect();
    stays_listed_with(&c, "edge-c", &rest, Duration::from_secs(4));
    assert!(n.proc().running());
}
