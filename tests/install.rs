//! The install line `tctl tokens add` prints, run verbatim as root inside an isolated Debian
//! root file system (debootstrap, then chroot; never on this machine itself): on a default
//! cluster (pinned to the proxies' web keys), on one with a publicly trusted certificate (plain
//! line), and behind a man in the middle (fails before anything is installed).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::certs::TestCa;
use common::*;

const T: Duration = Duration::from_secs(30);

/// The installed node serves diagnostics on 127.0.0.1:3000 and every chroot shares this
/// machine's network and host name: one installed node at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cached debootstrap tarball (curl, sudo, systemd).
pub fn rootfs_tar() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/test-rootfs.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "debootstrap failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A chroot made from the cached debootstrap tarball, with /dev and /proc mounted while it lives.
struct Chroot {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Chroot {
    fn new() -> Chroot {
        let tar = rootfs_tar();
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
        for (what, args) in [
            ("dev", vec!["--bind", "/dev"]),
            ("proc", vec!["-t", "proc", "proc"]),
        ] {
            let ok = Command::new("mount")
                .args(args)
                .arg(c.root.join(what))
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount {what}");
        }
        c
    }

    /// Runs `script` with bash as root in the chroot, as an operator's shell would.
    fn sh(&self, script: &str) -> Output {
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

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// UID and GID of a user of the chroot.
    fn ids(&self, user: &str) -> (u32, u32) {
        let passwd = std::fs::read_to_string(self.path("/etc/passwd")).unwrap();
        let f: Vec<&str> = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap_or_else(|| panic!("no user {user} in the chroot"))
            .split(':')
            .collect();
        (f[2].parse().unwrap(), f[3].parse().unwrap())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Stop what the script started in the background, then unmount.
        if let Ok(pid) = std::fs::read_to_string(self.path("/run/teleport/teleport.pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let gone = || !Path::new(&format!("/proc/{pid}")).exists();
            let t = std::time::Instant::now();
            while !gone() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(25));
            }
            if !gone() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        for m in ["proc", "dev"] {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.root.join(m))
                .status();
        }
    }
}

/// Auth and a proxy in one process on loopback (which the chroot shares); the proxy listens on
/// `web_port` and announces `public_port` (a man in the middle may sit there).
fn cluster(web_port: u16, public_port: u16, extra_proxy: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\nauth_service:\n  \
         enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {CLUSTER_NAME}\n  \
         heartbeat_interval: 500ms\nssh_service:\n  enabled: no\nproxy_service:\n  enabled: yes\n  \
         web_listen_addr: 127.0.0.1:{web_port}\n  public_addr: 127.0.0.1:{public_port}\n{extra_proxy}",
        dir.path().join("auth").display(),
    );
    let c = Cluster::launch(dir, port, &yaml);
    c.wait_proxy_listed("authhost");
    c
}

/// `tctl tokens add --type=node`: the token and the install line, as printed (without "> ").
fn add_token(c: &Cluster) -> (String, String, String) {
    let added = c.tctl_ok(&["tokens", "add", "--type=node", "--ttl=10m"]);
    let token = added
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("The invite token: ")
        .to_string();
    let line = install_line(&added);
    (token, line, added)
}

fn assert_nothing_installed(chroot: &Chroot) {
    for p in ["/usr/local/bin/teleport", "/etc/teleport.yaml"] {
        assert!(!chroot.path(p).exists(), "{p} was installed");
    }
}

