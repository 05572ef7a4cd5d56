//! Which one of a node's tunnels beats every interval. The proxies tell auth themselves that
//! they hold a node's tunnel, so the node needs only one tunnel beating at the full rate (for
//! prompt renewal requests and proxy sets); its other tunnels beat every `QUIET_EVERY`
//! intervals, just enough to show each proxy that the node is there. When the beating tunnel
//! ends, the next tunnel to look takes the seat (each looks once per interval).
//!
//! Process-wide and keyed by host ID: `teleport loadgen` runs many nodes in one process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::core::pool::ConnId;

fn seats() -> std::sync::MutexGuard<'static, HashMap<String, ConnId>> {
    static SEATS: OnceLock<Mutex<HashMap<String, ConnId>>> = OnceLock::new();
    SEATS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A tunnel's claim on its host's seat; dropping it frees the seat if it held it.
pub(crate) struct Seat {
    host: String,
    conn: ConnId,
}

impl Seat {
    pub(crate) fn new(host: String, conn: ConnId) -> Seat {
        Seat { host, conn }
    }

    /// Whether this tunnel beats for its host: it held the seat, or the seat was free.
    pub(crate) fn take(&self) -> bool {
        let mut s = seats();
        match s.get(&self.host) {
            Some(&c) => c == self.conn,
            None => {
                s.insert(self.host.clone(), self.conn);
                true
            }
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut s = seats();
        if s.get(&self.host) == Some(&self.conn) {
            s.remove(&self.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tunnel_per_host_beats_and_another_takes_over_when_it_ends() {
        let a = Seat::new("host-seat-test".into(), 1);
        let b = Seat::new("host-seat-test".into(), 2);
        let other = Seat::new("other-seat-test".into(), 1);
        assert!(a.take());
        assert!(!b.take());
        assert!(a.take(), "the holder keeps it");
        assert!(other.take(), "seats are per host");
        drop(b);
        assert!(
            a.take(),
            "a tunnel that did not hold the seat frees nothing"
        );
        let c = Seat::new("host-seat-test".into(), 3);
        drop(a);
        assert!(c.take());
    }
}
