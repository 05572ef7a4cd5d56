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

    /// The next delay: uniform in [cap/2, cap] where cap doubles up to `max`, so many agents
    /// that failed together spread out instead of retrying in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap.as_millis() as u64 / 2;
        Duration::from_millis(half + self.rand() % (half + 1))
    }

    /// Like `next_delay` but uniform in [0, cap]: spreads agents that keep colliding on the
    /// same choices (a round-robin balancer fed by many agents in lockstep) the most.
    pub fn next_delay_full(&mut self) -> Duration {
        let cap = self.next_delay().as_millis() as u64;
        Duration::from_millis(self.rand() % (cap + 1))
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
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2));
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
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
