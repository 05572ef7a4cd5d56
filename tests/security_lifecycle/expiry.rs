//! Certificates that ended (expired, or of a CA a rotation retired), and rotations driven in
//! odd orders.

use super::*;

#[test]
fn rotating_twice_or_rolling_back_at_odd_times_is_refused_and_changes_nothing() {
    // Catches: a second rotation started over a running one (a new "next" CA would orphan
    // every certificate the first one signed); phases out of order; a rollback from standby
    // or a rollback that does not give back the original CA; any of these cutting off a host.
    let c = lifecycle::cluster("");
    let node = raw::join(&c, "Node", "steady-node");
    let original = status_pins(&c);
    assert_eq!(original.len(), 1, "{original:?}");
    let refused = |out: std::process::Output, says: &str| {
        assert!(!out.status.success(), "accepted: {}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    };
    refused(
        rotate(&c, "rollback"),
        "cannot go from phase standby to rollback",
    );
    refused(
        rotate(&c, "update_servers"),
        "the order is init, update_clients",
    );
    c.tctl_ok(&["auth", "rotate", "--type=host", "--grace-period=1h"]);
    let during = status_pins(&c);
    assert_eq!(during.len(), 2, "{during:?}");
    let again = c.tctl(&["auth", "rotate", "--type=host", "--grace-period=1h"]);
    refused(again, "already in progress");
    refused(rotate(&c, "init"), "cannot go from phase init to init");
    refused(
        rotate(&c, "update_servers"),
        "cannot go from phase init to update_servers",
    );
    assert_eq!(status_pins(&c), during, "a refused step changed the CAs");
    for phase in ["update_clients", "rollback"] {
        let out = rotate(&c, phase);
        assert!(out.status.success(), "{phase}: {}", text(&out));
    }
    refused(
        rotate(&c, "update_servers"),
        "cannot go from phase rollback",
    );
    refused(
        rotate(&c, "rollback"),
        "cannot go from phase rollback to rollback",
    );
    assert!(rotate(&c, "standby").status.success());
    assert_eq!(
        status_pins(&c),
        original,
        "the rollback did not restore the CA"
    );
    // The node's certificate from before it all still opens a stream and beats.
    block(async {
        let mut s = raw::stream(&c.addr(), &node).await;
        assert!(raw::beat(&mut s, 1).await);
    });
}
