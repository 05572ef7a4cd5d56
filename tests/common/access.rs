//! People's access to nodes: a cluster with a proxy and a node joined through it, user
//! identities from `tctl auth sign`, and dials with them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, text, Cluster, Node};

/// Auth and a proxy in one process, and one node joined through the proxy.
pub struct Access {
    pub c: Cluster,
    pub node: Node,
    pub proxy: String,
}

impl Access {
    /// A cluster whose proxy lets user identities dial `user_ports` on nodes.
    pub fn start(node_name: &str, user_ports: &[u16]) -> Access {
        let web = free_port();
        let ports: Vec<String> = user_ports.iter().map(u16::to_string).collect();
        let extra = format!("  user_dial_ports: [{}]\n", ports.join(", "));
        let c = Cluster::start_with_proxy_config(false, web, &extra);
        let proxy = format!("127.0.0.1:{web}");
        let mut node = Node::new(node_name);
        node.start_via_proxy(&proxy, &c.token("node", "30m"), Some(&c.pin()));
        c.wait_tunnels(node_name, 1, Duration::from_secs(30));
        Access { c, node, proxy }
    }

    /// `tctl auth sign --user=USER --ttl=TTL --out=DIR/USER.pem` as the admin; the file's path.
    pub fn sign(&self, user: &str, ttl: &str) -> PathBuf {
        let out = self.c.path().join(format!("{user}.pem"));
        self.c.tctl_ok(&[
            "auth",
            "sign",
            &format!("--user={user}"),
            &format!("--ttl={ttl}"),
            &format!("--out={}", out.display()),
        ]);
        out
    }

    /// `tctl -i ID ARGS` with no config: what a workstation holding only the file can do.
    pub fn tctl_as(&self, id: &Path, args: &[&str]) -> Output {
        Command::new(&self.c.tctl)
            .arg("-i")
            .arg(id)
            .args(args)
            .env("HOME", self.c.path())
            .output()
            .unwrap()
    }

    /// `tctl -i ID nodes dial --proxy=P NODE TARGET`, spawned with piped stdio.
    pub fn spawn_dial(&self, id: &Path, node: &str, target: &str) -> std::process::Child {
        Command::new(&self.c.tctl)
            .arg("-i")
            .arg(id)
            .args([
                "nodes",
                "dial",
                &format!("--proxy={}", self.proxy),
                node,
                target,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A dial with `input` on stdin (then end of input), run to its end.
    pub fn dial_as(&self, id: &Path, node: &str, target: &str, input: &[u8]) -> Output {
        let mut child = self.spawn_dial(id, node, target);
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }
}

/// Asserts that `out` failed and its output contains `needle`.
pub fn fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success(), "unexpected success: {}", text(out));
    assert!(
        text(out).contains(needle),
        "{needle:?} not in: {}",
        text(out)
    );
}
