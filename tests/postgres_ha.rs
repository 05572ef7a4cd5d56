//! Two auth servers on one PostgreSQL act as one cluster (issue 12): two proxies behind
//! HAProxy, each given both auth servers (in opposite orders, so they link to different ones),
//! five nodes through the load balancer. A lock, a node removal and a rotation phase set on
//! one auth server are seen on the other within a second (measured); every node is listed on
//! both. SIGKILL one auth server: the other keeps listing every node, serves joins (also with
//! a token made before the kill) and locks; the restarted one catches up. PostgreSQL stopped
//! for 10 s: both auth servers report not ready, the nodes keep their tunnels, one auth server
//! restarted meanwhile waits for the database, and everything recovers when it returns.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::lifecycle::*;
use common::pg::PgServer;
use common::*;

/// The generous bound asserted on propagation between auth servers (the goal is 1 s).
const PROPAGATION: Duration = Duration::from_secs(3);
/// How long after a lock on the survivor the node's tunnels must be closed.
const CUT_OFF: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(10);

fn auth(url: &str) -> (Cluster, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let diag = diag_addr();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\n  diag_addr: {diag}\n  \
         storage:\n    type: postgresql\n    conn_string: \"{url}\"\nauth_service:\n  \
         enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
         heartbeat_interval: 500ms\nssh_service:\n  enabled: no\n",
        dir.path().join("auth").display(),
    );
    (Cluster::launch(dir, port, &yaml), diag)
}

/// A proxy joined through `c`, whose link tries the auth servers in the order given.
fn proxy(c: &Cluster, name: &str, public: &str, auths: [&Cluster; 2]) -> ProxyNode {
    let p = c.proxy_config(name, public, "");
    let yaml = std::fs::read_to_string(&p.config).unwrap();
    let list = format!("auth_server: [{}, {}]", auths[0].addr(), auths[1].addr());
    let yaml = yaml.replace(&format!("auth_server: {}", c.addr()), &list);
    assert!(yaml.contains(&list), "{yaml}");
    std::fs::write(&p.config, yaml).unwrap();
    p
}

