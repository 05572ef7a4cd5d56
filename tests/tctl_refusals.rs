//! What `tctl` says when auth refuses the identity it presents: the file, the reason and the
//! fix, told from the TLS alert auth sent (not from words in a message), and never a network
//! problem or a hint to delete anything.

mod common;

use std::time::Duration;

use common::access::fails_with;
use common::*;
use teleport_lite::cli::tctl::default_identity;
use teleport_lite::pki::identity::Identity;

fn refused_not_blamed_on_the_network(out: &std::process::Output) {
    let t = text(out);
    assert!(!t.contains("cannot reach"), "{t}");
    assert!(!t.contains("is the auth service running"), "{t}");
    assert!(!t.contains("remove"), "{t}");
}

#[test]
fn an_expired_identity_is_named_with_its_fix() {
    let c = Cluster::start();
    let path = c.path().join("dave.pem");
    c.tctl_ok(&[
        "auth",
        "sign",
        "--user=dave",
        "--ttl=2s",
        &format!("--out={}", path.display()),
    ]);
    let not_after = Identity::load(&path).unwrap().not_after().unwrap();
    wait_for(Duration::from_secs(10), "the identity to expire", || {
        (teleport_lite::clock::now_unix() > not_after).then_some(())
    });

    let out = c.tctl(&["-i", path.to_str().unwrap(), "nodes", "ls"]);
    fails_with(
        &out,
        &format!(
            "ERROR: the server refused the identity {}: its certificate has expired: ask an \
             admin for a new one (tctl auth sign)",
            path.display()
        ),
    );
    refused_not_blamed_on_the_network(&out);
}

/// A's CA with B's admin key and certificate: A's server passes our check, so A must refuse
/// the certificate itself.
fn foreign_identity(a: &Cluster, b: &Cluster) -> std::path::PathBuf {
    let ours = Identity::load(&default_identity(&a.path().join("auth"))).unwrap();
    let theirs = Identity::load(&default_identity(&b.path().join("auth"))).unwrap();
    let spliced = Identity {
        ca_pems: ours.ca_pems,
        ..theirs
    };
    let path = a.path().join("foreign.pem");
    spliced.save(&path).unwrap();
    path
}

/// An auth server like `Cluster::start()`, under another cluster name.
fn cluster_named(name: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "version: v3\nteleport:\n  nodename: authhost\n  data_dir: {}\nauth_service:\n  \
         enabled: yes\n  listen_addr: 127.0.0.1:{port}\n  cluster_name: {name}\n\
         ssh_service:\n  enabled: no\n",
        dir.path().join("auth").display()
    );
    Cluster::launch(dir, port, &yaml)
}

#[test]
fn an_identity_of_another_cluster_is_refused_as_foreign() {
    let a = Cluster::start();
    let b = cluster_named("other.test");
    let path = foreign_identity(&a, &b);
    let out = a.tctl(&["-i", path.to_str().unwrap(), "status"]);
    fails_with(
        &out,
        &format!(
            "ERROR: the server refused the identity {}: it was not issued by this cluster's CA",
            path.display()
        ),
    );
    refused_not_blamed_on_the_network(&out);
    assert!(a.tctl(&["status"]).status.success(), "auth still serves");
}

#[test]
fn an_identity_of_a_namesake_cluster_is_refused_for_its_signature() {
    // Same cluster name, different CA key: the issuer name matches, the signature does not.
    let a = Cluster::start();
    let b = Cluster::start();
    let path = foreign_identity(&a, &b);
    let out = a.tctl(&["-i", path.to_str().unwrap(), "nodes", "ls"]);
    fails_with(
        &out,
        &format!(
            "ERROR: the server refused the identity {}: its signature does not verify with this \
             cluster's CA: it was issued by another cluster of the same name",
            path.display()
        ),
    );
    refused_not_blamed_on_the_network(&out);
}
