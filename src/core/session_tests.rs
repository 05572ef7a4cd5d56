//! The heartbeat session driven through connects, beats, failures and clock jumps, with no
//! socket and no sleep.

use super::*;

const I: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// Ticks at `now` and connects: the stream is up and beat 1 is out.
fn connect(s: &mut Session, now: Instant) -> Vec<Action> {
    s.tick(now);
    assert_eq!(drain(s), vec![Action::Connect]);
    assert_eq!(s.poll_timeout(), None, "no timer while the driver connects");
    s.connected(now, I);
    drain(s)
}

fn lost_delay(actions: &[Action]) -> Duration {
    match actions {
        [.., Action::Lost { delay, .. }] => *delay,
        other => panic!("expected a loss, got {other:?}"),
    }
}

#[test]
fn connects_beats_and_goes_online_once() {
    let t0 = Instant::now();
    let mut s = Session::new(t0, 1);
    assert!(!s.ever_up());
    let up = connect(&mut s, t0);
    let want = vec![
        Action::Up {
            first: true,
            interval: I,
        },
        Action::SendBeat(1),
    ];
    assert_eq!(up, want);
    assert!(s.awaiting_ack());
    s.acked(t0 + 40 * MS, 1);
    let acks = drain(&mut s);
    assert_eq!(
        acks,
        vec![
            Action::Acked {
                seq: 1,
                rtt: 40 * MS
            },
            Action::Online
        ]
    );
    assert!(!s.awaiting_ack());
    let next = s.poll_timeout().unwrap();
    s.tick(next);
    assert_eq!(drain(&mut s), vec![Action::SendBeat(2)]);
    s.acked(next + MS, 2);
    assert_eq!(
        drain(&mut s),
        vec![Action::Acked { seq: 2, rtt: MS }],
        "online is said once"
    );
}

#[test]
fn a_missed_ack_reconnects_after_a_backoff_and_not_as_new() {
    let t0 = Instant::now();
    let mut s = Session::new(t0, 2);
    connect(&mut s, t0);
    s.acked(t0, 1);
    drain(&mut s);
    let t1 = s.poll_timeout().unwrap();
    s.tick(t1);
    assert_eq!(drain(&mut s), vec![Action::SendBeat(2)]);
    assert_eq!(s.poll_timeout(), Some(t1 + 2 * I));
    s.tick(t1 + 2 * I);
    let lost = drain(&mut s);
    assert!(
        matches!(
            lost[..],
            [Action::Lost {
                cause: Cause::AckTimeout,
                ..
            }]
        ),
        "{lost:?}"
    );
    let delay = lost_delay(&lost);
    assert!(
        delay >= BACKOFF_BASE / 4 && delay <= BACKOFF_BASE,
        "{delay:?}"
    );
    let at = s.poll_timeout().unwrap();
    assert_eq!(at, t1 + 2 * I + delay);
    s.tick(at - MS);
    assert_eq!(drain(&mut s), vec![]);
    let again = connect(&mut s, at);
    assert_eq!(
        again[0],
        Action::Up {
            first: false,
            interval: I
        }
    );
    assert!(s.ever_up());
    // The new stream counts its beats from 1 again, as auth does per stream.
    assert_eq!(again[1], Action::SendBeat(1));
}

#[test]
fn backoff_grows_to_the_cap_and_a_healthy_stream_resets_it() {
    let mut now = Instant::now();
    let mut s = Session::new(now, 3);
    let mut delays = Vec::new();
    for _ in 0..12 {
        s.tick(now);
        assert_eq!(drain(&mut s), vec![Action::Connect]);
        s.failed(now + 100 * MS);
        let delay = lost_delay(&drain(&mut s));
        delays.push(delay);
        now = s.poll_timeout().unwrap();
    }
    assert!(delays[0] <= BACKOFF_BASE);
    // Full jitter: each delay is anywhere in a window that grows, so late ones reach far.
    let longest = |from: usize| *delays[from..].iter().max().unwrap();
    assert!(longest(4) >= BACKOFF_BASE * 8, "{delays:?}");
    assert!(delays.iter().all(|d| *d <= BACKOFF_MAX));
    assert!(longest(8) >= BACKOFF_MAX / 2, "{delays:?}");

    // A stream up for only a few seconds does not reset the backoff (the window stays wide).
    connect(&mut s, now);
    s.failed(now + 5 * I / 2);
    assert!(lost_delay(&drain(&mut s)) > BACKOFF_BASE);
    // One that stayed healthy for HEALTHY_AFTER does.
    now = s.poll_timeout().unwrap();
    connect(&mut s, now);
    s.failed(now + HEALTHY_AFTER);
    assert!(lost_delay(&drain(&mut s)) <= BACKOFF_BASE);
}

#[test]
fn a_wrong_ack_drops_the_stream() {
    let t0 = Instant::now();
    let mut s = Session::new(t0, 4);
    connect(&mut s, t0);
    s.acked(t0, 9);
    let lost = drain(&mut s);
    let want = Cause::BadAck(BadAck::WrongSeq {
        expected: 1,
        got: 9,
    });
    assert!(
        matches!(&lost[..], [Action::Lost { cause, .. }] if *cause == want),
        "{lost:?}"
    );
    // A late ack for the dead stream changes nothing.
    s.acked(t0, 1);
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn a_clock_jumping_back_while_waiting_to_reconnect_does_not_stall_it() {
    let t0 = Instant::now() + Duration::from_secs(7200);
    let mut s = Session::new(t0, 5);
    s.tick(t0);
    drain(&mut s);
    s.failed(t0);
    drain(&mut s);
    let back = t0 - Duration::from_secs(7200);
    s.tick(back);
    assert_eq!(drain(&mut s), vec![]);
    let at = s.poll_timeout().unwrap();
    assert!(
        at <= back + BACKOFF_MAX,
        "connect waits at most one backoff"
    );
    s.tick(at);
    assert_eq!(drain(&mut s), vec![Action::Connect]);
}

#[test]
fn a_far_forward_jump_probes_once_instead_of_blaming_auth() {
    let t0 = Instant::now();
    let mut s = Session::new(t0, 6);
    connect(&mut s, t0);
    // The host sleeps a day with beat 1 in flight: on waking the beat gets a fresh deadline.
    let day = t0 + Duration::from_secs(86_400);
    s.tick(day);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.poll_timeout(), Some(day + 2 * I));
    s.acked(day + MS, 1);
    assert!(matches!(
        drain(&mut s)[..],
        [Action::Acked { seq: 1, .. }, Action::Online]
    ));
    // Idle across a jump: exactly one connect, however long the jump.
    s.failed(day + 2 * MS);
    drain(&mut s);
    s.tick(day + Duration::from_secs(86_400 * 30));
    assert_eq!(drain(&mut s), vec![Action::Connect]);
    s.tick(day + Duration::from_secs(86_400 * 31));
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn shutdown_says_goodbye_only_on_a_live_stream_then_stays_quiet() {
    let t0 = Instant::now();
    let mut s = Session::new(t0, 7);
    connect(&mut s, t0);
    s.shutdown();
    assert_eq!(drain(&mut s), vec![Action::Goodbye]);
    assert_eq!(s.poll_timeout(), None);
    s.tick(t0 + I * 10);
    s.acked(t0, 1);
    s.failed(t0);
    assert_eq!(drain(&mut s), vec![]);

    let mut idle = Session::new(t0, 8);
    idle.shutdown();
    assert_eq!(drain(&mut idle), vec![]);
    idle.connected(t0, I);
    assert_eq!(
        drain(&mut idle),
        vec![],
        "a late connect after shutdown is ignored"
    );
}
