//! The sharp edges a new user hits first, each on the real binary: what the user sees.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs `teleport ARGS` that must exit within `T` (a start that keeps running fails the test
/// rather than hanging it, and is killed); returns its status and output. Every start here
/// names a data dir under `dir`.
fn must_exit(dir: &Path, args: &[&str]) -> (ExitStatus, String) {
    let mut p = Proc::spawn("cmd", dir, args);
    let st = p.wait_exit(T);
    (st, p.log_text())
}

fn tctl_link(dir: &Path) -> std::path::PathBuf {
    let tctl = dir.join("tctl");
    std::os::unix::fs::symlink(bin(), &tctl).unwrap();
    tctl
}

#[test]
fn a_config_that_enables_no_service_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.yaml");
    fs::write(
        &cfg,
        format!(
            "version: v3\nteleport:\n  data_dir: {}\nauth_service:\n  enabled: no\n\
             ssh_service:\n  enabled: no\nproxy_service:\n  enabled: no\n",
            dir.path().join("data").display(),
        ),
    )
    .unwrap();
    let (st, e) = must_exit(dir.path(), &["start", "-c", cfg.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1), "{e}");
    assert!(e.contains("no service is enabled"), "{e}");
    assert!(e.contains("enabled: yes"), "{e}");
    assert!(e.contains("--roles"), "{e}");
}

#[test]
fn a_proxy_block_without_enabled_runs_the_proxy() {
    // The config: proxy settings, no `enabled:`. Teleport runs the proxy; so do we.
    // Keys of Teleport's own `configure` output that match what we do are accepted.
    let dir = tempfile::tempdir().unwrap();
    let (port, web) = (free_port(), free_port());
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\nauth_service:\n  \
         enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
         proxy_listener_mode: multiplex\nssh_service:\n  enabled: no\nproxy_service:\n  \
         web_listen_addr: 127.0.0.1:{web}\n  public_addr: 127.0.0.1:{web}\n  acme: {{}}\n  \
         https_keypairs_reload_interval: 0s\n",
        dir.path().join("auth").display()
    );
    let c = Cluster::launch(dir, port, &yaml);
    wait_for(T, "the proxy to be listed", || {
        (c.proxies().len() == 1).then_some(())
    });
    let find = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{web}/v1/webapi/find")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&find.stdout).contains("server_version"),
        "{}",
        text(&find)
    );
}

#[test]
fn keys_we_do_not_implement_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "proxy_service:\n  enabled: yes\n  acme:\n    enabled: yes\n    email: a@b.c\n",
            "proxy_service.acme",
            "https_keypairs",
        ),
        (
            "auth_service:\n  proxy_listener_mode: separate\n",
            "proxy_listener_mode",
            "multiplex",
        ),
        (
            "ssh_service:\n  listen_addr: 0.0.0.0:3022\n",
            "ssh_service.listen_addr",
            "Remove the key",
        ),
        (
            "ssh_service:\n  public_addr: node.example.com:3022\n",
            "ssh_service.public_addr",
            "remove the key",
        ),
        (
            "proxy_service:\n  https_keypairs_reload_interval: 1h\n",
            "https_keypairs_reload_interval",
            "systemctl reload teleport",
        ),
        (
            "teleport:\n  log:\n    format:\n      extra_fields: [caller]\n",
            "extra_fields",
            "remove the key",
        ),
    ];
    let data = format!("--data-dir={}", dir.path().join("data").display());
    for (i, (body, key, fix)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("{i}.yaml"));
        fs::write(&cfg, format!("version: v3\n{body}")).unwrap();
        let (st, e) = must_exit(dir.path(), &["start", "-c", cfg.to_str().unwrap(), &data]);
        assert_eq!(st.code(), Some(1), "{key}: {e}");
        assert!(
            e.contains(key) && e.contains("is not implemented") && e.contains(fix),
            "{key}: {e}"
        );
    }
    // A key nobody knows is still named.
    let cfg = dir.path().join("typo.yaml");
    fs::write(&cfg, "version: v3\nproxy_service:\n  web_listen_adr: x\n").unwrap();
    let (_, e) = must_exit(dir.path(), &["start", "-c", cfg.to_str().unwrap(), &data]);
    assert!(e.contains("unknown field `web_listen_adr`"), "{e}");
}

