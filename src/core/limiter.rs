//! Per-source token buckets for unauthenticated requests. Each source has three buckets,
//! refilled together (time is passed in as `now_ms`):
//!
//! - **attempts** (Teleport's "high" limiter: 120 a minute, bursts of 480) is what guessing
//!   tokens costs: every join attempt and install-token check takes one, and only a join that
//!   succeeds gives it back. Wrong tokens, malformed requests and failures of any kind keep it
//!   spent, so a brute force from one source is throttled exactly as before.
//! - **joins** (1,200 a minute, bursts of 480) bounds joins from one source even when they all
//!   hold a valid token (each costs a signature and an audit record): every join attempt takes
//!   one, successful or not.
//! - **ca** (2,400 a minute, bursts of 1,200) for CA fetches: public data, charged apart so that
//!   the fetch that precedes every join does not spend the join's budget; a join through auth
//!   costs one `attempts` token however many requests it takes.
//!
//! A source is an IPv4 address or an IPv6 /64 (the smallest block a host is usually given, so
//! one attacker's /64 is one bucket); IPv4-mapped IPv6 addresses count as their IPv4 address.
//! Memory is bounded: at most `MAX_BUCKETS` sources are tracked; sources idle long enough to
//! have refilled are dropped by a sweep that runs at most once per `SWEEP_EVERY_MS`, and while
//! the table is full, new sources share one overflow entry. Time is passed in (`now_ms`).

use std::collections::HashMap;
use std::net::IpAddr;

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_min: f64,
    pub burst: f64,
}

/// Join attempts and install-token checks; a successful join gives its token back.
pub const ATTEMPTS: Rate = Rate {
    per_min: 120.0,
    burst: 480.0,
};
/// Every join attempt, successful or not: 20 a second once the burst is spent, so 1,000 hosts
/// behind one address join within a minute while one source cannot make auth sign faster.
pub const JOINS: Rate = Rate {
    per_min: 1_200.0,
    burst: 480.0,
};
/// CA fetches: twice the join rate, since a refused join's retry fetches the CA again.
pub const CA: Rate = Rate {
    per_min: 2_400.0,
    burst: 1_200.0,
};
/// The attempts bucket, under the names older callers use.
pub const RATE_PER_MIN: f64 = ATTEMPTS.per_min;
pub const BURST: f64 = ATTEMPTS.burst;
/// 7/8 of 65,536: the most entries a 65,536-slot hash table holds (about 2.6 MiB).
pub const MAX_BUCKETS: usize = 57_344;
/// A source idle this long has all its buckets full again, so dropping it changes nothing
/// (4 minutes, set by the slowest bucket).
const IDLE_MS: u64 = (ATTEMPTS.burst / ATTEMPTS.per_min * 60_000.0) as u64;
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

/// The buckets of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Attempts = 0,
    Joins = 1,
    Ca = 2,
}

const RATES: [Rate; 3] = [ATTEMPTS, JOINS, CA];

/// One source's three buckets, refilled together: 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tokens: [f32; 3],
    last: u64,
}

impl Entry {
    fn full(now_ms: u64) -> Entry {
        Entry {
            tokens: RATES.map(|r| r.burst as f32),
            last: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last) as f64;
        for (t, r) in self.tokens.iter_mut().zip(RATES) {
            *t = (f64::from(*t) + dt * r.per_min / 60_000.0).min(r.burst) as f32;
        }
        self.last = self.last.max(now_ms);
    }

    fn has(&self, k: Kind) -> bool {
        self.tokens[k as usize] >= 1.0
    }

    fn take(&mut self, k: Kind) {
        self.tokens[k as usize] -= 1.0;
    }

    fn give_back(&mut self, k: Kind) {
        let t = &mut self.tokens[k as usize];
        *t = (*t + 1.0).min(RATES[k as usize].burst as f32);
    }
}

