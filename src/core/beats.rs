//! The beat schedule of one live stream (a heartbeat stream to auth, or a tunnel's control
//! stream): one beat in flight at a time, the next one an interval (jittered ±10 %) after its
//! ack, and an ack deadline of two intervals. Sans-I/O: `now` is passed in, nothing sleeps.

use std::time::{Duration, Instant};

use super::{after, Backoff};

/// The shortest interval a server may ask for; shorter would be a flood of our own making.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest: a larger value (it comes from the network) would overflow the deadlines.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Beats are spread by this fraction of the interval so that nodes do not synchronize.
const JITTER: f64 = 0.1;

/// What the schedule asks for at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send `heartbeat {seq}` now.
    Send(u64),
    /// The beat `seq` was not acknowledged in time: the stream is dead.
    Missed(u64),
}

/// An ack that does not fit the schedule: the peer is confused or hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAck {
    /// An ack for a beat other than the one in flight.
    WrongSeq { expected: u64, got: u64 },
    /// An ack while no beat is in flight.
    NotInFlight { got: u64 },
}

impl std::fmt::Display for BadAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadAck::WrongSeq { expected, got } => {
                write!(f, "heartbeat ack for beat {got}, expected {expected}")
            }
            BadAck::NotInFlight { got } => write!(f, "heartbeat ack {got} for no beat sent"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    seq: u64,
    sent: Instant,
    deadline: Instant,
    /// Whether a late wake-up already gave this beat a second deadline.
    extended: bool,
}

#[derive(Debug)]
pub struct Beats {
    interval: Duration,
    seq: u64,
    /// When the next beat is due while none is in flight.
    next: Instant,
    flight: Option<Flight>,
    /// Beats once per this many intervals (a quiet tunnel); the ack deadline stays two
    /// intervals.
    every: u32,
    /// The latest `now` seen, to notice clock jumps.
    last: Instant,
    jitter: Backoff,
}