#[test]
fn a_data_dir_is_held_by_one_process_and_the_lock_follows_it() {
    let mut c = Cluster::start_with("", true);
    c.wait_node("authhost", T);
    let data = c.path().join("auth");
    let pid = c.auth().child.id();
    let other = tempfile::tempdir().unwrap();
    let second = |c: &Cluster| {
        let (auth, data) = (
            format!("--auth-server={}", c.addr()),
            format!("--data-dir={}", data.display()),
        );
        let args = [
            "start",
            "--roles=node",
            "--token=x",
            "--insecure",
            &auth,
            &data,
        ];
        must_exit(other.path(), &args)
    };
    let (st, e) = second(&c);
    assert_eq!(st.code(), Some(1), "{e}");
    let want = format!("in use by another teleport process (PID {pid})");
    assert!(e.contains(&want), "{e}");
    assert!(e.contains("--data-dir"), "{e}");
    // One line per fatal error, though the logger was up by then.
    assert_eq!(e.matches("in use by another").count(), 1, "{e}");
    assert!(
        c.has_node("authhost"),
        "the refused process disturbed the first"
    );

    // systemctl reload: a restart in place (same PID) takes the lock again.
    c.auth().signal("HUP");
    c.auth().wait_log("restarting in place", T);
    wait_for(T, "auth to answer after the reload", || {
        c.tctl(&["status"]).status.success().then_some(())
    });
    let (_, e) = second(&c);
    assert!(e.contains(&want), "after reload: {e}");

    // SIGKILL: the kernel drops the lock; the next start needs no cleanup.
    c.auth().kill9();
    c.start_auth();
    let (_, e) = second(&c);
    let new_pid = c.auth().child.id();
    assert!(
        e.contains(&format!("(PID {new_pid})")),
        "after kill -9: {e}"
    );
    c.wait_node("authhost", T);
}

#[test]
fn start_joins_through_a_proxy_on_any_port_from_flags_alone() {
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let token = c.token("node", "10m");
    let mut n = Node::new("via-flag");
    n.spawn(&[
        "start".into(),
        "--roles=node".into(),
        format!("--token={token}"),
        format!("--ca-pin={}", c.pin()),
        format!("--proxy=127.0.0.1:{web}"),
        format!("--data-dir={}", n.data_dir().display()),
        "--nodename=via-flag".into(),
    ]);
    c.wait_node("via-flag", T);
    c.wait_tunnels("via-flag", 1, T);
    // Both at once is ambiguous.
    let data = format!("--data-dir={}", n.dir.path().join("other").display());
    let args = [
        "start",
        "--roles=node",
        "--proxy=a:3080",
        "--auth-server=b:3025",
        &data,
    ];
    let (_, e) = must_exit(n.dir.path(), &args);
    assert!(e.contains("cannot both be set"), "{e}");
}

#[test]
fn auth_server_can_be_repeated_and_unreachable_ones_are_skipped() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    let dead = format!("127.0.0.1:{}", free_port());
    let mut n = Node::new("many-auths");
    n.spawn(&[
        "start".into(),
        "--roles=node".into(),
        format!("--token={token}"),
        format!("--ca-pin={}", c.pin()),
        format!("--auth-server={dead}"),
        format!("--auth-server={}", c.addr()),
        format!("--data-dir={}", n.data_dir().display()),
        "--nodename=many-auths".into(),
    ]);
    c.wait_node("many-auths", T);
    let log = n.proc().log_text();
    assert!(
        log.contains(&format!("auth server {dead} cannot be reached")),
        "{log}"
    );
}