#[test]
fn printed_line_installs_and_joins_on_a_default_cluster() {
    let _one = serial();
    let web_port = free_port();
    let c = cluster(web_port, web_port, "");
    let chroot = Chroot::new();
    let (token, line, added) = add_token(&c);
    // A default proxy serves a cluster-issued certificate: the line pins its web key.
    assert!(added.contains("# -k: "), "{added}");
    assert!(line.contains("-k --pinnedpubkey 'sha256//"), "{line}");
    assert!(line.ends_with("|| echo 'exit 1'; } | sudo bash"), "{line}");

    // An unknown token fails before anything is installed, with a non-zero exit.
    let bad = line.replace(&token, "0123456789abcdef0123456789abcdef");
    let out = chroot.sh(&bad);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the token is not valid"),
        "{}",
        text(&out)
    );
    assert_nothing_installed(&chroot);

    // The install-only script, pinned the same way, installs and enables nothing else.
    let only = line.replace(
        &format!("/scripts/{token}/install-node.sh"),
        "/scripts/install.sh",
    );
    let out = chroot.sh(&only);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Next:"), "{}", text(&out));
    assert!(!chroot.path("/etc/teleport.yaml").exists());

    // The printed line, verbatim: installs, configures, starts as the user teleport, joins.
    let out = chroot.sh(&line);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("teleport joined the cluster and is ready"),
        "{}",
        text(&out)
    );
    let link = std::fs::read_link(chroot.path("/usr/local/bin/tctl")).unwrap();
    assert_eq!(link, PathBuf::from("teleport"));
    let host = teleport_lite::config::hostname();
    c.wait_node(&host, T);
    assert_eq!(c.tunnels_of(&host).unwrap(), vec!["authhost"]);

    let (uid, gid) = chroot.ids("teleport");
    assert_ne!(uid, 0);
    let conf_path = chroot.path("/etc/teleport.yaml");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(
        conf.contains(&format!("proxy_server: \"127.0.0.1:{web_port}\"")),
        "{conf}"
    );
    assert!(conf.contains("ca_pin: \"sha256:"), "{conf}");
    assert!(conf.contains("diag_addr: \"127.0.0.1:3000\""), "{conf}");
    let meta = std::fs::metadata(&conf_path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let data = std::fs::metadata(chroot.path("/var/lib/teleport")).unwrap();
    assert_eq!(data.uid(), uid);
    let pid = std::fs::read_to_string(chroot.path("/run/teleport/teleport.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "the node runs as {uids}, not as teleport ({uid})"
    );
    let ready = Command::new("curl")
        .args(["-sf", "http://127.0.0.1:3000/readyz"])
        .output()
        .unwrap();
    assert!(ready.status.success(), "diagnostics on 127.0.0.1:3000");

    // Running it again refuses to overwrite the configuration and names --force.
    let (_, line2, _) = add_token(&c);
    let out = chroot.sh(&line2);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/etc/teleport.yaml exists"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("sudo bash -s -- --force"),
        "{}",
        text(&out)
    );

    // On a host holding auth's data, even --force refuses and keeps it.
    std::fs::write(chroot.path("/var/lib/teleport/auth.db"), "the cluster CA").unwrap();
    let out = chroot.sh(&format!("{line2} -s -- --force"));
    assert!(!out.status.success());
    assert!(text(&out).contains("auth server's data"), "{}", text(&out));
    assert!(chroot.path("/var/lib/teleport/auth.db").exists());
}

#[test]
fn printed_line_is_plain_and_joins_with_a_publicly_trusted_certificate() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "public");
    let web_port = free_port();
    let c = cluster(web_port, web_port, &ca.keypairs_yaml());
    let chroot = Chroot::new();
    // The host trusts the test CA as it would a public one.
    let bundle = chroot.path("/etc/ssl/certs/ca-certificates.crt");
    let mut roots = std::fs::read_to_string(&bundle).unwrap();
    roots.push_str(&std::fs::read_to_string(&ca.ca_cert).unwrap());
    std::fs::write(&bundle, roots).unwrap();

    let (_, line, added) = add_token(&c);
    assert!(
        !added.contains("pinnedpubkey") && !line.contains(" -k "),
        "{added}"
    );
    assert_eq!(
        line,
        format!(
            "{{ curl -fsSL 'https://127.0.0.1:{web_port}/scripts/{}/install-node.sh' || echo \
             'exit 1'; }} | sudo bash",
            added
                .lines()
                .next()
                .unwrap()
                .trim_start_matches("The invite token: ")
        )
    );
    let out = chroot.sh(&line);
    assert!(out.status.success(), "{}", text(&out));
    c.wait_node(&teleport_lite::config::hostname(), T);
}

