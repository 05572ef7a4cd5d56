//! The install script served by the proxy, run for real as root inside an isolated Debian root
//! file system (debootstrap, then chroot): never on this machine itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// A chroot made from the cached debootstrap tarball, with /dev and /proc mounted while it lives.
struct Chroot {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Chroot {
    fn new() -> Chroot {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(repo.join("scripts/test-rootfs.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "debootstrap failed: {}", text(&out));
        let tar = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        let c = Chroot { _dir: dir, root };
        let dev = c.root.join("dev");
        assert!(Command::new("mount")
            .arg("--bind")
            .arg("/dev")
            .arg(&dev)
            .status()
            .unwrap()
            .success());
        let proc_ = c.root.join("proc");
        assert!(Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&proc_)
            .status()
            .unwrap()
            .success());
        c
    }

    fn sh(&self, script: &str) -> std::process::Output {
        Command::new("chroot")
            .arg(&self.root)
            .args(["/bin/bash", "-c", script])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .output()
            .unwrap()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Stop what the script started in the background, then unmount.
        if let Ok(pid) = std::fs::read_to_string(self.root.join("run/teleport.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
            std::thread::sleep(Duration::from_millis(300));
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        for m in ["proc", "dev"] {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.root.join(m))
                .status();
        }
    }
}

#[test]
fn install_node_script_installs_and_joins_a_host() {
    // Auth and proxy in one process on loopback, which the chroot shares.
    let web_port = free_port();
    let c = Cluster::start_with_proxy(false, web_port);
    let proxy = format!("127.0.0.1:{web_port}");

    let chroot = Chroot::new();
    // The host trusts the cluster CA for curl (a real deployment uses a public certificate).
    let id =
        teleport_lite::pki::identity::Identity::load(&c.path().join("auth/admin-identity.pem"))
            .unwrap();
    std::fs::write(chroot.root.join("cluster-ca.pem"), id.ca_pems.concat()).unwrap();
    let pipe = |path: &str, args: &str| {
        format!(
            "curl -fsSL --cacert /cluster-ca.pem https://{proxy}{path} | \
             CURL_CA_BUNDLE=/cluster-ca.pem bash -s -- {args}"
        )
    };

    // An unknown token fails before anything is installed.
    let out = chroot.sh(&pipe(
        "/scripts/0123456789abcdef0123456789abcdef/install-node.sh",
        "",
    ));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the token is not valid"),
        "{}",
        text(&out)
    );
    assert!(!chroot.root.join("usr/local/bin/teleport").exists());

    // The plain installer installs the binary (verified by its SHA-256) and the tctl link only.
    let out = chroot.sh(&pipe("/scripts/install.sh", ""));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Installed /usr/local/bin/teleport"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("Next:"), "{}", text(&out));
    assert!(!chroot.root.join("etc/teleport.yaml").exists());

    // One line joins the host; tctl prints that line.
    let added = c.tctl_ok(&["tokens", "add", "--type=node", "--ttl=10m"]);
    let token = added
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("The invite token: ")
        .to_string();
    assert!(
        added.contains(&format!(
            "curl -fsSL https://{proxy}/scripts/{token}/install-node.sh | sudo bash"
        )),
        "{added}"
    );
    let out = chroot.sh(&pipe(&format!("/scripts/{token}/install-node.sh"), ""));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("systemd is not running here"),
        "{}",
        text(&out)
    );
    let link = std::fs::read_link(chroot.root.join("usr/local/bin/tctl")).unwrap();
    assert_eq!(link, PathBuf::from("teleport"));
    let conf = std::fs::read_to_string(chroot.root.join("etc/teleport.yaml")).unwrap();
    assert!(
        conf.contains(&format!("proxy_server: \"{proxy}\"")),
        "{conf}"
    );
    assert!(conf.contains("ca_pin: \"sha256:"), "{conf}");
    let host = teleport_lite::config::hostname();
    c.wait_node(&host, T);
    assert_eq!(c.tunnels_of(&host).unwrap(), vec!["authhost"]);

    // Running it again refuses to overwrite the configuration.
    let token2 = c.token("node", "10m");
    let out = chroot.sh(&pipe(&format!("/scripts/{token2}/install-node.sh"), ""));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/etc/teleport.yaml exists"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
}