#[test]
fn durations_need_a_unit() {
    let c = Cluster::start();
    let o = c.tctl(&["tokens", "add", "--type=node", "--ttl=5"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("add a unit, e.g. 5m"), "{}", text(&o));
    assert!(c.tctl_ok(&["tokens", "ls"]).contains("No active tokens"));
    let ok = c.tctl(&["tokens", "add", "--type=node", "--ttl=90s", "--format=text"]);
    assert!(ok.status.success(), "{}", text(&ok));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hb.yaml");
    fs::write(
        &cfg,
        format!(
            "version: v3\nteleport:\n  data_dir: {}\nauth_service:\n  enabled: yes\n  \
             listen_addr: 127.0.0.1:{}\n  heartbeat_interval: 5\nssh_service:\n  enabled: no\n",
            dir.path().join("data").display(),
            free_port()
        ),
    )
    .unwrap();
    let (_, e) = must_exit(dir.path(), &["start", "-c", cfg.to_str().unwrap()]);
    assert!(
        e.contains("auth_service.heartbeat_interval") && e.contains("add a unit, e.g. 5m"),
        "{e}"
    );
}

#[test]
fn short_help_and_version_flags_work_for_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let tctl = tctl_link(dir.path());
    let via = |prog: &Path, args: &[&str]| Command::new(prog).args(args).output().unwrap();
    for prog in [bin(), tctl.clone()] {
        let name = prog.file_name().unwrap().to_string_lossy().to_string();
        let v = via(&prog, &["--version"]);
        assert!(v.status.success(), "{name} --version: {}", text(&v));
        assert!(text(&v).starts_with("Teleport v"), "{}", text(&v));
        let h = via(&prog, &["-h"]);
        assert!(h.status.success(), "{name} -h: {}", text(&h));
        assert!(text(&h).contains(&format!("Usage: {name}")), "{}", text(&h));
    }
    for args in [["start", "-h"], ["configure", "-h"]] {
        let o = via(&bin(), &args);
        assert!(o.status.success() && text(&o).contains("Usage"), "{args:?}");
    }
    let o = via(&tctl, &["tokens", "add", "-h"]);
    assert!(
        o.status.success() && text(&o).contains("--ttl"),
        "{}",
        text(&o)
    );
}

/// Runs the command with stdout on a pipe whose reader is already gone.
fn to_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    cmd.stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let c = Cluster::start_with("", true);
    c.wait_node("authhost", T);
    let dir = tempfile::tempdir().unwrap();
    let mut cmds = Vec::new();
    for args in [
        vec!["version"],
        vec!["configure"],
        vec!["node", "configure", "--token=x", "--auth-server=a"],
    ] {
        let mut cmd = Command::new(bin());
        cmd.args(&args);
        cmds.push((format!("teleport {args:?}"), cmd));
    }
    for args in [
        vec!["nodes", "ls"],
        vec!["tokens", "ls"],
        vec!["status"],
        vec!["version"],
    ] {
        let mut cmd = Command::new(&c.tctl);
        cmd.args(["-c", c.config.to_str().unwrap()]).args(&args);
        cmds.push((format!("tctl {args:?}"), cmd));
    }
    let _ = dir;
    for (what, cmd) in cmds {
        let o = to_closed_pipe(cmd);
        let e = stderr(&o);
        assert!(
            !e.contains("panicked") && !e.contains("failed printing"),
            "{what}: {e}"
        );
        // Ended by SIGPIPE as other Unix tools are, not by a panic's exit code 101.
        assert_eq!(o.status.signal(), Some(13), "{what}: {:?} {e}", o.status);
    }
}