/// HAProxy terminating TLS with a certificate of another CA in front of `backend`, and
/// re-encrypting to it: what a man in the middle does.
struct Mitm {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Mitm {
    fn start(port: u16, backend: u16) -> Mitm {
        let dir = tempfile::tempdir().unwrap();
        let other = TestCa::new(dir.path(), "other");
        let pem = dir.path().join("mitm.pem");
        let mut both = std::fs::read_to_string(&other.cert).unwrap();
        both.push_str(&std::fs::read_to_string(&other.key).unwrap());
        std::fs::write(&pem, both).unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout \
                 server 30s\nfrontend fe\n  bind 127.0.0.1:{port} ssl crt {}\n  default_backend \
                 be\nbackend be\n  server p 127.0.0.1:{backend} ssl verify none\n",
                pem.display()
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-f", cfg.to_str().unwrap(), "-db"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy must be installed (scripts/deps.sh installs it)");
        wait_for(Duration::from_secs(10), "haproxy to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Mitm { child, _dir: dir }
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_man_in_the_middle_makes_the_printed_line_fail_before_anything_is_installed() {
    let _one = serial();
    let (web_port, public_port) = (free_port(), free_port());
    let c = cluster(web_port, public_port, "");
    let _mitm = Mitm::start(public_port, web_port);
    let chroot = Chroot::new();
    let (token, line, _) = add_token(&c);
    assert!(
        line.contains(&format!("https://127.0.0.1:{public_port}/")),
        "{line}"
    );
    // The man in the middle does relay the script: only the pin stops it.
    let url = format!("https://127.0.0.1:{public_port}/scripts/{token}/install-node.sh");
    let relayed = Command::new("curl").args(["-fsSk", &url]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&relayed.stdout).contains("teleport-lite installer"),
        "{}",
        text(&relayed)
    );
    let out = chroot.sh(&line);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("public key does not match pinned public key"),
        "{}",
        text(&out)
    );
    assert_nothing_installed(&chroot);
}

/// The `web_pins` the install script carries (the same in scripts with a token, which are
/// rate-limited: not polled here).
fn script_pins(proxy: &str) -> Vec<String> {
    let url = format!("https://{proxy}/scripts/install.sh");
    let out = Command::new("curl").args(["-fsSk", &url]).output().unwrap();
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    let line = script
        .lines()
        .find(|l| l.contains("web_pins=\""))
        .unwrap_or_else(|| panic!("no web_pins in:\n{script}"));
    let pins = line
        .split("web_pins=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    pins.split(';')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn the_line_and_every_proxys_script_pin_all_live_proxies() {
    let web_port = free_port();
    let c = cluster(web_port, web_port, "");
    let mut second = c.proxy_config("second", "127.0.0.1:1", "");
    c.start_proxy(&mut second);
    let (_, line, _) = add_token(&c);
    let pins: Vec<&str> = line
        .split("--pinnedpubkey '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .split(';')
        .collect();
    assert_eq!(pins.len(), 2, "{line}");
    // Each proxy's script pins both, whichever one the load balancer sends a download to.
    for proxy in [format!("127.0.0.1:{web_port}"), second.addr()] {
        let both =
            |got: &[String]| got.len() == 2 && pins.iter().all(|p| got.iter().any(|g| g == p));
        let t = std::time::Instant::now();
        let mut got = script_pins(&proxy);
        while !both(&got) && t.elapsed() < T {
            std::thread::sleep(Duration::from_millis(100));
            got = script_pins(&proxy);
        }
        assert!(both(&got), "{proxy} pins {got:?}, not {pins:?}");
    }
}
