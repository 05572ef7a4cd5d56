//! A fleet converging onto every proxy behind a real round-robin HAProxy: agents (one load
//! generator process) hold a tunnel to each proxy, follow a proxy that joins after them, and
//! win back a proxy that was killed and restarted.

mod common;

use std::time::Duration;

use common::*;

const AGENTS: usize = 30;
const T: Duration = Duration::from_secs(45);

/// Tunnels each listed proxy holds, by name (auth's view, from relayed heartbeats).
fn tunnels(c: &Cluster) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = c
        .proxies()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            (name, p["tunnels"].as_u64().unwrap_or(0))
        })
        .collect();
    out.sort();
    out
}

fn wait_all_hold(c: &Cluster, names: &[&str], what: &str) {
    let want: Vec<(String, u64)> = names
        .iter()
        .map(|n| (n.to_string(), AGENTS as u64))
        .collect();
    let mut last = Vec::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(T, what, || {
            last = tunnels(c);
            (last == want).then_some(())
        })
    }));
    assert!(
        ok.is_ok(),
        "{what}: tunnels per proxy {last:?}, want {want:?}"
    );
}

#[test]
fn a_fleet_holds_every_proxy_follows_a_new_one_and_wins_back_a_restarted_one() {
    let c = Cluster::start();
    let (mut proxies, lb) = c.proxies_behind_lb(3);
    let lb_addr = format!("127.0.0.1:{}", lb.port);
    for p in proxies.iter_mut().take(2) {
        c.start_proxy(p);
    }
    lb.wait_up(2);

    let token = c.token("node", "30m");
    let data = c.path().join("agents");
    let count = AGENTS.to_string();
    let pin = c.pin();
    let mut fleet = Proc::spawn(
        "loadgen",
        c.path(),
        &[
            "loadgen",
            "--count",
            &count,
            "--token",
            &token,
            "--ca-pin",
            &pin,
            "--proxy",
            &lb_addr,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    wait_all_hold(
        &c,
        &["proxy-0", "proxy-1"],
        "every agent to hold both proxies",
    );

    // A third proxy joins after the agents: they learn of it from the others' acks.
    c.start_proxy(&mut proxies[2]);
    wait_all_hold(
        &c,
        &["proxy-0", "proxy-1", "proxy-2"],
        "every agent to hold the new proxy too",
    );

    // Killed without a goodbye, then restarted with its identity: every agent wins it back.
    proxies[0].proc().kill9();
    // Its paths expire first (else a stale count could pass for a reconnect).
    wait_for(
        T,
        "every node to be listed through two proxies only",
        || {
            let nodes = c.nodes();
            let two = nodes
                .iter()
                .all(|n| n["tunnels"].as_array().map(Vec::len) == Some(2));
            (nodes.len() == AGENTS && two).then_some(())
        },
    );
    c.start_proxy(&mut proxies[0]);
    wait_all_hold(
        &c,
        &["proxy-0", "proxy-1", "proxy-2"],
        "every agent to hold the restarted proxy again",
    );
    assert_eq!(c.nodes().len(), AGENTS, "no agent was lost");
    assert!(fleet.running(), "the agents keep running");
    let log = fleet.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
