//! What a stolen proxy identity can make a node believe.

use super::*;

#[test]
fn a_stolen_proxy_identity_cannot_make_a_node_trust_a_ca_of_its_choosing() {
    // WAS VULNERABLE (fixed). A tunnelled node's renewal answer comes through the proxy, and the agent
    // stores whatever CA list it carries (join::renew::apply): a proxy identity (stolen, or a
    // proxy later locked) relays the renewal honestly, adds its own CA to the answer, and the
    // node trusts that CA for good. The attacker then poses as any proxy (or auth) to the node
    // and dials its local services, even after the stolen identity is locked. Fix: the agent
    // must accept from a `renewed` answer only CA certificates auth vouches for, e.g. auth
    // signs the CA list with the key of the CA that issued the node's current certificate (a
    // new `#[serde(default)] ca_proof` in Renewed) and apply() verifies it against the CAs the
    // node already trusts; apply() should also check that the certificate is for the new key
    // and chains to one of those CAs.
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let stolen = Identity::load(&c.path().join("auth/proxy-identity.pem")).unwrap();
    let mut n = Node::new("victim");
    n.start_via_proxy(
        &format!("127.0.0.1:{web}"),
        &c.token("node", "30m"),
        Some(&c.pin()),
    );
    c.wait_tunnels("victim", 1, T);
    n.proc().stop();
    let echo = echo_server();
    let evil = EvilProxy::start(stolen, c.addr(), echo);
    let cfg = n.configure_via_proxy(&evil.addr(), &c.token("node", "30m"), Some(&c.pin()));
    n.spawn(&["start".into(), "-c".into(), cfg.display().to_string()]);
    let relayed = evil.wait_event(&["sent the tampered answer", "auth did not renew"], T);
    assert_eq!(relayed, "sent the tampered answer", "{:?}", evil.events());
    // The agent has handled the answer once it says anything more on the tunnel.
    evil.wait_event(&["after the tampered answer"], T);
    let stored = fs::read_to_string(node_identity_path(&n)).unwrap();
    let trusts_attacker = stored.contains(evil.attacker_ca.cert_pem.trim());
    // The theft is noticed: the stolen proxy identity is locked. Too late for this node.
    let stolen_id =
        raw::host_id(&Identity::load(&c.path().join("auth/proxy-identity.pem")).unwrap());
    c.tctl_ok(&[
        "lock",
        &format!("--server-id={stolen_id}"),
        "--message=stolen",
    ]);
    evil.impersonate();
    let next = evil.wait_event(
        &["handshake refused (impostor)", "tunnel hello (impostor)"],
        T,
    );
    let dialled = if next.starts_with("tunnel hello") {
        evil.wait_event(&["dialled", "dial refused", "could not open"], T)
    } else {
        String::new()
    };
    assert!(
        !trusts_attacker && next.starts_with("handshake refused"),
        "after one renewal through a proxy identity the node trusts the attacker's CA \
         (node-identity.pem holds it: {trusts_attacker}); a server with a certificate of that \
         CA got: {next:?}; {dialled:?}"
    );
}
