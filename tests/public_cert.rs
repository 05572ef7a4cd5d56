//! A proxy that shows browsers a publicly trusted certificate (`https_keypairs`, here from a
//! test CA that `SSL_CERT_FILE` trusts) still joins pinned nodes: with `--ca-pin` the node asks
//! for the proxy's cluster certificate and verifies it as the cluster's Proxy, as tunnels do.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::certs::TestCa;
use common::*;

const T: Duration = Duration::from_secs(30);

/// `teleport node configure --proxy=...` then `teleport start`, with `SSL_CERT_FILE` set.
fn start_trusting(node: &mut Node, proxy: &str, token: &str, pin: Option<&str>, roots: &Path) {
    let cfg = node.configure_via_proxy(proxy, token, pin);
    let log = node.dir.path().join(format!("{}.log", node.name));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin())
        .args(["start", "-c", cfg.to_str().unwrap()])
        .env("SSL_CERT_FILE", roots)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    node.proc = Some(Proc {
        child,
        log,
        name: node.name.clone(),
    });
}

#[test]
fn pinned_and_unpinned_nodes_join_and_tunnel_through_a_proxy_with_a_public_certificate() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "public");
    let mut p = c.proxy_config("public-proxy", "localhost:3080", &ca.keypairs_yaml());
    let addr = p.addr();
    c.start_proxy(&mut p);
    // Browsers and curl see the test CA's certificate, and trust it through the test CA.
    let find = Command::new("curl")
        .args(["-fsS", "--cacert"])
        .arg(&ca.ca_cert)
        .arg(format!("https://{addr}/webapi/find"))
        .output()
        .unwrap();
    assert!(find.status.success(), "{}", text(&find));
    let token = c.token("node", "30m");

    let mut pinned = Node::new("pinned-public");
    start_trusting(&mut pinned, &addr, &token, Some(&c.pin()), &ca.ca_cert);
    assert_eq!(c.wait_tunnels("pinned-public", 1, T), vec!["public-proxy"]);

    // Without a pin the public certificate is what the node verifies, by SSL_CERT_FILE.
    let mut unpinned = Node::new("unpinned-public");
    start_trusting(&mut unpinned, &addr, &token, None, &ca.ca_cert);
    assert_eq!(
        c.wait_tunnels("unpinned-public", 1, T),
        vec!["public-proxy"]
    );
}
