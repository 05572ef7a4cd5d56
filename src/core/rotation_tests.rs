//! Unit tests of the rotation phases, signers and renewal pacing.

use super::*;

#[test]
fn an_auto_rotation_moves_on_each_third_of_the_grace_period() {
    let mut r = Rotation::default();
    assert_eq!(r.start_auto(30, 100), Ok(Effect::GenerateNext));
    assert!(r.start_auto(30, 101).is_err(), "one rotation at a time");
    assert_eq!(r.signer(false), Which::Current);
    assert_eq!(r.advance(109), None);
    assert_eq!(r.advance(110), Some((Phase::UpdateClients, Effect::None)));
    assert_eq!(
        (r.signer(false), r.signer(true)),
        (Which::Next, Which::Current)
    );
    assert_eq!(r.advance(120), Some((Phase::UpdateServers, Effect::None)));
    assert_eq!(r.signer(true), Which::Next);
    assert_eq!(r.info().next_phase_at, 130);
    assert_eq!(r.advance(131), Some((Phase::Standby, Effect::Promote)));
    assert_eq!(r.info().state, "standby");
    assert_eq!(r.last_rotated, 131);
    assert_eq!(r.changed, 131);
    assert!(!r.trusts_next());
    assert_eq!(r.advance(1000), None);
}

#[test]
fn manual_steps_follow_the_order_and_rollback_returns_to_the_old_ca() {
    let mut r = Rotation::default();
    assert!(r.manual(Phase::UpdateClients, 1).is_err());
    assert!(r.manual(Phase::Rollback, 1).is_err());
    assert_eq!(r.manual(Phase::Init, 1), Ok(Effect::GenerateNext));
    assert!(r.manual(Phase::UpdateServers, 2).is_err());
    assert_eq!(r.manual(Phase::UpdateClients, 2), Ok(Effect::None));
    assert_eq!(
        r.advance(1_000_000),
        None,
        "manual rotations never move alone"
    );
    assert_eq!(r.manual(Phase::Rollback, 3), Ok(Effect::None));
    assert_eq!(r.signer(false), Which::Current);
    assert!(
        r.trusts_next(),
        "hosts may still hold certificates of the new CA"
    );
    assert!(r.manual(Phase::Init, 4).is_err());
    assert_eq!(r.manual(Phase::Standby, 4), Ok(Effect::DropNext));
    assert_eq!(r.last_rotated, 0, "a rollback is not a rotation");
}

#[test]
fn certificates_are_renewed_late_in_life_on_trust_changes_and_when_too_long() {
    let cert = CertFacts {
        issuer: b"ca-1".to_vec(),
        issued: 0,
        not_after: 90,
    };
    assert_eq!(cert.renew_at(), 60);
    // `changed` -1: no rotation since before the certificate.
    assert!(!must_renew(&cert, b"ca-1", -1, 90, 59));
    assert!(must_renew(&cert, b"ca-1", -1, 90, 60));
    assert!(
        must_renew(&cert, b"ca-2", -1, 90, 1),
        "signed by another CA"
    );
    assert!(
        must_renew(&cert, b"ca-1", 1, 90, 1),
        "issued before a change"
    );
    assert!(
        must_renew(&cert, b"ca-1", 0, 90, 1),
        "in the second of a change"
    );
    assert!(!must_renew(&cert, b"ca-1", -1, 90, 1));
    assert!(
        must_renew(&cert, b"ca-1", -1, 10, 1),
        "longer than the lifetime"
    );
}

#[test]
fn a_host_renews_once_per_gap_whatever_the_connection_unless_a_phase_began() {
    assert!(host_may_renew(None, 100, 0, 86_400));
    assert!(!host_may_renew(Some(95), 100, 0, 86_400));
    assert!(host_may_renew(Some(90), 100, 0, 86_400));
    assert!(
        host_may_renew(Some(95), 100, 96, 86_400),
        "a phase began since"
    );
    assert!(
        host_may_renew(Some(96), 100, 96, 86_400),
        "in the second it began"
    );
    assert!(!host_may_renew(Some(97), 100, 96, 86_400));
}

#[test]
fn attempts_are_paced_whether_they_succeed_or_not_and_a_flood_is_named() {
    let mut p = RenewPacer::default();
    assert_eq!(p.attempt(100, 0, 86_400), Pace::Go);
    for _ in 0..crate::proto::pace::MAX_EARLY_BEATS {
        assert_eq!(p.attempt(100, 0, 86_400), Pace::TooSoon);
    }
    assert_eq!(p.attempt(100, 0, 86_400), Pace::Flood);
    assert_eq!(p.attempt(110, 0, 86_400), Pace::Go, "the gap passed");
    assert_eq!(
        p.attempt(110, 0, 86_400),
        Pace::TooSoon,
        "the count starts over"
    );
    assert_eq!(
        p.attempt(111, 111, 86_400),
        Pace::Go,
        "a rotation phase began"
    );
}

#[test]
fn phases_parse_by_their_teleport_names() {
    for p in [
        "init",
        "update_clients",
        "update_servers",
        "standby",
        "rollback",
    ] {
        assert_eq!(Phase::parse(p).unwrap().name(), p);
    }
    assert!(Phase::parse("updateclients")
        .unwrap_err()
        .contains("update_clients"));
}