#[derive(Debug)]
pub struct Limiter {
    buckets: HashMap<Source, Entry>,
    /// Shared by new sources while the table is full.
    overflow: Entry,
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
            overflow: Entry::full(0),
            max_buckets: max,
            last_sweep: 0,
            sweeps: 0,
        }
    }

    /// `ip`'s entry, refilled to `now_ms`: its own, a new one, or the shared overflow entry.
    fn slot(&mut self, ip: IpAddr, now_ms: u64) -> &mut Entry {
        let key = Source::of(ip);
        if !self.buckets.contains_key(&key) {
            if self.buckets.len() >= self.max_buckets
                && now_ms.saturating_sub(self.last_sweep) >= SWEEP_EVERY_MS
            {
                self.last_sweep = now_ms;
                self.sweeps = self.sweeps.saturating_add(1);
                self.buckets
                    .retain(|_, e| now_ms.saturating_sub(e.last) < IDLE_MS);
            }
            if self.buckets.len() >= self.max_buckets {
                self.overflow.refill(now_ms);
                return &mut self.overflow;
            }
        }
        let e = self
            .buckets
            .entry(key)
            .or_insert_with(|| Entry::full(now_ms));
        e.refill(now_ms);
        e
    }

    /// Takes one token of `kind` from `ip`'s source; false if that bucket is empty.
    pub fn allow_kind(&mut self, ip: IpAddr, kind: Kind, now_ms: u64) -> bool {
        let e = self.slot(ip, now_ms);
        let ok = e.has(kind);
        if ok {
            e.take(kind);
        }
        ok
    }

    /// An install-token check (or any other guess): one attempt.
    pub fn allow(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        self.allow_kind(ip, Kind::Attempts, now_ms)
    }

    /// A CA fetch: one token of the CA bucket, which joins do not spend.
    pub fn allow_ca(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        self.allow_kind(ip, Kind::Ca, now_ms)
    }

    /// A join attempt: one attempt and one join, or neither if either bucket is empty. Call
    /// `join_succeeded` when it succeeds.
    pub fn begin_join(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let e = self.slot(ip, now_ms);
        let ok = e.has(Kind::Attempts) && e.has(Kind::Joins);
        if ok {
            e.take(Kind::Attempts);
            e.take(Kind::Joins);
        }
        ok
    }

    /// A join that `begin_join` let through succeeded: its attempt is given back (the join
    /// stays spent). Creates no entry for a source that has none.
    pub fn join_succeeded(&mut self, ip: IpAddr) {
        let full = self.buckets.len() >= self.max_buckets;
        match self.buckets.get_mut(&Source::of(ip)) {
            Some(e) => e.give_back(Kind::Attempts),
            None if full => self.overflow.give_back(Kind::Attempts),
            None => {}
        }
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

    #[test]
    fn failed_joins_keep_their_attempt_spent() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.1");
        for i in 0..BURST as usize {
            assert!(l.begin_join(a, 0), "{i}");
        }
        assert!(!l.begin_join(a, 0));
        // A wrong guess after that passes at the attempts refill (2/s), not the joins one.
        assert!(l.begin_join(a, 500));
        assert!(!l.begin_join(a, 500));
        // Install-token checks draw on the same attempts.
        assert!(!l.allow(a, 500));
    }

    #[test]
    fn successful_joins_are_bounded_by_the_join_bucket() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.1");
        for _ in 0..JOINS.burst as usize {
            assert!(l.begin_join(a, 0));
            l.join_succeeded(a);
        }
        // Attempts are all back, joins are spent: refused until the join bucket refills.
        assert!(!l.begin_join(a, 0));
        assert!(l.allow(a, 0));
        // One second refills 20 joins.
        let through = (0..100)
            .filter(|_| {
                let ok = l.begin_join(a, 1_000);
                if ok {
                    l.join_succeeded(a);
                }
                ok
            })
            .count();
        assert_eq!(through, 20);
    }

    #[test]
    fn ca_fetches_do_not_spend_the_join_budget() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.1");
        for _ in 0..CA.burst as usize {
            assert!(l.allow_ca(a, 0));
        }
        assert!(!l.allow_ca(a, 0));
        assert!(l.begin_join(a, 0));
        // 40 a second.
        assert_eq!((0..100).filter(|_| l.allow_ca(a, 1_000)).count(), 40);
    }

    /// 1,000 hosts behind one address, each fetching the CA then joining, retrying every 2 s
    /// when refused, all join within a minute; right after, wrong guesses from that address
    /// get no more than the attempts burst and refill. (A guesser running at the same time
    /// would spend the attempts the fleet needs: limits are per source, not per host.)
    #[test]
    fn a_fleet_behind_one_address_joins_and_guesses_stay_throttled() {
        let mut l = Limiter::default();
        let a = ip("198.51.100.1");
        let mut waiting: Vec<u64> = vec![0; 1000];
        let mut now = 0;
        while !waiting.is_empty() && now <= 60_000 {
            let mut still = Vec::with_capacity(waiting.len());
            for at in waiting {
                if at > now {
                    still.push(at);
                } else if l.allow_ca(a, now) && l.begin_join(a, now) {
                    l.join_succeeded(a);
                } else {
                    still.push(now + 2_000);
                }
            }
            waiting = still;
            now += 10;
        }
        assert!(waiting.is_empty(), "{} left after a minute", waiting.len());
        let start = now;
        let mut guesses = 0u32;
        for t in (start..start + 60_000).step_by(10) {
            if l.begin_join(a, t) {
                guesses += 1;
            }
        }
        assert!(
            f64::from(guesses) <= BURST + RATE_PER_MIN + 1.0,
            "{guesses}"
        );
        assert!(f64::from(guesses) >= BURST, "{guesses}");
    }

    #[test]
    fn a_success_never_fills_a_bucket_past_its_burst_nor_creates_a_source() {
        let mut l = Limiter::default();
        let a = ip("192.0.2.1");
        l.join_succeeded(a);
        assert!(l.is_empty());
        assert!(l.begin_join(a, 0));
        l.join_succeeded(a);
        l.join_succeeded(a);
        for _ in 0..BURST as usize {
            assert!(l.allow(a, 0));
        }
        assert!(!l.allow(a, 0));
    }
}
