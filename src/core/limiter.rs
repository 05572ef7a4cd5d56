//! Per-source token buckets for unauthenticated requests (CA fetch, join, install-token
//! checks). Numbers follow Teleport's "high" limiter: 120 a minute on average, bursts of 480.
//!
//! A source is an IPv4 address or an IPv6 /64 (the smallest block a host is usually given, so
//! one attacker's /64 is one bucket); IPv4-mapped IPv6 addresses count as their IPv4 address.
//! Memory is bounded: at most `MAX_BUCKETS` sources are tracked; buckets idle long enough to
//! have refilled are dropped by a sweep that runs at most once per `SWEEP_EVERY_MS`, and while
//! the table is full, new sources share one overflow bucket. Time is passed in (`now_ms`).

use std::collections::HashMap;
use std::net::IpAddr;

pub const RATE_PER_MIN: f64 = 120.0;
pub const BURST: f64 = 480.0;
/// 7/8 of 65,536: the most entries a 65,536-slot hash table holds (about 2 MiB).
pub const MAX_BUCKETS: usize = 57_344;
/// A bucket idle this long is full again, so dropping it changes nothing (4 minutes).
const IDLE_MS: u64 = (BURST / RATE_PER_MIN * 60_000.0) as u64;
/// The idle sweep (O(buckets)) runs at most this often.
const SWEEP_EVERY_MS: u64 = 60_000;

/// What a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(a) => Source::V4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: u64,
}

impl Bucket {
    fn full(now_ms: u64) -> Bucket {
        Bucket {
            tokens: BURST,
            last: now_ms,
        }
    }

    fn take(&mut self, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.last) as f64 * RATE_PER_MIN / 60_000.0;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = self.last.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
pub struct Limiter {
    buckets: HashMap<Source, Bucket>,
    /// Shared by new sources while the table is full.
    overflow: Bucket,
    max_buckets: usize,
    last_sweep: u64,
    sweeps: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::with_max_buckets(MAX_BUCKETS)
    }
}

impl Limiter {
    /// A limiter tracking at most `max` sources on their own.
    pub fn with_max_buckets(max: usize) -> Self {
        Limiter {
            buckets: HashMap::new(),
            overflow: Bucket::full(0),
            max_buckets: max,
            last_sweep: 0,
            sweeps: 0,
        }
    }

    /// Takes one request from the bucket of `ip`'s source; false if it is empty.
    pub fn allow(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let key = Source::of(ip);
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.take(now_ms);
        }
        if self.buckets.len() >= self.max_buckets
            && now_ms.saturating_sub(self.last_sweep) >= SWEEP_EVERY_MS
        {
            self.last_sweep = now_ms;
            self.sweeps = self.sweeps.saturating_add(1);
            self.buckets
                .retain(|_, b| now_ms.saturating_sub(b.last) < IDLE_MS);
        }
        if self.buckets.len() >= self.max_buckets {
            return self.overflow.take(now_ms);
        }
        let mut b = Bucket::full(now_ms);
        let allowed = b.take(now_ms);
        self.buckets.insert(key, b);
        allowed
    }

    /// Sources tracked on their own.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How many idle sweeps ran (for tests and metrics).
    pub fn sweeps(&self) -> u64 {
        self.sweeps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn drain(l: &mut Limiter, addr: IpAddr, now: u64) {
        for _ in 0..BURST as usize {
            assert!(l.allow(addr, now), "{addr}");
        }
        assert!(!l.allow(addr, now), "{addr}");
    }

    #[test]
    fn bursts_then_refills() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.1");
        drain(&mut l, a, 0);
        assert!(l.allow(ip("192.0.2.2"), 0));
        // Half a second refills one request at 120/min.
        assert!(l.allow(a, 500));
        assert!(!l.allow(a, 500));
    }

    #[test]
    fn ipv6_sources_are_keyed_per_64() {
        let mut l = Limiter::default();
        drain(&mut l, ip("2001:db8:1:2::1"), 0);
        // Any other address of the same /64 shares the empty bucket.
        assert!(!l.allow(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 0));
        assert!(!l.allow(ip("2001:db8:1:2:1234::99"), 0));
        // The neighbouring /64 has its own.
        assert!(l.allow(ip("2001:db8:1:3::1"), 0));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let mut l = Limiter::default();
        drain(&mut l, ip("198.51.100.7"), 0);
        assert!(!l.allow(ip("::ffff:198.51.100.7"), 0));
        assert!(l.allow(ip("::ffff:198.51.100.8"), 0));
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        // Loopback ::1 is not 0.0.0.1.
        assert_ne!(Source::of(ip("::1")), Source::of(ip("0.0.0.1")));
    }

    #[test]
    fn a_full_table_sends_new_sources_to_one_shared_bucket() {
        let mut l = Limiter::with_max_buckets(3);
        for i in 1..=3 {
            assert!(l.allow(ip(&format!("192.0.2.{i}")), 0));
        }
        // Sources 4.. share the overflow bucket: together they get one burst.
        for i in 0..BURST as usize {
            let addr = ip(&format!("10.{}.{}.1", i / 256, i % 256));
            assert!(l.allow(addr, 1), "{addr}");
        }
        assert!(!l.allow(ip("10.200.0.1"), 1));
        assert!(!l.allow(ip("2001:db8::1"), 1));
        assert_eq!(l.len(), 3);
        // Sources that had their own bucket keep it.
        assert!(l.allow(ip("192.0.2.1"), 1));
    }

    #[test]
    fn idle_buckets_are_swept_at_most_once_per_interval() {
        let mut l = Limiter::with_max_buckets(100);
        for i in 0..100 {
            assert!(l.allow(ip(&format!("192.0.2.{i}")), 0));
        }
        // Full of active sources: no sweep before the interval, overflow for newcomers.
        assert!(l.allow(ip("10.0.0.1"), 1));
        assert_eq!(l.sweeps(), 0);
        // After the interval one sweep runs; nothing is idle yet, so it frees nothing, and
        // the next thousand newcomers cause no further sweep.
        let t = SWEEP_EVERY_MS;
        for i in 0..1000 {
            l.allow(ip(&format!("10.1.{}.{}", i / 256, i % 256)), t);
        }
        assert_eq!((l.sweeps(), l.len()), (1, 100));
        // Once the old buckets are idle (full again), the next sweep drops them and a new
        // source gets its own bucket again.
        let later = t + IDLE_MS + SWEEP_EVERY_MS;
        assert!(l.allow(ip("203.0.113.9"), later));
        assert_eq!((l.sweeps(), l.len()), (2, 1));
        assert!(l.allow(ip("203.0.113.10"), later));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn the_table_never_grows_past_its_cap() {
        let mut l = Limiter::with_max_buckets(1000);
        for i in 0..5000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            l.allow(addr, u64::from(i) * 100);
            assert!(l.len() <= 1000);
        }
    }
}
