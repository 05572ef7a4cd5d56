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
#[path = "limiter_tests.rs"]
mod tests;
