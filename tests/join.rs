//! Joining a node straight to auth, as in the seed document.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn seed_walkthrough_configure_pin_edit_start_ls_and_graceful_stop() {
    let c = Cluster::start();
    let token = c.token("node", "5m");
    let pin = c.pin();
    let node = Node::new("web-1");
    let cfg = node.dir.path().join("teleport.yaml");

    // sudo teleport configure --roles=node --token=... --auth-server=... -o file
    let out = run(&[
        "configure",
        "--roles=node",
        &format!("--token={token}"),
        &format!("--auth-server={}", c.addr()),
        "--node-name=web-1",
        "--labels=env=test",
        &format!("--data-dir={}", node.data_dir().display()),
        "-o",
        &format!("file://{}", cfg.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("teleport start --config="));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The seed's own edit, verbatim: sed -i 's| ca_pin: ""| ca_pin: "PIN"|'
    let sed = std::process::Command::new("sed")
        .args([
            "-i",
            &format!("s| ca_pin: \"\"| ca_pin: \"{pin}\"|"),
            cfg.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(sed.success());
    assert!(fs::read_to_string(&cfg).unwrap().contains(&pin));

    let mut node = node;
    let cfg_s = cfg.to_string_lossy().to_string();
    node.spawn(&["start".into(), "-c".into(), cfg_s]);
    c.wait_node("web-1", T);

    let listed = c.tctl_ok(&["nodes", "ls"]);
    let header = listed.lines().next().unwrap();
    for col in ["Host", "UUID", "Public Address", "Labels", "Version"] {
        assert!(header.contains(col), "{listed}");
    }
    assert!(listed.contains("env=test"), "{listed}");
    let uuid = fs::read_to_string(node.data_dir().join("host_uuid")).unwrap();
    assert!(listed.contains(uuid.trim()), "{listed}");

    // Graceful stop: exit 0 within 2 s, and the node leaves the list at once.
    let (status, took) = node.proc().stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(
        !c.has_node("web-1"),
        "node still listed right after a graceful stop"
    );
    assert!(node.proc().log_text().contains("said goodbye"));
}

#[test]
fn two_nodes_join_with_one_token_and_restart_without_it() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let pin = c.pin();
    let mut a = Node::new("node-a");
    let mut b = Node::new("node-b");
    a.start(&c, &token, &pin);
    b.start(&c, &token, &pin);
    c.wait_node("node-a", T);
    c.wait_node("node-b", T);
    let uuids: Vec<String> = c
        .nodes()
        .iter()
        .map(|n| n["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(uuids.len(), 2);
    assert_ne!(uuids[0], uuids[1]);

    // Remove the token, then restart node-a: its stored identity needs no token.
    a.proc().stop();
    c.wait_node_gone("node-a", T);
    c.tctl_ok(&["tokens", "rm", &token]);
    let args = vec![
        "start".to_string(),
        "--roles=node".into(),
        format!("--auth-server={}", c.addr()),
        format!("--data-dir={}", a.data_dir().display()),
        "--nodename=node-a".into(),
    ];
    a.spawn(&args);
    c.wait_node("node-a", T);
    assert!(a.proc().log_text().contains("using the identity stored in"));
}

#[test]
fn removed_token_cannot_join() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let pin = c.pin();
    let out = c.tctl_ok(&["tokens", "rm", &token]);
    assert!(out.contains("has been deleted"), "{out}");
    assert!(!out.contains(&token), "rm echoed the secret: {out}");
    let mut n = Node::new("late");
    let args = n.start_args(&c, &token, &pin);
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert!(log.contains("the token is not valid"), "{log}");
    assert!(
        n.data_files().is_empty(),
        "files written: {:?}",
        n.data_files()
    );
}

#[test]
fn proxy_token_is_refused_for_a_node() {
    let c = Cluster::start();
    let token = c.token("proxy", "10m");
    let mut n = Node::new("n");
    let args = n.start_args(&c, &token, &c.pin());
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert!(
        log.contains("does not allow joining as Node (it allows Proxy)"),
        "{log}"
    );
    assert!(log.contains("--type=node"), "{log}");
    assert!(n.data_files().is_empty());
}

#[test]
fn expired_token_is_refused() {
    let c = Cluster::start();
    let token = c.token("node", "1s");
    // Wait until auth itself no longer lists the token as live.
    wait_for(T, "token to expire", || {
        let ls = c.tctl_ok(&["tokens", "ls", "--format=json"]);
        let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
        v.as_array().unwrap().is_empty().then_some(())
    });
    let mut n = Node::new("n");
    let args = n.start_args(&c, &token, &c.pin());
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert!(log.contains("the token expired at"), "{log}");
}

#[test]
fn wrong_pin_is_refused_and_nothing_is_written() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let real = c.pin();
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let mut n = Node::new("n");
    let args = n.start_args(&c, &token, &wrong);
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert!(log.contains("CA pin mismatch"), "{log}");
    assert!(
        log.contains(&real),
        "the error should show the pin seen: {log}"
    );
    assert!(log.contains("tctl status"), "{log}");
    assert!(
        n.data_files().is_empty(),
        "files written: {:?}",
        n.data_files()
    );
    assert!(!c.has_node("n"));
}

#[test]
fn no_pin_is_refused_unless_insecure() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let mut n = Node::new("ins");
    let mut args: Vec<String> = n
        .start_args(&c, &token, "x")
        .into_iter()
        .filter(|a| !a.starts_with("--ca-pin"))
        .collect();
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert!(log.contains("refusing to join without verifying"), "{log}");
    assert!(log.contains("--insecure"), "{log}");
    assert!(n.data_files().is_empty());

    args.push("--insecure".into());
    n.spawn(&args);
    c.wait_node("ins", T);
    assert!(n.proc().log_text().contains("INSECURE"));
}

#[test]
fn single_use_token_admits_exactly_one_of_concurrent_joins() {
    let c = Cluster::start();
    // bot tokens are single-use; a bot,node token lets nodes race for it.
    let token = c.token("bot,node", "10m");
    let pin = c.pin();
    let mut nodes: Vec<Node> = (0..4).map(|i| Node::new(&format!("racer-{i}"))).collect();
    for n in nodes.iter_mut() {
        n.start(&c, &token, &pin);
    }
    // Each process either joins (and keeps running) or exits with the refusal.
    wait_for(T, "every racer to join or fail", || {
        nodes
            .iter_mut()
            .all(|n| {
                let p = n.proc();
                !p.running() || p.log_text().contains("first heartbeat acknowledged")
            })
            .then_some(())
    });
    let joined = nodes
        .iter()
        .filter(|n| {
            n.proc
                .as_ref()
                .unwrap()
                .log_text()
                .contains("first heartbeat acknowledged")
        })
        .count();
    assert_eq!(joined, 1);
    for n in nodes.iter_mut() {
        if !n.proc().log_text().contains("first heartbeat acknowledged") {
            assert!(n.proc().log_text().contains("the token is not valid"));
            assert!(n.data_files().is_empty());
        }
    }
}

#[test]
fn unreachable_auth_is_retried_until_it_comes_up() {
    // The node starts first and waits for auth, saying what it waits for.
    let mut c = Cluster::start();
    let token = c.token("node", "10m");
    let pin = c.pin();
    let (st, _) = c.auth().stop();
    assert!(st.success());
    let mut n = Node::new("early");
    n.start(&c, &token, &pin);
    n.proc().wait_log(
        &format!(
            "waiting for the auth server at {} to join the cluster",
            c.addr()
        ),
        T,
    );
    assert!(n.data_files().is_empty());
    c.start_auth();
    c.wait_node("early", T);
}

#[test]
fn token_from_a_file_works() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let mut n = Node::new("filetok");
    let tf = n.dir.path().join("token");
    fs::write(&tf, format!("{token}\n")).unwrap();
    let args: Vec<String> = n
        .start_args(&c, &token, &c.pin())
        .into_iter()
        .map(|a| {
            if a.starts_with("--token=") {
                format!("--token={}", tf.display())
            } else {
                a
            }
        })
        .collect();
    n.spawn(&args);
    c.wait_node("filetok", T);
}
