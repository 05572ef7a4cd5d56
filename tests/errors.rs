//! What a node says, and whether it keeps trying, when the wrong thing answers at the address it
//! was given: a server of another kind (SSH, HTTP, a TLS server that is not ours) is named and
//! not retried; a server of another cluster is not blamed on the node's identity.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// A pin of the right shape that matches no CA: the join must fail before it is checked.
const SOME_PIN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A child process of the test's own (sshd, openssl), killed on drop; its files in the dir.
struct Other(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, dir: tempfile::TempDir) -> Other {
    let log = fs::File::create(dir.path().join("out.log")).unwrap();
    let child = cmd
        .stdin(Stdio::piped()) // s_server quits on end of stdin: keep it open
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps.sh installs the tools)"));
    Other(child, dir)
}

/// Debian's OpenSSH server on a free loopback port; ready once it sends its banner.
fn sshd() -> (Other, u16) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = fs::create_dir_all("/run/sshd"); // sshd run as root insists on it
    let port = free_port();
    let cfg = dir.path().join("sshd_config");
    fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\n",
            key.display(),
            dir.path().join("pid").display()
        ),
    )
    .unwrap();
    let other = spawn(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg),
        dir,
    );
    wait_for(T, "sshd to send its banner", || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let mut b = [0u8; 7];
        s.read_exact(&mut b).ok()?;
        (&b == b"SSH-2.0").then_some(())
    });
    (other, port)
}

/// `openssl s_server` with a self-signed certificate of its own: a TLS server, not ours (or a
/// TLS-intercepting box). Ready once it completes a handshake.
fn foreign_tls() -> (Other, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=interceptor", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let other = spawn(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
        dir,
    );
    wait_for(T, "openssl s_server to complete a handshake", || {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    (other, port)
}

fn node_args(data: &Path, flag: &str, addr: &str) -> Vec<String> {
    vec![
        "start".into(),
        "--roles=node".into(),
        "--token=0123456789abcdef0123456789abcdef".into(),
        format!("--ca-pin={SOME_PIN}"),
        format!("{flag}={addr}"),
        format!("--data-dir={}", data.display()),
        "--nodename=lost".into(),
    ]
}

/// The node exits (a person must act) with a message naming the address and what answered,
/// without having retried, and nothing was written.
fn exits_naming(n: &mut Node, args: &[String], addr: &str, what: &str) -> String {
    let (st, log) = n.run_expect_exit(args);
    assert!(!st.success(), "{log}");
    assert!(log.contains(addr), "{log}");
    assert!(log.contains(what), "{log}");
    assert!(log.contains("3025"), "the fix names the ports: {log}");
    assert!(!log.contains("retrying"), "{log}");
    assert!(!log.contains("0123456789abcdef0123456789abcdef"), "{log}");
    assert!(n.data_files().is_empty(), "{:?}", n.data_files());
    log
}

#[test]
fn an_ssh_server_at_the_auth_address_is_named_and_not_retried() {
    let (_sshd, port) = sshd();
    let addr = format!("127.0.0.1:{port}");
    let mut n = Node::new("lost");
    let args = node_args(&n.data_dir(), "--auth-server", &addr);
    exits_naming(&mut n, &args, &addr, "does not speak TLS");
}

#[test]
fn an_ssh_server_at_the_proxy_address_is_named_and_not_retried() {
    let (_sshd, port) = sshd();
    let addr = format!("127.0.0.1:{port}");
    let mut n = Node::new("lost");
    let args = node_args(&n.data_dir(), "--proxy", &addr);
    exits_naming(&mut n, &args, &addr, "does not speak TLS");
}

#[test]
fn a_tls_server_of_another_kind_at_the_auth_address_is_named_and_not_retried() {
    let (_tls, port) = foreign_tls();
    let addr = format!("127.0.0.1:{port}");
    let mut n = Node::new("lost");
    let args = node_args(&n.data_dir(), "--auth-server", &addr);
    exits_naming(
        &mut n,
        &args,
        &addr,
        "speaks TLS but not the teleport-lite auth protocol",
    );
}

#[test]
fn a_refused_connection_is_still_retried() {
    // Nothing listens: a retry can fix that (auth may be starting), so the node waits.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut n = Node::new("early");
    let args = node_args(&n.data_dir(), "--auth-server", &addr);
    n.spawn(&args);
    // Twice: it retried, and says what it waits for.
    let needle = format!("waiting for the auth server at {addr} to join the cluster");
    wait_for(T, "two retries", || {
        (n.proc().log_text().matches(&needle).count() >= 2).then_some(())
    });
    assert!(n.proc().running(), "{}", n.proc().log_text());
}

/// Bug 2: a node's stored identity is not blamed when the server at the address is not part of
/// its cluster; the message names the address and the fix, and never says to delete anything.
fn not_blamed_on_the_identity(log: &str, addr: &str) {
    assert!(
        log.contains(&format!("the server at {addr} is not part of cluster")),
        "{log}"
    );
    assert!(log.contains("Check that the address is right"), "{log}");
    assert!(!log.contains("belongs to another cluster"), "{log}");
    assert!(!log.contains("remove"), "{log}");
}

#[test]
fn another_cluster_at_the_auth_address_is_not_blamed_on_the_identity() {
    let c1 = Cluster::start();
    let mut n = Node::new("mover");
    n.start(&c1, &c1.token("node", "10m"), &c1.pin());
    c1.wait_node("mover", T);
    n.proc().stop();
    let before = n.data_files();

    let c2 = Cluster::start();
    let args = vec![
        "start".to_string(),
        "--roles=node".into(),
        format!("--auth-server={}", c2.addr()),
        format!("--data-dir={}", n.data_dir().display()),
        "--nodename=mover".into(),
    ];
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    not_blamed_on_the_identity(&log, &c2.addr());
    assert_eq!(n.data_files(), before, "the identity is kept");
}

#[test]
fn an_intercepting_tls_box_at_the_proxy_address_is_not_blamed_on_the_identity() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let mut n = Node::new("behind-box");
    let proxy = format!("127.0.0.1:{web}");
    n.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
    c.wait_tunnels("behind-box", 1, T);
    n.proc().stop();

    let (_tls, port) = foreign_tls();
    let addr = format!("127.0.0.1:{port}");
    n.start_via_proxy(&addr, "unused", Some(&c.pin()));
    let st = n.proc().wait_exit(T);
    let log = n.proc().log_text();
    assert!(!st.success(), "{log}");
    not_blamed_on_the_identity(&log, &addr);
}
