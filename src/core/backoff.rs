//! Reconnect backoff: capped exponential with jitter. Pure: the seed is the only input that
//! is not passed in, and `with_seed` fixes it.

use std::time::Duration;

/// A seed from the OS random source, for jitter: spread, not secrecy.
pub fn os_seed() -> u64 {
    u64::from_le_bytes(crate::secret::random_bytes::<8>())
}

/// Capped exponential backoff with full jitter, reset after a healthy period.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
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
            attempt: 0,
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

    /// The next delay: "full jitter", uniform in [base/4, cap] where cap doubles from `base`
    /// up to `max`. Agents that failed together (a restarted server) arrive spread evenly
    /// over the whole window instead of in a herd at its second half; the floor keeps a lone
    /// agent from retrying in a tight loop, and the small first cap lets it retry at once.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max)
            .as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base.as_millis() as u64 / 4).min(cap);
        Duration::from_millis(floor + self.rand() % (cap - floor + 1))
    }

    /// The same as `next_delay` (which is full jitter now); kept for callers that asked for
    /// full jitter by name.
    pub fn next_delay_full(&mut self) -> Duration {
        self.next_delay()
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
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
}
