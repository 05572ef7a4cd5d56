//! Heartbeat pacing: a host beats once per interval; one that beats much faster is answered
//! without the work a beat causes (relaying, inventory updates), and closed if it keeps on.
//! Pure: `now` is passed in.

use std::time::{Duration, Instant};

/// Early beats in a row (under half an interval after the last due one) that make a flood.
pub const MAX_EARLY_BEATS: u32 = 20;

/// What to do with one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Do the work of a beat.
    Due,
    /// Answer it, but do nothing else: the last due beat is too recent.
    Early,
    /// Too many early beats in a row: close the stream.
    Flood,
}

#[derive(Debug, Default)]
pub struct Pacer {
    last_due: Option<Instant>,
    early: u32,
}

impl Pacer {
    pub fn on_beat(&mut self, now: Instant, interval: Duration) -> Beat {
        let due = self
            .last_due
            .map_or(true, |t| now.saturating_duration_since(t) >= interval / 2);
        if due {
            self.last_due = Some(now);
            self.early = 0;
            return Beat::Due;
        }
        self.early += 1;
        if self.early > MAX_EARLY_BEATS {
            Beat::Flood
        } else {
            Beat::Early
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(5);

    #[test]
    fn beats_at_the_interval_are_all_due_even_with_jitter_and_bunching() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        let mut t = t0;
        for _ in 0..100 {
            assert_eq!(p.on_beat(t, I), Beat::Due);
            t += I.mul_f64(0.9);
            // A delayed beat arriving together with the next one: one early, then due again.
            assert_eq!(p.on_beat(t, I), Beat::Due);
            assert_eq!(p.on_beat(t + Duration::from_millis(5), I), Beat::Early);
            t += I;
        }
    }

    #[test]
    fn a_flood_is_answered_without_work_then_closed() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert_eq!(p.on_beat(t0, I), Beat::Due);
        for i in 1..=MAX_EARLY_BEATS {
            let t = t0 + Duration::from_millis(u64::from(i));
            assert_eq!(p.on_beat(t, I), Beat::Early);
        }
        assert_eq!(p.on_beat(t0 + Duration::from_millis(100), I), Beat::Flood);
    }
}
