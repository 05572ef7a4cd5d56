//! Host certificate renewal against the real processes: with `host_cert_ttl: 6s`, nodes (through
//! proxies, or straight to auth) and proxies renew over the connection they already hold, so
//! nothing drops out of `tctl nodes ls`, no process restarts and no tunnel or stream
//! reconnects; a node that was offline past its certificate's expiry is told to join again.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::lifecycle::*;
use common::*;
use teleport_lite::clock::now_unix;

/// Renewal comes at two thirds of the lifetime; the other tunnels are shown the new certificate
/// at their next heartbeat (every second here): 9 s leaves them 3 s, enough on a loaded machine
/// (6 s left 2 s, and once, under the whole suite, a tunnel outlived its certificate first).
const TTL: &str = "  host_cert_ttl: 9s\n";
const TTL_SECS: i64 = 9;
/// Renewals every host must show.
const RENEWALS: usize = 3;

/// Follows one identity file: every new certificate it holds.
struct Renewals {
    who: String,
    path: PathBuf,
    host_id: String,
    /// (not_after, key) of each certificate seen, oldest first.
    seen: Vec<(i64, String)>,
    fresh_keys: bool,
}

impl Renewals {
    /// `fresh_keys`: nodes take a new key at each renewal; proxies keep theirs, so the curl
    /// pins of their web certificate in install lines already printed stay valid.
    fn new(who: &str, path: PathBuf, fresh_keys: bool) -> Renewals {
        let id = read_identity(&path);
        let not_after = id.not_after().unwrap();
        let life = not_after - now_unix();
        assert!(
            life <= TTL_SECS + 1,
            "{who}'s certificate lives {life}s, but host_cert_ttl is {TTL_SECS}s"
        );
        Renewals {
            who: who.to_string(),
            host_id: id.subject().unwrap().host_id,
            seen: vec![(not_after, id.key_pem)],
            path,
            fresh_keys,
        }
    }

    /// Reads the file again; a new certificate must come with a new key (or, for a proxy, the
    /// same one), a later expiry, the same host ID, and arrive before the one it replaces
    /// expired.
    fn observe(&mut self) {
        let id = read_identity(&self.path);
        let not_after = id.not_after().unwrap();
        let (last_after, last_key) = self.seen.last().unwrap().clone();
        if not_after == last_after {
            return;
        }
        let who = &self.who;
        assert!(not_after > last_after, "{who}: expiry went back");
        if self.fresh_keys {
            assert_ne!(id.key_pem, last_key, "{who}: renewed without a new key");
        } else {
            assert_eq!(
                id.key_pem, last_key,
                "{who}: a proxy keeps its key (web pins)"
            );
        }
        assert_eq!(
            id.subject().unwrap().host_id,
            self.host_id,
            "{who}: host ID changed"
        );
        assert!(
            now_unix() <= last_after,
            "{who}: renewed only after the old certificate expired"
        );
        self.seen.push((not_after, id.key_pem));
    }

    fn renewals(&self) -> usize {
        self.seen.len() - 1
    }
}

/// Polls every followed identity until each shows `RENEWALS` renewals.
fn follow(all: &mut [Renewals]) {
    wait_for(
        Duration::from_secs(60),
        &format!("{RENEWALS} renewals of every identity"),
        || {
            for r in all.iter_mut() {
                r.observe();
            }
            all.iter().all(|r| r.renewals() >= RENEWALS).then_some(())
        },
    );
}

/// Each host renewed at least `RENEWALS` times in the audit log (`cert.issued`, `via: renewal`)
/// and logged it as many times.
fn audited_and_logged(c: &Cluster, hosts: &[(&Renewals, String)]) {
    let all = audit(c);
    let mut renewed: HashMap<String, usize> = HashMap::new();
    for e in events(&all, "cert.issued") {
        if e["via"] == "renewal" {
            let host = e["host_id"].as_str().unwrap_or_default().to_string();
            *renewed.entry(host).or_default() += 1;
        }
    }
    for (r, log) in hosts {
        let n = renewed.get(&r.host_id).copied().unwrap_or(0);
        assert!(
            n >= RENEWALS,
            "{}: {n} cert.issued renewal events: {all:?}",
            r.who
        );
        let lines = log_lines_with(log, &["renewed the host certificate"]);
        assert!(
            lines >= RENEWALS,
            "{}: {lines} renewal lines:\n{log}",
            r.who
        );
    }
}

