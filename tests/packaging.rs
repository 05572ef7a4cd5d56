//! Packaging: the systemd unit (systemd-analyze verify, sd_notify readiness, reload), the
//! diagnostics endpoints, and the Docker image FROM scratch on a real Docker engine.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo().join("systemd/teleport.service")).unwrap();
    for want in [
        "Type=notify",
        "ExecStart=/usr/local/bin/teleport start --config /etc/teleport.yaml\n",
        "ExecReload=",
        "Restart=on-failure",
        "TimeoutStartSec=infinity",
        "LimitNOFILE=524288",
        "User=teleport",
        "StateDirectory=teleport",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit.contains(want), "the unit lacks {want:?}");
    }
    // systemd tracks the main PID itself (Type=notify); a PID file only warned on reload.
    assert!(!unit.contains("PIDFile="), "the unit has a PIDFile=");
    // Verify against a root that holds the unit's executables and systemd's own units, so the
    // check runs on the unit as shipped without installing anything on this machine.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in [
        "usr/local/bin",
        "bin",
        "etc/systemd/system",
        "usr/lib/systemd",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy(bin(), r.join("usr/local/bin/teleport")).unwrap();
    std::fs::copy("/bin/sh", r.join("bin/sh")).unwrap();
    std::fs::copy(
        repo().join("systemd/teleport.service"),
        r.join("etc/systemd/system/teleport.service"),
    )
    .unwrap();
    let copied = Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()))
        .arg("teleport.service")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).trim().is_empty(),
        "verify complained:\n{}",
        text(&out)
    );
}

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(repo().join("systemd/teleport.service"))
        .output()
        .unwrap();
    let report = text(&out);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for teleport.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");
}

/// Runs the binary as `nobody` (a data dir it cannot write), as an image or unit would with
/// a root-owned data dir.
fn as_nobody(args: &[String]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_unwritable_data_dir_is_refused_before_the_join_and_the_token_stays_usable() {
    let mut c = Cluster::start();
    let token = c.token("node", "10m");
    let node = Node::new("unwritable");
    // The data dir's parent is root's 0700 temp dir: nobody can create it.
    let out = as_nobody(&node.start_args(&c, &token, &c.pin()));
    assert!(!out.status.success());
    let err = text(&out);
    let dir = node.data_dir().display().to_string();
    assert!(
        err.contains(&format!("the data directory {dir} is not writable")),
        "{err}"
    );
    assert!(
        err.contains("the token is unused") && err.contains("chown"),
        "{err}"
    );
    assert!(!err.contains("missing sudo"), "{err}");
    // Auth never saw a join from it.
    assert!(
        !c.auth().log_text().contains("unwritable"),
        "{}",
        c.auth().log_text()
    );
    assert!(!c.has_node("unwritable"));

    // The same token still joins a host that can store its identity.
    let mut ok = Node::new("writable");
    ok.start(&c, &token, &c.pin());
    c.wait_node("writable", T);
}

fn recv_state(sock: &UnixDatagram, want: &str) {
    sock.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = sock.recv(&mut buf).expect("no sd_notify message in time");
        if String::from_utf8_lossy(&buf[..n]).contains(want) {
            return;
        }
    }
}

#[test]
fn sd_notify_ready_after_first_ack_and_sighup_reloads_in_place() {
    let mut c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let node = Node::new("notified");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new(bin())
        .args(node.start_args(&c, &c.token("node", "10m"), &c.pin()))
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(log)
        .spawn()
        .unwrap();
    recv_state(&sock, "READY=1");
    // Ready means joined and acknowledged: auth lists the node already.
    assert!(c.has_node("notified"));

    // Reload: same PID, a new READY after the stream is back.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    recv_state(&sock, "RELOADING=1");
    recv_state(&sock, "READY=1");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process exited on reload"
    );
    c.wait_node("notified", T);

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    recv_state(&sock, "STOPPING=1");
    let st = child.wait().unwrap();
    assert!(st.success());
    let _ = c.auth();
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("http://{addr}{path}"),
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

#[test]
fn diag_endpoints_report_health_readiness_and_metrics() {
    let c = Cluster::start();
    let diag = format!("127.0.0.1:{}", free_port());
    let mut n = Node::new("observed");
    let mut args = n.start_args(&c, &c.token("node", "10m"), &c.pin());
    args.push(format!("--diag-addr={diag}"));
    n.spawn(&args);
    wait_for(T, "/readyz to answer 200", || {
        (http_get(&diag, "/readyz").0 == 200).then_some(())
    });
    assert_eq!(http_get(&diag, "/healthz").0, 200);
    let (code, metrics) = http_get(&diag, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE teleport_heartbeats_acked_total counter"),
        "{metrics}"
    );
    assert!(metrics.contains("teleport_auth_streams 1"), "{metrics}");
    assert!(metrics.contains("teleport_ready 1"), "{metrics}");
    let acked: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("teleport_heartbeats_acked_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(acked >= 1);
    let health = run(&["health", "--diag-addr", &diag]);
    assert!(health.status.success(), "{}", text(&health));

    // Auth's side: joins by result.
    let adiag = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let _a = Proc::spawn(
        "auth2",
        dir.path(),
        &[
            "start",
            "--roles=auth",
            &format!("--data-dir={}", dir.path().join("d").display()),
            &format!("--diag-addr={adiag}"),
        ],
    );
    let _ = _a;
    wait_for(T, "auth /readyz", || {
        (http_get(&adiag, "/readyz").0 == 200).then_some(())
    });
    let (_, m) = http_get(&adiag, "/metrics");
    assert!(
        m.contains("teleport_joins_total{result=\"refused\",reason=\"wrong_role\"} 0"),
        "{m}"
    );
    // Not ready and not healthy: nothing listens.
    let gone = run(&[
        "health",
        "--diag-addr",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert!(!gone.status.success());
}

/// The musl executable and the Docker image, built once for the Docker tests.
fn image() -> String {
    static ONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let built = Command::new(repo().join("scripts/build-static.sh"))
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", text(&built));
        let tag = "teleport-lite:test".to_string();
        let out = Command::new("docker")
            .current_dir(repo())
            .args(["build", "-q", "-f", "docker/Dockerfile", "-t", &tag, "."])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker build failed: {}", text(&out));
        tag
    })
    .clone()
}

struct Docker {
    names: Vec<String>,
    network: String,
    volumes: Vec<String>,
}

impl Docker {
    fn docker(args: &[&str]) -> std::process::Output {
        Command::new("docker").args(args).output().unwrap()
    }

    fn ok(args: &[&str]) -> String {
        let out = Docker::docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Docker::docker(&["rm", "-f", n]);
        }
        let _ = Docker::docker(&["network", "rm", &self.network]);
        for v in &self.volumes {
            let _ = Docker::docker(&["volume", "rm", "-f", v]);
        }
    }
}

