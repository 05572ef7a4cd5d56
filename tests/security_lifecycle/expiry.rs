//! Certificates that ended (expired, or of a CA a rotation retired), and rotations driven in
//! odd orders.

use super::*;

#[test]
fn a_stream_or_link_cannot_renew_once_its_certificate_has_expired() {
    // WAS VULNERABLE (fixed). Auth judges a connection's certificate (renew::still_valid) on heartbeats
    // only: a node's stream or a proxy's link that sends renewals and no heartbeats stays open
    // past its certificate's expiry and is then renewed (the same holds for a certificate of
    // a CA dropped by a rotation). Fix: call renew::still_valid(&state, &cert, now) before
    // signing in the Renew branch of streams::heartbeat_stream and for a proxy's own
    // RelayRenew in link::proxy_link, and close the connection with that error as the
    // heartbeat branch does.
    let c = lifecycle::cluster("  host_cert_ttl: 4s\n");
    let addr = c.addr();
    let node = raw::join(&c, "Node", "expiring-node");
    let p = raw::join(&c, "Proxy", "expiring-proxy");
    let (stream, link) = block(async {
        let mut s = raw::stream(&addr, &node).await;
        let mut l = raw::link(&addr, &p).await;
        let expired = node.not_after().unwrap().max(p.not_after().unwrap());
        // Both stay open without a heartbeat (the idle limit is 3 s): auth answers a
        // renewal with a bad CSR, and takes a relayed goodbye for a host it does not know.
        let goodbye = Request::RelayGoodbye {
            host_id: "00000000-0000-4000-8000-000000000000".into(),
        };
        while now_unix() <= expired {
            keep_alive(&mut s).await;
            l.send(&goodbye).await.unwrap();
            smol::Timer::after(KEEP_ALIVE).await;
        }
        let stream = renew_unpaced(&mut s, || raw::renew_of(&node).1).await;
        let mut n = 0;
        let link = renew_unpaced_link(&mut l, || {
            n += 1;
            raw::own_relay(n, &p)
        })
        .await;
        (stream, link)
    });
    assert!(
        !stream.renewed() && !link.renewed(),
        "after its certificate expired, the node's open stream was answered {} and the proxy's \
         open link {}",
        brief(&stream),
        brief(&link)
    );
}

#[test]
fn a_certificate_of_a_retired_ca_renews_nowhere_once_its_30_s_window_closed() {
    // WAS VULNERABLE (fixed) twice. (1) As above, a node's stream opened before the rotation, sending
    // renewals and no heartbeats, is renewed long after the 30 s window. (2) The window is
    // measured from the last phase change (Rotation::changed), not from when the CA was
    // retired: every later phase change (here the next rotation's init) reopens it, and a
    // proxy identity can again trade a certificate of the retired CA (say one minted with
    // its leaked key) for one of the current CA. Fix (2): store when the CA was retired
    // (`retired_at` next to `retired` in cas.rs, set by Promote and DropNext) and use it in
    // AuthState::verifies_renewing and renew::still_valid instead of `rotation.changed`.
    let c = lifecycle::cluster("");
    let addr = c.addr();
    let old = raw::join(&c, "Node", "slept-through");
    let (stream, reopened) = block(async {
        let mut s = raw::stream(&addr, &old).await;
        for phase in ["init", "update_clients", "update_servers", "standby"] {
            let out = rotate(&c, phase);
            assert!(out.status.success(), "{phase}: {}", text(&out));
            keep_alive(&mut s).await;
        }
        let p = raw::join(&c, "Proxy", "new-ca-proxy");
        keep_alive(&mut s).await;
        let mut l = raw::link_when_trusted(&addr, &p).await;
        keep_alive(&mut s).await;
        // Until the window closes, relayed renewals with the old certificate are signed.
        let start = Instant::now();
        let mut kept = Instant::now();
        for n in 1.. {
            if kept.elapsed() >= KEEP_ALIVE {
                keep_alive(&mut s).await;
                kept = Instant::now();
            }
            l.send(&raw::relay_of(n, &old)).await.unwrap();
            let o = raw::relay_answer(&mut l, n).await;
            if is(&o, ErrorCode::AccessDenied, "not one this cluster issued") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(50),
                "window still open: {o:?}"
            );
            smol::Timer::after(Duration::from_millis(1000)).await;
        }
        let stream = renew_unpaced(&mut s, || raw::renew_of(&old).1).await;
        let out = rotate(&c, "init");
        assert!(out.status.success(), "{}", text(&out));
        let mut n = 1000;
        let reopened = renew_unpaced_link(&mut l, || {
            n += 1;
            raw::relay_of(n, &old)
        })
        .await;
        (stream, reopened)
    });
    assert!(
        !stream.renewed() && !reopened.renewed(),
        "a certificate of the CA the rotation retired, after its 30 s window: on the stream \
         opened before the rotation it was answered {}; relayed by a proxy after the next \
         rotation began it was answered {}",
        brief(&stream),
        brief(&reopened)
    );
}

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
