//! Caps on anonymous connections: every accepted connection holds a [`Slot`] that counts against
//! a per-source cap and a cap for the whole listener until it is released (after a TLS handshake
//! with a verified client certificate) or dropped (on every other path: RAII).
//!
//! IPv4 sources count per address; IPv6 sources per /64, the smallest block a host usually
//! gets, so one host cannot escape the cap by rotating addresses within its own prefix.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Anonymous connections one source may hold at once. A fleet behind one NAT, or a load
/// balancer without PROXY protocol, shows up as one source: each node holds an anonymous
/// connection only while it handshakes, fetches the CA or joins (its tunnels and streams carry
/// a certificate and release their slot), so 256 at once is far above a healthy fleet's burst
/// yet keeps one address from taking the listener's whole budget.
pub const PER_SOURCE: usize = 256;
/// Anonymous connections one listener holds at once: bounds descriptors (well under the
/// systemd unit's LimitNOFILE) and memory (a pending TLS handshake holds a few tens of KiB,
/// so about 100 MiB at worst).
pub const GLOBAL: usize = 4096;
/// Time a client gets from TCP accept to a finished TLS handshake (PROXY header included).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of a connection that finished its handshake without a client certificate.
/// Such connections carry one request (a join, a CA fetch, an install script or binary
/// download); ten minutes leaves room for a download over a slow link.
pub const ANONYMOUS_LIFETIME: Duration = Duration::from_secs(600);

/// The caps and deadlines of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_source: usize,
    pub global: usize,
    pub handshake: Duration,
    pub anonymous_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source: PER_SOURCE,
            global: GLOBAL,
            handshake: HANDSHAKE_TIMEOUT,
            anonymous_lifetime: ANONYMOUS_LIFETIME,
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerSource,
    Global,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::PerSource => "too many anonymous connections from this source",
            Refused::Global => "too many anonymous connections on this listener",
        })
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// The shared counters of one listener; cheap to clone.
#[derive(Debug, Clone)]
pub struct Caps(Arc<Inner>);

/// The key a source address counts under: IPv4 (also IPv4-mapped IPv6) as is, IPv6 per /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

impl Caps {
    pub fn new(limits: Limits) -> Caps {
        Caps(Arc::new(Inner {
            limits,
            counts: Mutex::new(Counts::default()),
        }))
    }

    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Anonymous connections held now: (all, from `ip`'s source).
    pub fn held(&self, ip: IpAddr) -> (usize, usize) {
        let c = self.counts();
        let from = c.by_source.get(&source_key(ip)).copied().unwrap_or(0);
        (c.total, from)
    }

    /// A slot counted against the listener's cap and, with `source`, against that source's.
    pub fn try_acquire(&self, source: Option<IpAddr>) -> Result<Slot, Refused> {
        let mut c = self.counts();
        if c.total >= self.0.limits.global {
            return Err(count_refusal(Refused::Global));
        }
        let key = source.map(source_key);
        if let Some(k) = key {
            let n = c.by_source.entry(k).or_insert(0);
            if *n >= self.0.limits.per_source {
                return Err(count_refusal(Refused::PerSource));
            }
            *n += 1;
        }
        c.total += 1;
        Ok(Slot {
            caps: Some(self.clone()),
            source: key,
        })
    }

    fn release_source(c: &mut Counts, key: IpAddr) {
        if let Some(n) = c.by_source.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                c.by_source.remove(&key);
            }
        }
    }
}

fn count_refusal(r: Refused) -> Refused {
    let m = &crate::metrics::METRICS;
    match r {
        Refused::PerSource => m.conns_refused_source.fetch_add(1, Relaxed),
        Refused::Global => m.conns_refused_global.fetch_add(1, Relaxed),
    };
    r
}

/// One connection's place under the caps; released at the latest when dropped.
#[derive(Debug)]
pub struct Slot {
    caps: Option<Caps>,
    source: Option<IpAddr>,
}

impl Slot {
    /// A slot that counts against nothing (for connections outside any cap).
    pub fn none() -> Slot {
        Slot {
            caps: None,
            source: None,
        }
    }

