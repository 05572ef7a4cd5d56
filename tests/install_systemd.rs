//! The printed install line under a real systemd: a Debian container (the debootstrap tree of
//! scripts/test-rootfs.sh) booted with systemd as PID 1 on this machine's network. The unit as
//! shipped (non-root, sandboxed) starts, reloads in place, restarts and stops.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The debootstrap tree as a local image (imported once; nothing is pulled).
fn rootfs_image() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/test-rootfs.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "debootstrap failed: {}", text(&out));
    let tar = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stem = Path::new(&tar).file_stem().unwrap().to_string_lossy();
    let tag = format!("teleport-lite-{stem}:test");
    if !docker(&["image", "inspect", &tag]).status.success() {
        docker_ok(&["import", &tar, &tag]);
    }
    tag
}

/// A container booted with systemd; removed on drop.
struct Booted {
    name: String,
}

impl Booted {
    fn start() -> Booted {
        let image = rootfs_image();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = Booted {
            name: format!("tl-systemd-{}-{n}", std::process::id()),
        };
        // systemd sets up each unit's sandbox (namespaces, mounts): it needs CAP_SYS_ADMIN.
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &b.name,
            "--network",
            "host",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            &image,
            "/lib/systemd/systemd",
        ]);
        wait_for(T, "systemd to finish booting", || {
            let s = b.sh("systemctl is-system-running || true");
            let s = String::from_utf8_lossy(&s.stdout).trim().to_string();
            (s == "running" || s == "degraded").then_some(())
        });
        b
    }

    fn sh(&self, script: &str) -> Output {
        docker(&["exec", &self.name, "bash", "-c", script])
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn prop(&self, p: &str) -> String {
        self.sh_ok(&format!("systemctl show -p {p} --value teleport"))
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

#[test]
fn installed_unit_runs_as_teleport_and_restarts_reloads_and_stops_under_systemd() {
    let web_port = free_port();
    let c = Cluster::start_with_proxy(false, web_port);
    let sys = Booted::start();
    let added = c.tctl_ok(&["tokens", "add", "--type=node", "--ttl=10m"]);
    let token = added
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("The invite token: ");
    let line = install_line(&added);

    // Install only: the unit is installed, but not enabled while there is no config.
    let only = line.replace(
        &format!("/scripts/{token}/install-node.sh"),
        "/scripts/install.sh",
    );
    sys.sh_ok(&only);
    assert!(sys
        .sh("test -f /etc/systemd/system/teleport.service")
        .status
        .success());
    assert_eq!(
        sys.sh_ok("systemctl is-enabled teleport || true"),
        "disabled"
    );

    // The printed line, verbatim: enabled, started without blocking, joined.
    let t = std::time::Instant::now();
    let out = sys.sh_ok(&line);
    assert!(
        out.contains("teleport joined the cluster and is ready"),
        "{out}\n{}",
        text(&sys.sh("systemctl status teleport --no-pager; journalctl -u teleport --no-pager"))
    );
    assert!(
        t.elapsed() < Duration::from_secs(45),
        "the installer took {:?}",
        t.elapsed()
    );
    let host = teleport_lite::config::hostname();
    c.wait_node(&host, T);
    assert_eq!(sys.sh_ok("systemctl is-enabled teleport"), "enabled");
    assert_eq!(sys.prop("ActiveState"), "active");
    assert_eq!(sys.prop("TimeoutStartUSec"), "infinity");
    let uid = sys.sh_ok("id -u teleport");
    assert_ne!(uid, "0");
    let pid = sys.prop("MainPID");
    let status = sys.sh_ok(&format!("grep ^Uid: /proc/{pid}/status"));
    assert!(
        status.split_whitespace().skip(1).all(|u| u == uid),
        "the service runs as {status}, not as teleport ({uid})"
    );

    // Reload: SIGHUP, the same process starts again in place; no PID-file warning.
    sys.sh_ok("systemctl reload teleport");
    wait_for(T, "teleport to be active after the reload", || {
        (sys.prop("ActiveState") == "active").then_some(())
    });
    assert_eq!(sys.prop("MainPID"), pid);
    c.wait_node(&host, T);

    // Restart: a new process, ready again (it waits for READY=1).
    sys.sh_ok("systemctl restart teleport");
    assert_eq!(sys.prop("ActiveState"), "active");
    assert_ne!(sys.prop("MainPID"), pid);
    c.wait_node(&host, T);

    // Stop: a clean exit, and the node leaves the inventory.
    sys.sh_ok("systemctl stop teleport");
    assert_eq!(sys.prop("ActiveState"), "inactive");
    assert_eq!(sys.prop("Result"), "success");
    c.wait_node_gone(&host, T);

    let journal = sys.sh_ok("journalctl -u teleport --no-pager -o cat");
    assert!(!journal.contains("PID file"), "{journal}");
    assert!(journal.contains("joined the cluster"), "{journal}");
}

/// A port below 1024 that nobody on this machine listens on now.
fn free_low_port() -> u16 {
    (900..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn auth_and_proxy_run_under_the_unit_and_bind_a_low_port_with_the_documented_drop_in() {
    let sys = Booted::start();
    let (low, web) = (free_low_port(), free_port());
    docker_ok(&[
        "cp",
        bin().to_str().unwrap(),
        &format!("{}:/usr/local/bin/teleport", sys.name),
    ]);
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/teleport.service");
    docker_ok(&[
        "cp",
        unit.to_str().unwrap(),
        &format!("{}:/etc/systemd/system/teleport.service", sys.name),
    ]);
    sys.sh_ok(&format!(
        "useradd --system --user-group --no-create-home teleport && ln -s teleport \
         /usr/local/bin/tctl && printf 'version: v3\\nteleport:\\n  nodename: sysauth\\n\
         auth_service:\\n  enabled: yes\\n  listen_addr: 127.0.0.1:{low}\\n  cluster_name: \
         systemd.test\\nssh_service:\\n  enabled: no\\nproxy_service:\\n  enabled: yes\\n  \
         web_listen_addr: 127.0.0.1:{web}\\n  public_addr: 127.0.0.1:{web}\\n' > \
         /etc/teleport.yaml && chgrp teleport /etc/teleport.yaml && chmod 0640 \
         /etc/teleport.yaml && systemctl daemon-reload"
    ));
    // As shipped: no capability, so auth cannot listen on a port below 1024.
    assert!(!sys.sh("systemctl start teleport").status.success());
    let journal = sys.sh_ok("journalctl -u teleport --no-pager -o cat");
    assert!(journal.contains(&format!("127.0.0.1:{low}")), "{journal}");
    assert!(journal.contains("Permission denied"), "{journal}");

    // The drop-in of docs/operations.md.
    sys.sh_ok(
        "mkdir -p /etc/systemd/system/teleport.service.d && printf '[Service]\\n\
         AmbientCapabilities=CAP_NET_BIND_SERVICE\\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\\n' \
         > /etc/systemd/system/teleport.service.d/low-port.conf && systemctl daemon-reload && \
         systemctl reset-failed teleport && systemctl start teleport",
    );
    assert_eq!(sys.prop("ActiveState"), "active");
    // Auth works in the sandbox (SQLite, signing), root's tctl reads its identity, and the
    // proxy reads and serves its own executable.
    let status = sys.sh_ok("tctl status");
    assert!(status.contains("systemd.test"), "{status}");
    let code = sys.sh_ok(&format!(
        "curl -sk -o /dev/null -w '%{{http_code}}' https://127.0.0.1:{web}/scripts/install.sh"
    ));
    assert_eq!(code, "200");
    sys.sh_ok("systemctl stop teleport");
    assert_eq!(sys.prop("Result"), "success");
}
