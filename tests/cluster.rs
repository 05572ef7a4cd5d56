//! Auth durability, presence, tokens and tctl output.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn auth_survives_sigkill_with_ca_pin_and_tokens_and_nodes_come_back() {
    let mut c = Cluster::start();
    let pin = c.pin();
    let t1 = c.token("node", "30m");
    let t2 = c.token("proxy,node", "1h");
    let before = c.tctl_ok(&["tokens", "ls", "--format=json"]);
    let mut n = Node::new("survivor");
    n.start(&c, &t1, &pin);
    c.wait_node("survivor", T);

    c.auth().kill9();
    c.start_auth();
    assert_eq!(c.pin(), pin, "the CA pin changed across a restart");
    assert_eq!(c.tctl_ok(&["tokens", "ls", "--format=json"]), before);
    // The running node reconnects by itself.
    c.wait_node("survivor", T);
    assert!(n.proc().running());
    // And both tokens still admit new nodes.
    let mut m = Node::new("after");
    m.start(&c, &t2, &pin);
    c.wait_node("after", T);
}

#[test]
fn silent_node_death_drops_it_within_a_few_intervals() {
    let c = Cluster::start();
    let mut n = Node::new("doomed");
    n.start(&c, &c.token("node", "5m"), &c.pin());
    c.wait_node("doomed", T);
    n.proc().kill9();
    // Heartbeat interval is 500 ms here: gone after ~3 intervals.
    let t = std::time::Instant::now();
    c.wait_node_gone("doomed", Duration::from_secs(10));
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "dropped before its TTL"
    );
}

#[test]
fn token_never_appears_in_auth_storage_or_logs() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let mut n = Node::new("secretive");
    n.start(&c, &token, &c.pin());
    c.wait_node("secretive", T);
    // A failed join with a wrong-type token must not log it either.
    let bad = c.token("proxy", "10m");
    let mut m = Node::new("wrongtype");
    let args = m.start_args(&c, &bad, &c.pin());
    let (st, _) = m.run_expect_exit(&args);
    assert!(!st.success());

    for secret in [&token, &bad] {
        for (path, bytes) in all_bytes_under(&c.path().join("auth")) {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "token found in {}",
                path.display()
            );
        }
        for log in [
            c.auth.as_ref().unwrap().log_text(),
            n.proc().log_text(),
            m.proc().log_text(),
        ] {
            assert!(
                !log.contains(secret.as_str()),
                "token found in a log:\n{log}"
            );
        }
    }
    let ls = c.tctl_ok(&["tokens", "ls"]);
    assert!(!ls.contains(&token) && !ls.contains(&bad), "{ls}");
}

#[test]
fn static_tokens_join_never_expire_and_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "file-token-value-1\n").unwrap();
    let extra = format!(
        "  tokens:\n  - 'proxy,node:secret-token-value'\n  - 'node:{}'\n",
        file.display()
    );
    let c = Cluster::start_with(&extra, false);
    let ls = c.tctl_ok(&["tokens", "ls"]);
    assert_eq!(ls.matches("never").count(), 2, "{ls}");
    assert!(!ls.contains("secret-token-value"), "{ls}");
    let rm = c.tctl(&["tokens", "rm", "secret-token-value"]);
    assert!(!rm.status.success());
    assert!(text(&rm).contains("statically configured"), "{}", text(&rm));

    let mut a = Node::new("static-a");
    a.start(&c, "secret-token-value", &c.pin());
    let mut b = Node::new("static-b");
    b.start(&c, "file-token-value-1", &c.pin());
    c.wait_node("static-a", T);
    c.wait_node("static-b", T);
}

#[test]
fn all_in_one_process_lists_its_own_node() {
    let c = Cluster::start_with("", true);
    c.wait_node("authhost", T);
    let status = c.tctl_ok(&["status"]);
    // Keys are aligned to the longest one, so compare each row's words.
    let row = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    assert_eq!(row("Cluster "), CLUSTER_NAME, "{status}");
    assert_eq!(row("host CA "), "standby (never rotated)", "{status}");
    let pin_line = status.lines().find(|l| l.starts_with("CA pin")).unwrap();
    let pin = pin_line.split_whitespace().last().unwrap();
    assert!(pin.starts_with("sha256:") && pin.len() == 71, "{pin}");
}

#[test]
fn tokens_add_formats_and_ls_columns() {
    let c = Cluster::start();
    let out = c.tctl_ok(&["tokens", "add", "--type=node", "--ttl=5m"]);
    assert!(out.starts_with("The invite token: "), "{out}");
    assert!(
        out.contains("This token will expire in 5 minutes."),
        "{out}"
    );
    assert!(out.contains("--roles=node"), "{out}");
    assert!(out.contains(&format!("--ca-pin={}", c.pin())), "{out}");
    assert!(
        out.contains(&format!("--auth-server={}", c.addr())),
        "{out}"
    );
    let token = out
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("The invite token: ");
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|ch| ch.is_ascii_hexdigit()));

    let json = c.tctl_ok(&["tokens", "add", "--type=proxy,node", "--format=json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["roles"], serde_json::json!(["Node", "Proxy"]));
    assert!(v["expires"].as_str().unwrap().ends_with('Z'));

    let nodes_add = c.tctl_ok(&["nodes", "add", "--ttl=5m", "--roles=proxy"]);
    assert!(nodes_add.contains("--roles=proxy"), "{nodes_add}");

    let ls = c.tctl_ok(&["tokens", "ls"]);
    let header = ls.lines().next().unwrap();
    for col in ["Token", "Type", "Labels", "Expiry Time (UTC)"] {
        assert!(header.contains(col), "{ls}");
    }
    assert!(ls.contains("Node,Proxy"), "{ls}");
    assert!(ls.contains(" UTC ("), "{ls}");
    assert!(!ls.contains(token), "{ls}");
    assert!(
        ls.contains(&token[28..]),
        "masked token keeps the last 4: {ls}"
    );

    // Removing by the public ID works too.
    let lsj: serde_json::Value =
        serde_json::from_str(&c.tctl_ok(&["tokens", "ls", "--format=json"])).unwrap();
    let id = lsj[0]["id"].as_str().unwrap().to_string();
    c.tctl_ok(&["tokens", "rm", &id]);
    let lsj: serde_json::Value =
        serde_json::from_str(&c.tctl_ok(&["tokens", "ls", "--format=json"])).unwrap();
    assert!(lsj
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != id.as_str()));

    let bad = c.tctl(&["tokens", "add", "--type=nodes"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("unknown token type"), "{}", text(&bad));
    let missing = c.tctl(&["tokens", "rm", "0123456789abcdef0123456789abcdef"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no such token"));
}

#[test]
fn tctl_without_identity_or_auth_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.yaml");
    std::fs::write(
        &cfg,
        format!(
            "version: v3\nteleport:\n  data_dir: {}\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let tctl = dir.path().join("tctl");
    std::os::unix::fs::symlink(bin(), &tctl).unwrap();
    let out = std::process::Command::new(&tctl)
        .args(["status", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no admin identity at"),
        "{}",
        text(&out)
    );

    // With an identity but auth down.
    let mut c = Cluster::start();
    c.auth().kill9();
    let out = c.tctl(&["status"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is the auth service running?"),
        "{}",
        text(&out)
    );
}
