//! The process's counters, gauges and histograms: plain atomics in one static, so the hot paths
//! (a heartbeat, a chunk of a data-plane stream) cost an uncontended `fetch_add`, no lock and no
//! allocation. Which families a process exports depends on its roles (see `render`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the heartbeat round-trip buckets in microseconds: loopback (sub-ms) up to a
/// beat that took seconds (an overloaded auth or a long-haul link). `+Inf` follows.
pub const RTT_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];

/// A histogram with fixed buckets; `observe` is two relaxed `fetch_add`s.
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; RTT_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A consistent-enough copy for rendering: cumulative counts, their total, the sum.
pub struct Snapshot {
    pub cumulative: [u64; RTT_BUCKETS_US.len() + 1],
    pub sum_seconds: f64,
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; RTT_BUCKETS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = RTT_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = [0u64; RTT_BUCKETS_US.len() + 1];
        let mut total = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *c = total;
        }
        Snapshot {
            cumulative,
            sum_seconds: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a node's join attempt failed, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// Auth refused the token (unknown, expired, or not for this role).
    InvalidToken,
    /// The cluster's CA matched none of the configured pins.
    PinMismatch,
    /// The auth server or proxy could not be reached, or answered that auth is unavailable.
    Unreachable,
    /// Too many unauthenticated requests from this address.
    RateLimited,
    /// The proxy's certificate chains to nothing we trust.
    UntrustedServer,
    Other,
}

impl JoinFailure {
    pub const ALL: [JoinFailure; 6] = [
        JoinFailure::InvalidToken,
        JoinFailure::PinMismatch,
        JoinFailure::Unreachable,
        JoinFailure::RateLimited,
        JoinFailure::UntrustedServer,
        JoinFailure::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            JoinFailure::InvalidToken => "invalid_token",
            JoinFailure::PinMismatch => "pin_mismatch",
            JoinFailure::Unreachable => "unreachable",
            JoinFailure::RateLimited => "rate_limited",
            JoinFailure::UntrustedServer => "untrusted_server",
            JoinFailure::Other => "other",
        }
    }

    /// Classifies a failed join attempt by the error it ended with.
    pub fn of(e: &crate::error::Error) -> JoinFailure {
        use crate::error::Error;
        use crate::proto::ErrorCode;
        match e {
            Error::PinMismatch { .. } => JoinFailure::PinMismatch,
            Error::Net(n) if n.is_untrusted_server() => JoinFailure::UntrustedServer,
            Error::Net(_) => JoinFailure::Unreachable,
            Error::Pki(_) => JoinFailure::UntrustedServer,
            Error::Remote { code, .. } => match code {
                ErrorCode::AccessDenied => JoinFailure::InvalidToken,
                ErrorCode::RateLimited => JoinFailure::RateLimited,
                ErrorCode::Unavailable => JoinFailure::Unreachable,
                _ => JoinFailure::Other,
            },
            _ => JoinFailure::Other,
        }
    }
}

/// Which way data-plane bytes went: towards the node's local service or back from it.
pub struct Bytes {
    pub to_service: AtomicU64,
    pub from_service: AtomicU64,
}

impl Bytes {
    const fn new() -> Self {
        Bytes {
            to_service: AtomicU64::new(0),
            from_service: AtomicU64::new(0),
        }
    }
}

