//! The real `teleport` as auth on PostgreSQL (`teleport.storage: {type: postgresql}`): over TLS
//! with verify-full and a SCRAM password, a node joins with a token, tctl lists tokens and
//! nodes, and after a restart the CA and tokens are still there; two auth servers started at
//! the same moment on an empty database both come up, with one schema and one CA; a database
//! auth cannot log in to stops it with the reason, one that does not answer is waited for.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::pg::{PgServer, PASSWORD};
use common::{free_port, wait_for, Cluster, Node, Proc, CLUSTER_NAME};

/// A fresh database owned by `teleport` (the SCRAM user), and its verify-full conn_string.
fn database() -> (&'static PgServer, String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let s = PgServer::shared();
    let db = format!(
        "auth{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    s.create_db(&db, "teleport");
    let ca = s.tls.as_ref().unwrap().ca.display().to_string();
    let query = format!("sslmode=verify-full&sslrootcert={ca}");
    let url = s.url("teleport", Some(PASSWORD), &db, &query);
    (s, db, url)
}

fn auth_yaml(dir: &Path, port: u16, url: &str) -> String {
    format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\n  storage:\n    \
         type: postgresql\n    conn_string: \"{url}\"\nauth_service:\n  enabled: yes\n  \
         listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
         heartbeat_interval: 500ms\nssh_service:\n  enabled: no\n",
        dir.join("auth").display(),
    )
}

#[test]
fn auth_on_postgresql_joins_nodes_and_keeps_its_state_across_a_restart() {
    let (s, db, url) = database();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = auth_yaml(dir.path(), port, &url);
    let mut c = Cluster::launch(dir, port, &yaml);

    // Which backend is in use, without the password.
    let status = c.tctl_ok(&["status"]);
    let shown = format!("postgresql://teleport:***@127.0.0.1:{}/{db}", s.port);
    assert!(
        status.contains("Storage") && status.contains(&shown),
        "{status}"
    );
    let log = c.auth().log_text();
    assert!(log.contains(&format!("auth storage: {shown}")), "{log}");
    let encoded = common::pg::encode(PASSWORD);
    for text in [&status, &log] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&encoded),
            "{text}"
        );
    }
    // Nothing went to SQLite.
    assert!(!c.path().join("auth").join("auth.db").exists());

    let pin = c.pin();
    let join_token = c.token("node", "30m");
    let kept = c.token("node", "1h");
    let mut node = Node::new("pg-node");
    node.start(&c, &join_token, &pin);
    c.wait_node("pg-node", Duration::from_secs(30));
    let tokens = c.tctl_ok(&["tokens", "ls"]);
    assert!(tokens.contains(&kept[kept.len() - 4..]), "{tokens}");
    // The state is in the database: the CA and the tokens (hashed: no token in clear).
    let keys = s.psql_in(&db, "SELECT key FROM kv ORDER BY key");
    assert!(keys.lines().any(|k| k == "authorities/host"), "{keys}");
    let dump = s.psql_in(&db, "SELECT key, encode(value, 'escape') FROM kv");
    assert!(!dump.contains(&kept), "a token is stored in clear");

    // Restart auth: same CA, the token is still there and still works.
    c.auth().stop();
    c.start_auth();
    assert_eq!(c.pin(), pin);
    let tokens = c.tctl_ok(&["tokens", "ls"]);
    assert!(tokens.contains(&kept[kept.len() - 4..]), "{tokens}");
    c.wait_node("pg-node", Duration::from_secs(30));
    let mut second = Node::new("pg-node-2");
    second.start(&c, &kept, &pin);
    c.wait_node("pg-node-2", Duration::from_secs(30));
}

