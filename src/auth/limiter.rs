//! Per-source-address token buckets for unauthenticated requests (CA fetch, join). Numbers
//! follow Teleport's "high" limiter: 120 a minute on average, bursts of 480.

use std::collections::HashMap;
use std::net::IpAddr;

pub const RATE_PER_MIN: f64 = 120.0;
pub const BURST: f64 = 480.0;
/// Buckets idle this long are dropped so the map cannot grow without bound.
const IDLE_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Default)]
pub struct Limiter {
    buckets: HashMap<IpAddr, (f64, u64)>,
}

impl Limiter {
    /// Takes one request from `ip`'s bucket; false if it is empty.
    pub fn allow(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        if self.buckets.len() > 100_000 {
            self.buckets
                .retain(|_, (_, last)| now_ms.saturating_sub(*last) < IDLE_MS);
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((BURST, now_ms));
        let refill = now_ms.saturating_sub(*last) as f64 * RATE_PER_MIN / 60_000.0;
        *tokens = (*tokens + refill).min(BURST);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let mut l = Limiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..BURST as usize {
            assert!(l.allow(ip, 0));
        }
        assert!(!l.allow(ip, 0));
        assert!(l.allow(other, 0));
        // Half a second refills one request at 120/min.
        assert!(l.allow(ip, 500));
        assert!(!l.allow(ip, 500));
    }
}