#[test]
fn a_node_behind_two_proxies_and_both_proxies_renew_three_times_without_dropping_or_reconnecting() {
    let mut f = Fleet::start(TTL, 2);
    let ndiag = diag_addr();
    let mut n = f.node("renewing", &ndiag);
    wait_held(&f.c, "renewing", &ndiag, 2);
    let pid = n.proc().child.id();
    let watch = NodeWatch::start(&f.c, &["renewing"]);

    let mut all = vec![
        Renewals::new("node", node_identity_path(&n), true),
        Renewals::new("proxy-0", proxy_identity_path(&f.proxies[0]), false),
        Renewals::new("proxy-1", proxy_identity_path(&f.proxies[1]), false),
    ];
    follow(&mut all);
    watch.finish();

    assert_running(n.proc());
    assert_eq!(n.proc().child.id(), pid);
    let reconnects = metric(&ndiag, RECONNECTS_TUNNEL).unwrap_or(0.0);
    assert_eq!(
        reconnects,
        0.0,
        "the node reconnected its tunnels; its log:\n{}",
        n.proc().log_text()
    );
    assert_eq!(metric(&ndiag, TUNNELS_HELD), Some(2.0));
    for (p, diag) in f.proxies.iter_mut().zip(&f.proxy_diags) {
        assert_running(p.proc());
        assert_no_reconnects(diag, RECONNECTS_LINK, &p.name);
    }
    let logs = [
        n.proc().log_text(),
        f.proxies[0].proc().log_text(),
        f.proxies[1].proc().log_text(),
    ];
    let hosts: Vec<(&Renewals, String)> = all.iter().zip(logs).collect();
    audited_and_logged(&f.c, &hosts);
}

#[test]
fn a_direct_node_renews_three_times_over_its_stream_without_dropping_or_reconnecting() {
    let c = cluster(TTL);
    let diag = diag_addr();
    let (mut n, _) = direct_node(&c, "direct-renewing", &diag);
    c.wait_node("direct-renewing", T);
    wait_for(T, "the node's stream to be up", || {
        (metric(&diag, AUTH_STREAMS) == Some(1.0)).then_some(())
    });
    let pid = n.proc().child.id();
    let watch = NodeWatch::start(&c, &["direct-renewing"]);

    let mut all = vec![Renewals::new("node", node_identity_path(&n), true)];
    follow(&mut all);
    watch.finish();

    assert_running(n.proc());
    assert_eq!(n.proc().child.id(), pid);
    assert_no_reconnects(&diag, RECONNECTS_STREAM, "the node");
    assert_eq!(metric(&diag, AUTH_STREAMS), Some(1.0));
    let hosts = vec![(&all[0], n.proc().log_text())];
    audited_and_logged(&c, &hosts);
}

#[test]
fn nodes_offline_past_their_certificate_expiry_exit_saying_it_expired_and_to_join_again() {
    let f = Fleet::start(TTL, 1);
    let mut tunnelled = f.node("away-tunnelled", &diag_addr());
    let (mut direct, direct_args) = direct_node(&f.c, "away-direct", &diag_addr());
    f.c.wait_node("away-tunnelled", T);
    f.c.wait_node("away-direct", T);
    for n in [&mut tunnelled, &mut direct] {
        let (st, _) = n.proc().stop();
        assert!(st.success(), "{} did not stop cleanly", n.name);
    }
    // Wait on the stored certificates themselves, not a fixed time.
    let last = [&tunnelled, &direct]
        .iter()
        .map(|n| read_identity(&node_identity_path(n)).not_after().unwrap())
        .max()
        .unwrap();
    wait_for(
        Duration::from_secs(15),
        "the stored certificates to expire",
        || (now_unix() > last).then_some(()),
    );

    let tunnelled_args = vec![
        "start".to_string(),
        "-c".into(),
        tunnelled
            .dir
            .path()
            .join("teleport.yaml")
            .display()
            .to_string(),
    ];
    for (n, args) in [(&mut tunnelled, tunnelled_args), (&mut direct, direct_args)] {
        let path = node_identity_path(n).display().to_string();
        let (st, log) = n.run_expect_exit(&args);
        assert!(
            !st.success(),
            "{} started with an expired certificate:\n{log}",
            n.name
        );
        for needle in ["expired", "join again", path.as_str()] {
            assert!(
                log.contains(needle),
                "{needle:?} not in the log of {}:\n{log}",
                n.name
            );
        }
        assert!(!f.c.has_node(&n.name));
    }
}