#[test]
fn two_auth_servers_started_together_on_an_empty_database_share_one_schema_and_ca() {
    let (s, db, url) = database();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let mut configs = Vec::new();
    for (d, p) in dirs.iter().zip(ports) {
        let config = d.path().join("auth.yaml");
        fs::write(&config, auth_yaml(d.path(), p, &url)).unwrap();
        std::os::unix::fs::symlink(common::bin(), d.path().join("tctl")).unwrap();
        configs.push(config.display().to_string());
    }
    // Both spawned back to back, before either can have migrated.
    let mut procs: Vec<Proc> = dirs
        .iter()
        .zip(&configs)
        .map(|(d, cfg)| Proc::spawn("auth", d.path(), &["start", "-c", cfg]))
        .collect();
    let pins: Vec<String> = dirs
        .iter()
        .zip(&configs)
        .zip(procs.iter_mut())
        .map(|((d, cfg), p)| {
            let tctl = d.path().join("tctl");
            wait_for(
                Duration::from_secs(30),
                "auth to answer tctl status",
                || {
                    assert!(p.running(), "auth exited:\n{}", p.log_text());
                    let out = std::process::Command::new(&tctl)
                        .args(["-c", cfg, "status"])
                        .output()
                        .unwrap();
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    out.status.success().then(|| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("CA pin").map(|p| p.trim().to_string()))
                            .unwrap()
                    })
                },
            )
        })
        .collect();
    let versions = s.psql_in(&db, "SELECT version FROM schema_migrations");
    assert_eq!(versions.trim(), "1", "migrations ran once");
    assert_eq!(pins[0], pins[1], "one CA for both auth servers");
    let cas = s.psql_in(
        &db,
        "SELECT count(*) FROM kv WHERE key LIKE 'authorities/%'",
    );
    assert_eq!(cas.trim(), "1");
    let logs: Vec<String> = procs.iter().map(Proc::log_text).collect();
    let created = logs
        .iter()
        .filter(|l| l.contains("created the host CA"))
        .count();
    assert_eq!(created, 1, "{logs:?}");
}

#[test]
fn auth_refuses_to_start_on_a_database_it_cannot_use_and_says_why_without_the_password() {
    let (s, db, _) = database();
    let ca = s.tls.as_ref().unwrap().ca.display().to_string();
    let wrong_password = "Wr0ng-but-secret";
    let cases = [
        (
            s.url(
                "teleport",
                Some(wrong_password),
                &db,
                &format!("sslrootcert={ca}"),
            ),
            vec![
                "PostgreSQL at 127.0.0.1",
                "28P01",
                "check the user and password",
            ],
        ),
        (
            // The server's certificate does not name 127.0.0.2.
            s.url(
                "teleport",
                Some(wrong_password),
                &db,
                &format!("sslrootcert={ca}"),
            )
            .replace("127.0.0.1", "127.0.0.2"),
            vec!["PostgreSQL at 127.0.0.2", "certificate was refused"],
        ),
    ];
    for (url, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("auth.yaml");
        fs::write(&config, auth_yaml(dir.path(), free_port(), &url)).unwrap();
        let cfg = config.display().to_string();
        let mut auth = Proc::spawn("auth", dir.path(), &["start", "-c", &cfg]);
        let log = common::lifecycle::exits_with(&mut auth, &needles);
        assert!(!log.contains(wrong_password), "{log}");
    }
    // Nobody listening may be a database that is restarting: auth waits for it, saying why.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth.yaml");
    let url = format!(
        "postgresql://teleport:{wrong_password}@127.0.0.1:{}/x?sslmode=disable",
        free_port()
    );
    fs::write(&config, auth_yaml(dir.path(), free_port(), &url)).unwrap();
    let cfg = config.display().to_string();
    let mut auth = Proc::spawn("auth", dir.path(), &["start", "-c", &cfg]);
    auth.wait_log("retrying until it does", Duration::from_secs(20));
    let log = auth.log_text();
    assert!(log.contains("connection refused"), "{log}");
    assert!(!log.contains(wrong_password), "{log}");
    assert!(auth.running(), "auth gave up:\n{log}");
}