#[test]
fn docker_image_runs_auth_proxy_and_a_node_in_the_foreground() {
    let tag = image();
    let id = std::process::id();
    let d = Docker {
        names: vec![format!("tl-cluster-{id}"), format!("tl-node-{id}")],
        network: format!("tl-net-{id}"),
        volumes: vec![format!("tl-data-{id}")],
    };
    Docker::ok(&["network", "create", &d.network]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("teleport.yaml");
    std::fs::write(
        &cfg,
        "version: v3\nteleport:\n  nodename: cluster\n  data_dir: /var/lib/teleport\n  \
         diag_addr: 127.0.0.1:3000\nauth_service:\n  enabled: yes\n  listen_addr: 0.0.0.0:3025\n  \
         cluster_name: docker.test\n  heartbeat_interval: 1s\nssh_service:\n  enabled: no\n\
         proxy_service:\n  enabled: yes\n  web_listen_addr: 0.0.0.0:3080\n  public_addr: cluster:3080\n",
    )
    .unwrap();
    let mount = format!("{}:/etc/teleport.yaml:ro", cfg.display());
    Docker::ok(&[
        "run",
        "-d",
        "--name",
        &d.names[0],
        "--network",
        &d.network,
        "--network-alias",
        "cluster",
        "-v",
        &mount,
        &tag,
    ]);
    let tctl = |args: &[&str]| {
        let mut all = vec!["exec", d.names[0].as_str(), "tctl"];
        all.extend_from_slice(args);
        Docker::docker(&all)
    };
    wait_for(T, "tctl status in the cluster container", || {
        tctl(&["status"]).status.success().then_some(())
    });
    let token =
        String::from_utf8_lossy(&tctl(&["tokens", "add", "--type=node", "--format=text"]).stdout)
            .trim()
            .to_string();
    let status = String::from_utf8_lossy(&tctl(&["status"]).stdout).to_string();
    let pin = status
        .lines()
        .find_map(|l| l.strip_prefix("CA pin"))
        .unwrap()
        .trim()
        .to_string();
    // As the README says: the identity lives in a named volume.
    let volume = format!("{}:/var/lib/teleport", d.volumes[0]);
    let run_node = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &d.names[1],
            "--network",
            &d.network,
            "-v",
            &volume,
            &tag,
            "--roles=node",
            "--auth-server=cluster:3080",
            "--nodename=container-node",
        ];
        args.extend_from_slice(extra);
        Docker::ok(&args);
    };
    run_node(&[&format!("--token={token}"), &format!("--ca-pin={pin}")]);
    let listed =
        || String::from_utf8_lossy(&tctl(&["nodes", "ls", "--format=json"]).stdout).to_string();
    let uuid_of_node = || {
        let nodes: serde_json::Value = serde_json::from_str(&listed()).ok()?;
        nodes
            .as_array()?
            .iter()
            .find(|n| n["hostname"] == "container-node")
            .map(|n| n["uuid"].as_str().unwrap().to_string())
    };
    let uuid = wait_for(T, "the container node in tctl nodes ls", uuid_of_node);
    // Not root, by default: the image's user owns the data dir.
    assert_eq!(
        Docker::ok(&["image", "inspect", &tag, "--format", "{{.Config.User}}"]),
        "65532:65532"
    );
    let pid = Docker::ok(&["inspect", &d.names[1], "--format", "{{.State.Pid}}"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uids}"
    );
    assert!(
        listed().contains("\"cluster\""),
        "tunnelled through the proxy: {}",
        listed()
    );
    // The HEALTHCHECK's command (diagnostics on by the image's default), run by hand.
    let health = Docker::docker(&["exec", &d.names[1], "teleport", "health"]);
    assert!(health.status.success(), "{}", text(&health));

    // docker stop: PID 1 handles SIGTERM, says goodbye, exits 0 well within 10 s.
    let t = std::time::Instant::now();
    Docker::ok(&["stop", &d.names[1]]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}",
        t.elapsed()
    );
    assert_eq!(
        Docker::ok(&["inspect", &d.names[1], "--format", "{{.State.ExitCode}}"]),
        "0"
    );
    assert!(
        !listed().contains("container-node"),
        "node still listed after docker stop"
    );

    // A new container on the same volume, without a token: the same node comes back.
    Docker::ok(&["rm", &d.names[1]]);
    run_node(&[]);
    let again = wait_for(T, "the recreated node in tctl nodes ls", uuid_of_node);
    assert_eq!(
        again, uuid,
        "recreating the container changed the node's identity"
    );
}
