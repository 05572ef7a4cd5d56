//! Host CA rotation against the real processes: a semi-automatic rotation moves ten tunnelled
//! nodes and two proxies to the new CA over the connections they hold, with no node ever
//! missing from `tctl nodes ls`; a manual rotation rolled back from update_clients returns
//! every host to the original CA; a node that slept through a rotation is told to join again.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lifecycle::*;
use common::*;
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::pin::Pin;

/// Phases a completed rotation goes through, in order.
/// Time allowed for the fleet to settle before the rotation starts.
const SETTLE: Duration = Duration::from_secs(90);
const PHASES: [&str; 4] = ["init", "update_clients", "update_servers", "standby"];

/// The identity files of a set of hosts, by name.
fn identities(nodes: &[Node], proxies: &[ProxyNode]) -> Vec<(String, PathBuf)> {
    let n = nodes
        .iter()
        .map(|n| (n.name.clone(), node_identity_path(n)));
    let p = proxies
        .iter()
        .map(|p| (p.name.clone(), proxy_identity_path(p)));
    n.chain(p).collect()
}

/// Waits until every identity trusts exactly the CAs pinned by `pins`.
fn wait_trust(hosts: &[(String, PathBuf)], pins: &[&str], timeout: Duration) {
    let want: BTreeSet<String> = pins.iter().map(|p| p.to_string()).collect();
    wait_for(
        timeout,
        &format!("every host to trust exactly {want:?}"),
        || {
            hosts
                .iter()
                .all(|(_, path)| {
                    let pins = ca_pins(&read_identity(path));
                    pins.len() == want.len() && pins.into_iter().collect::<BTreeSet<_>>() == want
                })
                .then_some(())
        },
    );
}

/// Every host's certificate verifies against the CA pinned by `pin` (which it must hold).
fn all_signed_by(hosts: &[(String, PathBuf)], pin: &str) -> bool {
    hosts.iter().all(|(_, path)| {
        let id = read_identity(path);
        ca_pem_with_pin(&id, pin).is_some_and(|ca| verifies(&id.cert_pem, &ca))
    })
}

