//! Reconnect backoff: capped, growing, with full jitter. Pure: the seed is the only input
//! that is not passed in, and `with_seed` fixes it.

use std::time::Duration;

/// A seed from the OS random source, for jitter: spread, not secrecy.
pub fn os_seed() -> u64 {
    u64::from_le_bytes(crate::secret::random_bytes::<8>())
}

/// Capped backoff with full jitter, reset after a healthy period. The window grows by twice
/// each delay drawn: it stays `base` + twice the time already waited, which doubles it per
/// attempt on average, as exponential backoff does, but never lets a node that drew short
/// delays during a short outage jump to a window much longer than the outage.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// The window of the next delay.
    cap: Duration,
    seed: u64,
}

impl Backoff {
    /// A backoff seeded from the OS, so that agents that failed together spread out.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::with_seed(
            base,
            max,
            u64::from_le_bytes(crate::secret::random_bytes::<8>()),
        )
    }

    /// A backoff with a chosen seed: the same seed gives the same delays (for tests).
    pub fn with_seed(base: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            base,
            max,
            cap: base,
            seed: seed | 1,
        }
    }

    /// The longest delay `next_delay` can return.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// A random number (xorshift); jitter needs spread, not secrecy.
    fn rand(&mut self) -> u64 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }

    /// The next delay: "full jitter", uniform in [base/4, cap]. Agents that failed together
    /// (a restarted server) arrive spread evenly over the whole window instead of in a herd
    /// at its second half. The floor keeps a lone agent from retrying in a tight loop; the
    /// first window is `base`, so it retries at once. With the window at `base` + twice the
    /// time waited, after an outage of T every agent is back within about 2T (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap.clamp(self.base.min(self.max), self.max);
        let (cap_ms, base_ms) = (cap.as_millis() as u64, self.base.as_millis() as u64);
        let floor = (base_ms / 4).min(cap_ms);
        let delay = Duration::from_millis(floor + self.rand() % (cap_ms - floor + 1));
        self.cap = cap.saturating_add(delay.saturating_mul(2)).min(self.max);
        delay
    }

    /// The same as `next_delay` (which is full jitter now); kept for callers that asked for
    /// full jitter by name.
    pub fn next_delay_full(&mut self) -> Duration {
        self.next_delay()
    }

    pub fn reset(&mut self) {
        self.cap = self.base;
    }

    /// A value in [d*(1-frac), d*(1+frac)], to keep periodic work from synchronizing.
    pub fn jitter(&mut self, d: Duration, frac: f64) -> Duration {
        let span = (d.as_millis() as f64 * frac) as u64;
        if span == 0 {
            return d;
        }
        let off = self.rand() % (2 * span + 1);
        Duration::from_millis((d.as_millis() as u64 + off).saturating_sub(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_jitters_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(25) && d <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    /// Full jitter: at the cap, delays cover the whole [floor, cap] window evenly, not only
    /// its upper half (which is what "equal jitter" did).
    #[test]
    fn delays_at_the_cap_spread_over_the_whole_window() {
        let (base, max) = (Duration::from_millis(250), Duration::from_secs(30));
        let mut b = Backoff::with_seed(base, max, 42);
        for _ in 0..10 {
            b.next_delay();
        }
        let mut bins = [0u32; 10];
        for _ in 0..10_000 {
            let d = b.next_delay();
            assert!(d >= base / 4 && d <= max, "{d:?}");
            bins[(d.as_millis() as usize * 10 / 30_001).min(9)] += 1;
        }
        // Each tenth of the window gets about 1,000 of 10,000.
        assert!(bins.iter().all(|&n| (800..1200).contains(&n)), "{bins:?}");
    }

    #[test]
    fn two_agents_do_not_share_delays() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let da: Vec<_> = (0..8).map(|_| a.next_delay()).collect();
        let db: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_ne!(da, db);
    }

    #[test]
    fn a_seed_fixes_the_sequence() {
        let mut a = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(60), 7);
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(60), 7);
        for _ in 0..8 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }

    /// The window never runs ahead of the time waited: base + twice the total so far. After
    /// a short outage no agent is left with a window much longer than it.
    #[test]
    fn the_window_is_base_plus_twice_the_time_waited() {
        let (base, max) = (Duration::from_millis(250), Duration::from_secs(30));
        for seed in 0..200 {
            let mut b = Backoff::with_seed(base, max, seed);
            let mut waited = Duration::ZERO;
            for _ in 0..40 {
                let d = b.next_delay();
                assert!(d <= (base + waited * 2).min(max), "seed {seed}: {d:?}");
                waited += d;
            }
            // It did grow: 40 attempts reach the cap.
            assert_eq!(b.cap, max, "seed {seed}");
        }
    }
}