#[test]
fn a_fatal_error_is_printed_once() {
    let c = Cluster::start();
    let token = c.token("node", "10m");
    c.tctl_ok(&["tokens", "rm", &token]);
    let mut n = Node::new("refused");
    let args = n.start_args(&c, &token, &c.pin());
    let (st, log) = n.run_expect_exit(&args);
    assert!(!st.success());
    assert_eq!(log.matches("the token is not valid").count(), 1, "{log}");
    assert_eq!(log.matches("ERROR").count(), 1, "{log}");

    // With a log file, the file says why too; stderr still has it once.
    let dir = tempfile::tempdir().unwrap();
    let logfile = dir.path().join("teleport.log");
    let cfg = dir.path().join("n.yaml");
    fs::write(
        &cfg,
        format!(
            "version: v3\nteleport:\n  nodename: refused2\n  data_dir: {}\n  auth_server: {}\n  \
             ca_pin: \"{}\"\n  join_params:\n    token_name: \"{token}\"\n  log:\n    output: {}\n\
             auth_service:\n  enabled: no\nproxy_service:\n  enabled: no\n",
            dir.path().join("data").display(),
            c.addr(),
            c.pin(),
            logfile.display()
        ),
    )
    .unwrap();
    let (st, e) = must_exit(dir.path(), &["start", "-c", cfg.to_str().unwrap()]);
    assert!(!st.success());
    assert_eq!(e.matches("the token is not valid").count(), 1, "{e}");
    let file = fs::read_to_string(&logfile).unwrap();
    assert!(file.contains("the token is not valid"), "{file}");
}

#[test]
fn tokens_add_refuses_types_this_binary_cannot_run() {
    let c = Cluster::start();
    for kind in ["db", "app", "kube", "node,db", "windowsdesktop"] {
        let o = c.tctl(&["tokens", "add", &format!("--type={kind}")]);
        assert_eq!(o.status.code(), Some(1), "{kind}: {}", text(&o));
        let e = stderr(&o);
        assert!(
            e.contains("is not supported by teleport-lite"),
            "{kind}: {e}"
        );
        assert!(
            e.contains("--type=node") && e.contains("--type=proxy"),
            "{kind}: {e}"
        );
        assert!(!e.contains("teleport start"), "{kind}: {e}");
    }
    assert!(c.tctl_ok(&["tokens", "ls"]).contains("No active tokens"));
    // What it supports still works, bot included (single use).
    for kind in ["node", "proxy", "proxy,node", "bot,node"] {
        c.token(kind, "5m");
    }
}

#[test]
fn configure_writes_a_proxy_config_that_starts_and_registers() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("web.pem"), dir.path().join("web.key"));
    let gen = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", text(&gen));
    let web = free_port();
    let out = dir.path().join("teleport.yaml");
    let o = run(&[
        "configure",
        "--roles=proxy",
        &format!("--public-addr=127.0.0.1:{web}"),
        &format!("--cert-file={}", cert.display()),
        &format!("--key-file={}", key.display()),
        &format!("--token={}", c.token("proxy", "10m")),
        &format!("--auth-server={}", c.addr()),
        &format!("--ca-pin={}", c.pin()),
        &format!("--data-dir={}", dir.path().join("data").display()),
        "--node-name=edge-proxy",
        "-o",
        &format!("file://{}", out.display()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let y = fs::read_to_string(&out).unwrap();
    for want in [
        "proxy_service:\n  enabled: \"yes\"",
        &format!("web_listen_addr: \"0.0.0.0:{web}\""),
        &format!("public_addr: \"127.0.0.1:{web}\""),
        &format!("cert_file: {:?}", cert.display().to_string()),
        "auth_service:\n  enabled: \"no\"",
        "ssh_service:\n  enabled: \"no\"",
        "ca_pin: \"sha256:",
    ] {
        assert!(y.contains(want), "missing {want:?} in\n{y}");
    }
    let mut p = Proc::spawn("proxy", dir.path(), &["start", "-c", out.to_str().unwrap()]);
    c.wait_proxy_listed("edge-proxy");
    // Browsers get the certificate from --cert-file.
    let find = wait_for(T, "the proxy's web port", || {
        let o = Command::new("curl")
            .args(["-sf", "--cacert", cert.to_str().unwrap()])
            .arg(format!("https://localhost:{web}/v1/webapi/find"))
            .output()
            .unwrap();
        o.status.success().then_some(o)
    });
    assert!(String::from_utf8_lossy(&find.stdout).contains("server_version"));
    assert!(p.running());

    // Proxy-only flags without the proxy role say what is missing.
    let e = stderr(&run(&["configure", "--roles=node", "--public-addr=x:443"]));
    assert!(e.contains("add proxy to --roles"), "{e}");
}