impl Beats {
    /// A schedule whose first beat is due at once. `interval` is clamped to
    /// [`MIN_INTERVAL`, `MAX_INTERVAL`].
    pub fn new(now: Instant, interval: Duration, seed: u64) -> Self {
        let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        Beats {
            interval,
            seq: 0,
            next: now,
            flight: None,
            every: 1,
            last: now,
            jitter: Backoff::with_seed(interval, interval, seed),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The pause between an ack and the next beat, before jitter.
    fn pause(&self) -> Duration {
        self.interval * self.every
    }

    /// Beats once per `every` intervals from the next ack on (1: every interval). Leaving a
    /// quieter pace for a busier one beats at once if no beat is in flight: the stream takes
    /// over from one that died.
    pub fn set_every(&mut self, now: Instant, every: u32) {
        let every = every.max(1);
        if every < self.every && self.flight.is_none() {
            self.next = self.next.min(now);
        }
        self.every = every;
    }

    pub fn every(&self) -> u32 {
        self.every
    }

    /// How long a beat may wait for its ack.
    pub fn ack_timeout(&self) -> Duration {
        self.interval * 2
    }

    /// Whether a beat waits for its ack (the driver reads the stream only then).
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// When the schedule needs a `tick`: the ack deadline, or the next beat.
    pub fn poll_timeout(&self) -> Instant {
        self.flight.map_or(self.next, |f| f.deadline)
    }

    /// Advances the schedule to `now`.
    pub fn tick(&mut self, now: Instant) -> Option<Beat> {
        self.observe(now);
        match self.flight {
            Some(f) if now >= f.deadline => Some(Beat::Missed(f.seq)),
            Some(_) => None,
            None if now >= self.next => {
                self.seq += 1;
                self.flight = Some(Flight {
                    seq: self.seq,
                    sent: now,
                    deadline: after(now, self.ack_timeout()),
                    extended: false,
                });
                Some(Beat::Send(self.seq))
            }
            None => None,
        }
    }

    /// An ack arrived: returns the round-trip time and schedules the next beat.
    pub fn on_ack(&mut self, now: Instant, seq: u64) -> Result<Duration, BadAck> {
        self.observe(now);
        match self.flight {
            Some(f) if f.seq == seq => {
                self.flight = None;
                let pause = self.jitter.jitter(self.pause(), JITTER);
                self.next = after(now, pause);
                Ok(now.saturating_duration_since(f.sent))
            }
            Some(f) => Err(BadAck::WrongSeq {
                expected: f.seq,
                got: seq,
            }),
            None => Err(BadAck::NotInFlight { got: seq }),
        }
    }

    /// Keeps deadlines sane across clock jumps. Backwards: no deadline may lie further ahead
    /// than it could have been set, or the stream would stall. Far forwards (woken an interval
    /// or more after the ack deadline: a suspended host or a stalled executor), the peer had
    /// no fair chance to answer: the beat in flight gets one more full deadline.
    fn observe(&mut self, now: Instant) {
        if now < self.last {
            let max_pause = self.pause().mul_f64(1.0 + JITTER);
            self.next = self.next.min(after(now, max_pause));
            if let Some(f) = &mut self.flight {
                f.sent = f.sent.min(now);
                f.deadline = f.deadline.min(after(now, self.interval * 2));
            }
        }
        let timeout = self.ack_timeout();
        if let Some(f) = &mut self.flight {
            if !f.extended && now >= after(f.deadline, self.interval) {
                f.extended = true;
                f.deadline = after(now, timeout);
            }
        }
        self.last = self.last.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(5);

    fn acked(b: &mut Beats, now: Instant) -> Instant {
        let Some(Beat::Send(seq)) = b.tick(now) else {
            panic!("no beat due at {now:?}");
        };
        b.on_ack(now + Duration::from_millis(20), seq).unwrap();
        b.poll_timeout()
    }

    #[test]
    fn a_quiet_schedule_beats_every_nth_interval_and_takes_over_at_once() {
        let t0 = Instant::now();
        let mut b = Beats::new(t0, I, 3);
        b.set_every(t0, 6);
        let next = acked(&mut b, t0);
        let gap = next - (t0 + Duration::from_millis(20));
        assert!(
            gap >= (I * 6).mul_f64(0.9) && gap <= (I * 6).mul_f64(1.1),
            "{gap:?}"
        );
        // The ack deadline stays two intervals, not twelve.
        let Some(Beat::Send(seq)) = b.tick(next) else {
            panic!("no beat at {next:?}")
        };
        assert_eq!(b.poll_timeout(), next + I * 2);
        b.on_ack(next, seq).unwrap();
        // Busier again (the tunnel that beat for the node died): a beat at once.
        let later = next + I;
        b.set_every(later, 1);
        assert_eq!(b.tick(later), Some(Beat::Send(seq + 1)));
        b.on_ack(later, seq + 1).unwrap();
        let gap = b.poll_timeout() - later;
        assert!(gap <= I.mul_f64(1.1), "{gap:?}");
        // Quieter while a beat is in flight changes only the pause after its ack.
        let t = b.poll_timeout();
        let Some(Beat::Send(s)) = b.tick(t) else {
            panic!()
        };
        b.set_every(t, 6);
        assert_eq!(b.poll_timeout(), t + I * 2);
        b.on_ack(t, s).unwrap();
        assert!(b.poll_timeout() - t >= (I * 6).mul_f64(0.9));
        // Zero means every interval.
        b.set_every(t, 0);
        assert_eq!(b.every(), 1);
    }

    #[test]
    fn beats_every_interval_with_jitter_and_measures_rtt() {
        let t0 = Instant::now();
        let mut b = Beats::new(t0, I, 1);
        assert_eq!(b.tick(t0), Some(Beat::Send(1)));
        assert!(b.in_flight());
        assert_eq!(b.tick(t0 + Duration::from_secs(1)), None);
        let rtt = b.on_ack(t0 + Duration::from_millis(30), 1).unwrap();
        assert_eq!(rtt, Duration::from_millis(30));
        let mut ack_at = t0 + Duration::from_millis(30);
        let mut gaps = std::collections::BTreeSet::new();
        for seq in 2..50 {
            let next = b.poll_timeout();
            let gap = next - ack_at;
            assert!(gap >= I.mul_f64(0.9) && gap <= I.mul_f64(1.1), "{gap:?}");
            gaps.insert(gap);
            assert_eq!(b.tick(next - Duration::from_millis(1)), None);
            assert_eq!(b.tick(next), Some(Beat::Send(seq)));
            ack_at = next + Duration::from_millis(20);
            assert_eq!(b.on_ack(ack_at, seq), Ok(Duration::from_millis(20)));
        }
        assert!(gaps.len() > 10, "the pause is jittered: {gaps:?}");
    }

    #[test]
    fn a_missing_ack_is_missed_at_two_intervals() {
        let t0 = Instant::now();
        let mut b = Beats::new(t0, I, 1);
        assert_eq!(b.tick(t0), Some(Beat::Send(1)));
        assert_eq!(b.poll_timeout(), t0 + 2 * I);
        assert_eq!(b.tick(t0 + 2 * I - Duration::from_millis(1)), None);
        // Woken a little late by the timer: still the peer's fault.
        let late = t0 + 2 * I + Duration::from_millis(50);
        assert_eq!(b.tick(late), Some(Beat::Missed(1)));
    }

    #[test]
    fn wrong_and_unsolicited_acks_are_refused() {
        let t0 = Instant::now();
        let mut b = Beats::new(t0, I, 1);
        assert_eq!(b.on_ack(t0, 1), Err(BadAck::NotInFlight { got: 1 }));
        b.tick(t0);
        let err = b.on_ack(t0, 7).unwrap_err();
        assert_eq!(
            err,
            BadAck::WrongSeq {
                expected: 1,
                got: 7
            }
        );
        assert!(err.to_string().contains("expected 1"), "{err}");
        assert!(b.on_ack(t0, 1).is_ok());
    }

    #[test]
    fn hostile_intervals_are_clamped() {
        let t0 = Instant::now();
        assert_eq!(Beats::new(t0, Duration::ZERO, 1).interval(), MIN_INTERVAL);
        let mut b = Beats::new(t0, Duration::from_millis(u64::MAX), 1);
        assert_eq!(b.interval(), MAX_INTERVAL);
        assert_eq!(b.tick(t0), Some(Beat::Send(1)));
        assert_eq!(b.poll_timeout(), t0 + 2 * MAX_INTERVAL);
    }

    #[test]
    fn a_clock_jumping_back_does_not_stall_the_schedule() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let mut b = Beats::new(t0, I, 1);
        let next = acked(&mut b, t0);
        // The clock jumps an hour back: the next beat is still at most one interval away.
        let back = t0 - Duration::from_secs(3600);
        assert_eq!(b.tick(back), None);
        assert!(b.poll_timeout() <= back + I.mul_f64(1.1));
        assert!(next > b.poll_timeout());
        assert_eq!(b.tick(b.poll_timeout()), Some(Beat::Send(2)));
        // With a beat in flight, the deadline comes back too, and the RTT does not go negative.
        let back2 = back - Duration::from_secs(60);
        assert_eq!(b.tick(back2), None);
        assert_eq!(b.poll_timeout(), back2 + 2 * I);
        assert_eq!(b.on_ack(back2, 2), Ok(Duration::ZERO));
    }

    #[test]
    fn a_far_forward_jump_sends_one_beat_and_gives_the_peer_a_fair_deadline() {
        let t0 = Instant::now();
        let mut b = Beats::new(t0, I, 1);
        acked(&mut b, t0);
        // Suspended for a day: exactly one beat, not a burst of the missed ones.
        let day = t0 + Duration::from_secs(86_400);
        assert_eq!(b.tick(day), Some(Beat::Send(2)));
        assert_eq!(b.tick(day), None);
        // Suspended again with that beat in flight: one more deadline, counted from waking.
        let later = day + Duration::from_secs(86_400);
        assert_eq!(b.tick(later), None);
        assert_eq!(b.poll_timeout(), later + 2 * I);
        // But only once per beat: then it is missed.
        assert_eq!(b.tick(later + 2 * I), Some(Beat::Missed(2)));
        let much_later = later + Duration::from_secs(86_400);
        assert_eq!(b.tick(much_later), Some(Beat::Missed(2)));
    }
}