/// The HTTP status `/readyz` answers, if anything answers.
fn readyz(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until `done`, failing after `limit`; returns how long it took from `since`.
fn measure(
    since: Instant,
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Duration {
    loop {
        if done() {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_has(c: &Cluster, needle: &str) -> bool {
    c.tctl(&["status"]).status.success() && c.tctl_ok(&["status"]).contains(needle)
}

#[test]
fn two_auth_servers_on_one_postgresql_act_as_one_cluster_through_a_kill_and_an_outage() {
    let pg = PgServer::start();
    pg.create_db("ha", "trusted");
    let url = pg.url("trusted", None, "ha", "sslmode=disable");
    let (mut a, diag_a) = auth(&url);
    let (mut b, diag_b) = auth(&url);
    let pin = a.pin();
    assert_eq!(b.pin(), pin, "one CA");

    let lb_port = free_port();
    let lb_addr = format!("127.0.0.1:{lb_port}");
    let mut p1 = proxy(&a, "proxy-1", &lb_addr, [&a, &b]);
    let mut p2 = proxy(&a, "proxy-2", &lb_addr, [&b, &a]);
    p1.start();
    p2.start();
    let lb = HaProxy::start_on(lb_port, &[p1.port, p2.port], "roundrobin");
    for c in [&a, &b] {
        c.wait_proxy_listed("proxy-1");
        c.wait_proxy_listed("proxy-2");
    }
    lb.wait_up(2);
    p1.proc()
        .wait_log(&format!("link to auth at {} is up", a.addr()), T);
    p2.proc()
        .wait_log(&format!("link to auth at {} is up", b.addr()), T);

    // Five nodes through the load balancer; each holds a tunnel to both proxies, and each
    // auth server lists both (one it relays itself, one the other auth server wrote).
    let token = a.token("node", "30m");
    let kept = a.token("node", "1h");
    let names: Vec<String> = (0..5).map(|i| format!("ha-node-{i}")).collect();
    let mut nodes = Vec::new();
    let mut diags = Vec::new();
    for name in &names {
        let (mut n, diag) = (Node::new(name), diag_addr());
        start_node_via(&mut n, &lb_addr, &token, &pin, &diag);
        nodes.push(n);
        diags.push(diag);
    }
    for name in &names {
        for c in [&a, &b] {
            assert_eq!(c.wait_tunnels(name, 2, T), vec!["proxy-1", "proxy-2"]);
        }
    }

    // A lock on A: B knows it and both proxies close the node's tunnels.
    let uuid0 = node_uuid(&a, "ha-node-0");
    a.tctl_ok(&["lock", &format!("--server-id={uuid0}"), "--message=ha"]);
    let t = Instant::now();
    let seen = measure(t, PROPAGATION, "the lock listed on B", || {
        b.tctl_ok(&["locks", "ls"]).contains(&uuid0)
    });
    println!("MEASURE lock set on A seen on B after {seen:?}");
    let cut = measure(t, CUT_OFF, "the locked node's tunnels closed", || {
        metric(&diags[0], TUNNELS_HELD) == Some(0.0)
    });
    println!("MEASURE lock set on A closed both tunnels after {cut:?}");
    measure(t, PROPAGATION, "the locked node gone on B", || {
        !is_listed(&b, "ha-node-0")
    });

    // A removal on A: gone on B.
    a.tctl_ok(&["nodes", "rm", "ha-node-1"]);
    let t = Instant::now();
    let seen = measure(t, PROPAGATION, "the removed node gone on B", || {
        !is_listed(&b, "ha-node-1")
    });
    println!("MEASURE node removed on A gone on B after {seen:?}");

    // A rotation phase set on A is B's phase; moved on from B, seen on A.
    let rotate = |c: &Cluster, phase: &str| {
        c.tctl_ok(&[
            "auth",
            "rotate",
            "--type=host",
            "--manual",
            &format!("--phase={phase}"),
        ]);
    };
    rotate(&a, "init");
    let t = Instant::now();
    let seen = measure(t, PROPAGATION, "phase init on B", || {
        status_has(&b, "phase init")
    });
    println!("MEASURE rotation phase set on A seen on B after {seen:?}");
    measure(t, PROPAGATION, "two pins on B", || b.pins().contains(','));
    rotate(&b, "rollback");
    measure(Instant::now(), PROPAGATION, "phase rollback on A", || {
        status_has(&a, "phase rollback")
    });
    rotate(&a, "standby");
    measure(Instant::now(), PROPAGATION, "standby on B", || {
        status_has(&b, "standby (")
    });
    assert_eq!(b.pin(), pin, "a rollback keeps the CA");
    let alive: Vec<String> = names[2..].to_vec();
    for name in &alive {
        assert_eq!(b.wait_tunnels(name, 2, T), vec!["proxy-1", "proxy-2"]);
    }

    // SIGKILL A. B keeps listing every node, and serves all of them once proxy-1 moved over.
    a.auth().kill9();
    let killed = Instant::now();
    let served = measure(killed, T, "every node served by B alone", || {
        let listed = b.node_names();
        for name in &alive {
            assert!(listed.contains(name), "{name} vanished from B: {listed:?}");
        }
        p1.proc()
            .log_text()
            .contains(&format!("link to auth at {} re-established", b.addr()))
            && alive
                .iter()
                .all(|n| b.tunnels_of(n).is_some_and(|t| t.len() == 2))
    });
    println!("MEASURE SIGKILL of auth A to proxy-1 linked to B, every node listed: {served:?}");
    // Once A's presence records have expired, B still lists every node with both tunnels:
    // it serves them itself.
    let a_id = std::fs::read_to_string(a.path().join("auth").join("host_uuid")).unwrap();
    let a_records = format!(
        "SELECT count(*) FROM kv WHERE key LIKE 'presence/%/{}' \
         AND expires > extract(epoch from now())",
        a_id.trim()
    );
    let alone = measure(killed, T, "B alone listing every node", || {
        pg.psql_in("ha", &a_records).trim() == "0"
            && alive
                .iter()
                .all(|n| b.tunnels_of(n).is_some_and(|t| t.len() == 2))
    });
    println!("MEASURE SIGKILL of auth A to every node served by B alone: {alone:?}");
    let proxies = b.proxies();
    assert_eq!(proxies.len(), 2, "{proxies:?}");

    // Joins go on: a new token from B, and one made on A before the kill.
    let fresh = b.token("node", "30m");
    for (name, tok) in [("ha-node-5", &fresh), ("ha-node-6", &kept)] {
        let (mut n, diag) = (Node::new(name), diag_addr());
        start_node_via(&mut n, &lb_addr, tok, &pin, &diag);
        assert_eq!(b.wait_tunnels(name, 2, T), vec!["proxy-1", "proxy-2"]);
        nodes.push(n);
        diags.push(diag);
    }

    // A lock on the survivor cuts a node off both proxies.
    let uuid2 = node_uuid(&b, "ha-node-2");
    b.tctl_ok(&["lock", &format!("--server-id={uuid2}"), "--message=ha"]);
    let t = Instant::now();
    let cut = measure(t, CUT_OFF, "node 2's tunnels closed", || {
        metric(&diags[2], TUNNELS_HELD) == Some(0.0)
    });
    println!("MEASURE lock on the survivor closed both tunnels after {cut:?}");

    // A restarts and catches up: the same nodes, the locks.
    a.start_auth();
    let alive: Vec<String> = ["ha-node-3", "ha-node-4", "ha-node-5", "ha-node-6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in &alive {
        a.wait_tunnels(name, 2, T);
    }
    let locks = a.tctl_ok(&["locks", "ls"]);
    assert!(locks.contains(&uuid0) && locks.contains(&uuid2), "{locks}");
    assert!(!is_listed(&a, "ha-node-1") && !is_listed(&a, "ha-node-2"));
    wait_for(T, "both auth servers ready", || {
        (readyz(&diag_a) == Some(200) && readyz(&diag_b) == Some(200)).then_some(())
    });

    // PostgreSQL stops for 10 s: not ready, the tunnels stay, memory still answers.
    pg.stop();
    let stopped = Instant::now();
    let unready = measure(stopped, OUTAGE, "both auth servers not ready", || {
        readyz(&diag_a) == Some(503) && readyz(&diag_b) == Some(503)
    });
    println!("MEASURE PostgreSQL stopped: not ready after {unready:?}");
    assert!(is_listed(&b, "ha-node-3"), "B lists from memory");
    // B restarts while the database is down: it waits for it, not ready, saying why.
    b.auth().kill9();
    let cfg = b.config.display().to_string();
    b.auth = Some(Proc::spawn("auth", b.dir.path(), &["start", "-c", &cfg]));
    b.auth().wait_log("retrying until it does", T);
    wait_for(T, "the restarted B to answer not ready", || {
        (readyz(&diag_b) == Some(503)).then_some(())
    });
    while stopped.elapsed() < OUTAGE {
        for (i, d) in diags.iter().enumerate().skip(3) {
            assert_eq!(metric(d, TUNNELS_HELD), Some(2.0), "node {i} lost a tunnel");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pg.restart();
    let back = Instant::now();
    let ready = measure(back, T, "both auth servers ready again", || {
        readyz(&diag_a) == Some(200) && readyz(&diag_b) == Some(200)
    });
    println!("MEASURE PostgreSQL back: ready after {ready:?}");
    for n in nodes.iter_mut().skip(3) {
        assert_running(n.proc());
    }
    assert!(a.auth().running() && b.auth().running());
    // B, started during the outage, catches up from the database and A's presence records.
    for name in &alive {
        b.wait_tunnels(name, 2, T);
    }
    // Writes work again on both: a token made on B joins a node, listed on A.
    let after = b.token("node", "30m");
    let (mut n, diag) = (Node::new("ha-node-7"), diag_addr());
    start_node_via(&mut n, &lb_addr, &after, &pin, &diag);
    assert_eq!(
        a.wait_tunnels("ha-node-7", 2, T),
        vec!["proxy-1", "proxy-2"]
    );

    // A semi-automatic rotation: both auth servers check every second whether a phase is due,
    // exactly one moves each phase on, the other adopts it; it ends with one new CA on both.
    a.tctl_ok(&["auth", "rotate", "--type=host", "--grace-period=6s"]);
    let new_pin = wait_for(T, "the rotation to end on both", || {
        let (pa, pb) = (a.pin(), b.pin());
        (pa != pin && pa == pb && !status_has(&a, "in progress") && !status_has(&b, "in progress"))
            .then_some(pa)
    });
    let logs = [a.auth().log_text(), b.auth().log_text()];
    for phase in ["update_clients", "update_servers", "standby"] {
        let moved = format!("host CA rotation: phase {phase} (auto)");
        let adopted = format!("host CA rotation: phase {phase} (set by another auth server)");
        let count = |n: &str| logs.iter().map(|l| l.matches(n).count()).sum::<usize>();
        assert_eq!(count(&moved), 1, "{phase} moved once: {logs:?}");
        assert_eq!(count(&adopted), 1, "{phase} adopted once: {logs:?}");
    }
    for name in ["ha-node-3", "ha-node-7"] {
        assert_eq!(b.wait_tunnels(name, 2, T), vec!["proxy-1", "proxy-2"]);
    }
    assert_ne!(new_pin, pin);
}