/// The `phase` of every `ca.rotation` event, oldest first (and each event's mode).
fn rotation_phases(c: &Cluster) -> Vec<(String, String)> {
    events(&audit(c), "ca.rotation")
        .iter()
        .map(|e| {
            (
                e["phase"].as_str().unwrap_or_default().to_string(),
                e["mode"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `tctl auth rotate --type=host --manual --phase=PHASE`.
fn manual(c: &Cluster, phase: &str) {
    c.tctl_ok(&[
        "auth",
        "rotate",
        "--type=host",
        "--manual",
        &format!("--phase={phase}"),
    ]);
}

#[test]
fn a_semi_automatic_rotation_moves_ten_tunnelled_nodes_and_two_proxies_to_the_new_ca_without_dropping_any(
) {
    let mut f = Fleet::start("", 2);
    let token = f.c.token("node", "30m");
    let pin = f.c.pin();
    let names: Vec<String> = (0..10).map(|i| format!("fleet-{i}")).collect();
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|name| {
            let mut n = Node::new(name);
            start_node_via(&mut n, &f.lb.addr(), &token, &pin, &diag_addr());
            n
        })
        .collect();
    // Alone, ten agents reach both proxies behind the round-robin balancer in seconds; under the
    // whole suite on two cores their redials can take longer. The rotation is what is tested.
    wait_for(SETTLE, "all ten nodes listed with two tunnels", || {
        let listed = f.c.nodes();
        names
            .iter()
            .all(|name| {
                listed.iter().any(|n| {
                    n["hostname"] == name.as_str()
                        && n["tunnels"].as_array().map(Vec::len) == Some(2)
                })
            })
            .then_some(())
    });
    let original_ca = read_identity(&node_identity_path(&nodes[0])).ca_pems[0].clone();
    assert_eq!(status_pins(&f.c), vec![pin.clone()]);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let watch = NodeWatch::start(&f.c, &refs);

    let started = Instant::now();
    f.c.tctl_ok(&["auth", "rotate", "--type=host", "--grace-period=12s"]);
    // Poll the status until one pin is left, and it is a new one.
    let mut both: Option<Vec<String>> = None;
    let new_pin = wait_for(Duration::from_secs(60), "the rotation to complete", || {
        std::thread::sleep(Duration::from_millis(150));
        let pins = status_pins(&f.c);
        match pins.len() {
            2 if both.is_none() => {
                assert!(pins.contains(&pin), "the original pin left early: {pins:?}");
                // A node joining now must accept both CAs: the join line names both pins.
                let added = f.c.tctl_ok(&["tokens", "add", "--type=node"]);
                for p in &pins {
                    assert!(
                        added.contains(&format!("--ca-pin={p}")),
                        "{p} not in:\n{added}"
                    );
                }
                both = Some(pins);
                None
            }
            1 if pins[0] != pin => Some(pins[0].clone()),
            1 | 2 => None,
            _ => panic!("tctl status shows {} CA pins: {pins:?}", pins.len()),
        }
    });
    let took = started.elapsed();
    let both = both.expect("tctl status never showed two CA pins during the rotation");
    assert!(
        both.contains(&new_pin),
        "{new_pin} was not the second pin {both:?}"
    );
    assert!(
        took >= Duration::from_secs(10),
        "the rotation ended after {took:?}, before its 12 s grace period"
    );

    // Every host ends with the new CA alone and a certificate it signed.
    let hosts = identities(&nodes, &f.proxies);
    wait_trust(&hosts, &[&new_pin], T);
    for (who, path) in &hosts {
        let id = read_identity(path);
        let ca = ca_pem_with_pin(&id, &new_pin).unwrap();
        assert!(
            verifies(&id.cert_pem, &ca),
            "{who}'s certificate is not of the new CA"
        );
        assert!(
            !verifies(&id.cert_pem, &original_ca),
            "{who}'s certificate still verifies against the old CA"
        );
    }
    watch.finish();
    for n in nodes.iter_mut() {
        assert_running(n.proc());
    }
    for p in f.proxies.iter_mut() {
        assert_running(p.proc());
    }
    assert_eq!(status_pins(&f.c), vec![new_pin]);
    let phases = rotation_phases(&f.c);
    assert_eq!(
        phases.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        PHASES,
        "ca.rotation events"
    );
    assert!(phases.iter().all(|(_, m)| m == "auto"), "{phases:?}");
}

#[test]
fn a_manual_rotation_rolled_back_from_update_clients_returns_every_host_to_the_original_ca() {
    let c = cluster("");
    let mut p = c.proxy_config("solo-proxy", "127.0.0.1", "");
    let p_addr = p.addr();
    p.start();
    c.wait_proxy_listed("solo-proxy");
    let pin = c.pin();
    let mut tunnelled = Node::new("rb-tunnelled");
    start_node_via(
        &mut tunnelled,
        &p_addr,
        &c.token("node", "30m"),
        &pin,
        &diag_addr(),
    );
    let (direct, _) = direct_node(&c, "rb-direct", &diag_addr());
    c.wait_tunnels("rb-tunnelled", 1, T);
    c.wait_node("rb-direct", T);
    let watch = NodeWatch::start(&c, &["rb-tunnelled", "rb-direct"]);
    let nodes = [tunnelled, direct];
    let node_ids = identities(&nodes, &[]);
    let hosts = identities(&nodes, std::slice::from_ref(&p));

    manual(&c, "init");
    let pins = status_pins(&c);
    assert_eq!(pins.len(), 2, "tctl status during init: {pins:?}");
    assert!(pins.contains(&pin), "{pins:?}");
    let new_pin = pins.iter().find(|p| **p != pin).unwrap().clone();

    // In update_clients the nodes (clients) trust both CAs and hold certificates of the new
    // one.
    manual(&c, "update_clients");
    wait_trust(&node_ids, &[&pin, &new_pin], T);
    wait_for(T, "the nodes to hold certificates of the new CA", || {
        all_signed_by(&node_ids, &new_pin).then_some(())
    });

    manual(&c, "rollback");
    manual(&c, "standby");
    wait_trust(&hosts, &[&pin], T);
    wait_for(
        T,
        "every host to hold a certificate of the original CA",
        || all_signed_by(&hosts, &pin).then_some(()),
    );
    assert_eq!(status_pins(&c), vec![pin.clone()]);
    watch.finish();
    let [mut tunnelled, mut direct] = nodes;
    for n in [&mut tunnelled, &mut direct] {
        assert_running(n.proc());
    }
    assert_running(p.proc());
    let phases = rotation_phases(&c);
    let want = ["init", "update_clients", "rollback", "standby"];
    assert_eq!(
        phases.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        want,
        "ca.rotation events"
    );
    assert!(phases.iter().all(|(_, m)| m == "manual"), "{phases:?}");
}

#[test]
fn nodes_offline_for_a_whole_rotation_exit_telling_to_join_again() {
    let c = cluster("");
    let mut p = c.proxy_config("awake-proxy", "127.0.0.1", "");
    let p_addr = p.addr();
    p.start();
    c.wait_proxy_listed("awake-proxy");
    let pin = c.pin();
    let mut tunnelled = Node::new("asleep-tunnelled");
    start_node_via(
        &mut tunnelled,
        &p_addr,
        &c.token("node", "30m"),
        &pin,
        &diag_addr(),
    );
    let (mut direct, direct_args) = direct_node(&c, "asleep-direct", &diag_addr());
    c.wait_tunnels("asleep-tunnelled", 1, T);
    c.wait_node("asleep-direct", T);
    for n in [&mut tunnelled, &mut direct] {
        let (st, _) = n.proc().stop();
        assert!(st.success(), "{} did not stop cleanly", n.name);
    }

    // The proxy stays online and is given time to take its new certificate before the old CA
    // is dropped, as an operator would.
    let proxy_id = vec![(p.name.clone(), proxy_identity_path(&p))];
    manual(&c, "init");
    let new_pin = status_pins(&c).into_iter().find(|p| *p != pin).unwrap();
    manual(&c, "update_clients");
    manual(&c, "update_servers");
    wait_for(T, "the proxy to hold a certificate of the new CA", || {
        all_signed_by(&proxy_id, &new_pin).then_some(())
    });
    manual(&c, "standby");
    assert_eq!(status_pins(&c), vec![new_pin.clone()]);

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
        let (st, log) = n.run_expect_exit(&args);
        assert!(
            !st.success(),
            "{} started after the rotation:\n{log}",
            n.name
        );
        assert!(
            log.contains("join again"),
            "\"join again\" not in the log of {}:\n{log}",
            n.name
        );
        assert!(!c.has_node(&n.name));
    }
    assert_running(p.proc());
}

/// Every `CA pin` row of `tctl status`.
fn status_pins(c: &Cluster) -> Vec<String> {
    c.tctl_ok(&["status"])
        .lines()
        .filter_map(|l| l.strip_prefix("CA pin").map(|p| p.trim().to_string()))
        .collect()
}

/// The CA certificate of an identity whose pin is `pin`.
fn ca_pem_with_pin(id: &Identity, pin: &str) -> Option<String> {
    id.ca_pems.iter().find_map(|pem| {
        let der = teleport_lite::pki::certs_from_pem(pem).ok()?.remove(0);
        (Pin::of_cert(&der).ok()?.to_string() == pin).then(|| pem.clone())
    })
}

/// `openssl verify -CAfile CA CERT`: does `cert_pem` chain to `ca_pem` (and is it valid now)?
fn verifies(cert_pem: &str, ca_pem: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"));
    fs::write(&ca, ca_pem).unwrap();
    fs::write(&cert, cert_pem).unwrap();
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca)
        .arg(&cert)
        .output()
        .unwrap()
        .status
        .success()
}