    /// Whether this slot still counts against the caps.
    pub fn is_held(&self) -> bool {
        self.caps.is_some()
    }

    /// Gives the slot back: the connection is no longer anonymous (it proved an identity).
    pub fn release(&mut self) {
        if let Some(caps) = self.caps.take() {
            let mut c = caps.counts();
            c.total -= 1;
            if let Some(k) = self.source.take() {
                Caps::release_source(&mut c, k);
            }
        }
    }

    /// Counts the slot against `ip`'s source instead of the one it had (if any): used once a
    /// PROXY protocol header names the real client. On refusal the slot keeps what it had.
    pub fn set_source(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let Some(caps) = &self.caps else {
            return Ok(());
        };
        let key = source_key(ip);
        if self.source == Some(key) {
            return Ok(());
        }
        let per_source = caps.0.limits.per_source;
        let mut c = caps.counts();
        let n = c.by_source.entry(key).or_insert(0);
        if *n >= per_source {
            return Err(count_refusal(Refused::PerSource));
        }
        *n += 1;
        if let Some(old) = self.source.replace(key) {
            Caps::release_source(&mut c, old);
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(per_source: usize, global: usize) -> Caps {
        Caps::new(Limits {
            per_source,
            global,
            ..Limits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_and_global_caps_and_release_on_drop() {
        let c = caps(2, 3);
        let a1 = c.try_acquire(Some(ip("192.0.2.1"))).unwrap();
        let _a2 = c.try_acquire(Some(ip("192.0.2.1"))).unwrap();
        assert_eq!(
            c.try_acquire(Some(ip("192.0.2.1"))).unwrap_err(),
            Refused::PerSource
        );
        let _b = c.try_acquire(Some(ip("192.0.2.2"))).unwrap();
        assert_eq!(
            c.try_acquire(Some(ip("192.0.2.3"))).unwrap_err(),
            Refused::Global
        );
        drop(a1);
        assert_eq!(c.held(ip("192.0.2.1")), (2, 1));
        assert!(c.try_acquire(Some(ip("192.0.2.1"))).is_ok());
    }

    #[test]
    fn release_is_idempotent_and_frees_both_counts() {
        let c = caps(1, 1);
        let mut s = c.try_acquire(Some(ip("192.0.2.1"))).unwrap();
        s.release();
        s.release();
        assert!(!s.is_held());
        drop(s);
        assert_eq!(c.held(ip("192.0.2.1")), (0, 0));
        assert!(c.0.counts.lock().unwrap().by_source.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let c = caps(1, 10);
        let _a = c.try_acquire(Some(ip("2001:db8:1:2::1"))).unwrap();
        assert_eq!(
            c.try_acquire(Some(ip("2001:db8:1:2:ffff::9"))).unwrap_err(),
            Refused::PerSource
        );
        assert!(c.try_acquire(Some(ip("2001:db8:1:3::1"))).is_ok());
        let _v4 = c.try_acquire(Some(ip("192.0.2.9"))).unwrap();
        assert_eq!(
            c.try_acquire(Some(ip("::ffff:192.0.2.9"))).unwrap_err(),
            Refused::PerSource
        );
    }

    #[test]
    fn set_source_moves_the_count_or_keeps_the_old_one() {
        let c = caps(1, 10);
        let lb = ip("10.0.0.1");
        let mut s = c.try_acquire(None).unwrap();
        s.set_source(ip("192.0.2.1")).unwrap();
        assert_eq!(c.held(ip("192.0.2.1")), (1, 1));
        let mut t = c.try_acquire(Some(lb)).unwrap();
        assert_eq!(t.set_source(ip("192.0.2.1")), Err(Refused::PerSource));
        assert_eq!(c.held(lb), (2, 1));
        t.set_source(ip("192.0.2.2")).unwrap();
        assert_eq!(c.held(lb), (2, 0));
        drop((s, t));
        assert_eq!(c.held(lb), (0, 0));
        assert!(Slot::none().set_source(lb).is_ok());
    }
}