/// Counters and gauges of this process. Field groups name the role that exports them.
pub struct Metrics {
    // Node (agent).
    pub tunnels_held: AtomicI64,
    pub auth_streams: AtomicI64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_acked: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub rtt_tunnel: Histogram,
    pub rtt_auth_stream: Histogram,
    /// Tunnels re-established to a proxy this agent held a tunnel to before.
    pub reconnects_tunnel: AtomicU64,
    /// Direct heartbeat streams to auth re-established after a loss.
    pub reconnects_auth_stream: AtomicU64,
    pub failures_tunnel: AtomicU64,
    pub failures_auth_stream: AtomicU64,
    pub node_streams_opened: AtomicU64,
    pub node_streams_active: AtomicI64,
    pub node_bytes: Bytes,
    // Node and proxy (both join with a token).
    pub join_duration_ms: AtomicU64,
    pub join_failures: [AtomicU64; JoinFailure::ALL.len()],
    /// When the host certificate in use expires (Unix seconds), of the node and of the proxy.
    pub cert_expiry_node: AtomicI64,
    pub cert_expiry_proxy: AtomicI64,
    /// Host certificates renewed in place, and renewals that failed.
    pub cert_renewals: AtomicU64,
    pub cert_renewal_failures: AtomicU64,
    // Proxy.
    pub proxy_tunnels: AtomicI64,
    pub proxy_dials_ok: AtomicU64,
    pub proxy_dials_failed: AtomicU64,
    pub proxy_streams_active: AtomicI64,
    pub proxy_bytes: Bytes,
    pub proxy_link_up: AtomicI64,
    pub reconnects_auth_link: AtomicU64,
    pub failures_auth_link: AtomicU64,
    pub rtt_auth_link: Histogram,
    // Auth.
    pub nodes_online: AtomicI64,
    pub joins_accepted: AtomicU64,
    pub joins_refused_invalid: AtomicU64,
    pub joins_refused_expired: AtomicU64,
    pub joins_refused_role: AtomicU64,
    pub joins_refused_rate: AtomicU64,
    pub joins_refused_other: AtomicU64,
    // Every role.
    /// Connections closed at accept: the source already held its cap of anonymous ones.
    pub conns_refused_source: AtomicU64,
    /// Connections closed at accept: the listener already held its cap of anonymous ones.
    pub conns_refused_global: AtomicU64,
    /// Bursts of failed accepts (EMFILE and the like).
    pub accept_errors: AtomicU64,
    /// Log lines dropped because the log output could not keep up.
    pub log_lines_dropped: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    tunnels_held: AtomicI64::new(0),
    auth_streams: AtomicI64::new(0),
    heartbeats_sent: AtomicU64::new(0),
    heartbeats_acked: AtomicU64::new(0),
    heartbeats_failed: AtomicU64::new(0),
    rtt_tunnel: Histogram::new(),
    rtt_auth_stream: Histogram::new(),
    reconnects_tunnel: AtomicU64::new(0),
    reconnects_auth_stream: AtomicU64::new(0),
    failures_tunnel: AtomicU64::new(0),
    failures_auth_stream: AtomicU64::new(0),
    node_streams_opened: AtomicU64::new(0),
    node_streams_active: AtomicI64::new(0),
    node_bytes: Bytes::new(),
    join_duration_ms: AtomicU64::new(0),
    join_failures: [const { AtomicU64::new(0) }; JoinFailure::ALL.len()],
    proxy_tunnels: AtomicI64::new(0),
    proxy_dials_ok: AtomicU64::new(0),
    proxy_dials_failed: AtomicU64::new(0),
    proxy_streams_active: AtomicI64::new(0),
    proxy_bytes: Bytes::new(),
    proxy_link_up: AtomicI64::new(0),
    reconnects_auth_link: AtomicU64::new(0),
    failures_auth_link: AtomicU64::new(0),
    rtt_auth_link: Histogram::new(),
    nodes_online: AtomicI64::new(0),
    joins_accepted: AtomicU64::new(0),
    joins_refused_invalid: AtomicU64::new(0),
    joins_refused_expired: AtomicU64::new(0),
    joins_refused_role: AtomicU64::new(0),
    joins_refused_rate: AtomicU64::new(0),
    joins_refused_other: AtomicU64::new(0),
    conns_refused_source: AtomicU64::new(0),
    conns_refused_global: AtomicU64::new(0),
    accept_errors: AtomicU64::new(0),
    log_lines_dropped: AtomicU64::new(0),
    cert_expiry_node: AtomicI64::new(0),
    cert_expiry_proxy: AtomicI64::new(0),
    cert_renewals: AtomicU64::new(0),
    cert_renewal_failures: AtomicU64::new(0),
};

impl Metrics {
    /// Counts a failed join attempt (each retry counts again).
    pub fn join_failed(&self, e: &crate::error::Error) {
        let why = JoinFailure::of(e);
        let i = JoinFailure::ALL.iter().position(|&r| r == why).unwrap_or(0);
        self.join_failures[i].fetch_add(1, Relaxed);
    }
}

/// Holds one unit of a gauge (a live tunnel, an active stream) and gives it back when dropped,
/// however the holder ends.
pub struct Live(&'static AtomicI64);

impl Live {
    pub fn new(gauge: &'static AtomicI64) -> Live {
        gauge.fetch_add(1, Relaxed);
        Live(gauge)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(250)); // le 0.00025 exactly
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[3], 1); // le 0.0025
        assert_eq!(s.cumulative[4], 2); // le 0.005
        assert_eq!(s.cumulative[RTT_BUCKETS_US.len() - 1], 2);
        assert_eq!(s.cumulative[RTT_BUCKETS_US.len()], 3);
        assert!((s.sum_seconds - 60.00325).abs() < 1e-9);
    }

    #[test]
    fn join_failures_are_classified_by_error_type() {
        use crate::error::Error;
        use crate::proto::ErrorCode;
        let cases = [
            (Error::remote(ErrorCode::AccessDenied, "x"), "invalid_token"),
            (Error::remote(ErrorCode::RateLimited, "x"), "rate_limited"),
            (Error::remote(ErrorCode::Unavailable, "x"), "unreachable"),
            (Error::PinMismatch { seen: vec![] }, "pin_mismatch"),
            (Error::net("h:1", "refused"), "unreachable"),
            (Error::Pki("x".into()), "untrusted_server"),
            (Error::Protocol("x".into()), "other"),
        ];
        for (e, want) in cases {
            assert_eq!(JoinFailure::of(&e).label(), want, "{e}");
        }
    }
}
