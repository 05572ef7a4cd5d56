//! The pure core: the agent's session state machines, written sans-I/O as quinn-proto and
//! firezone's connlib are. Each machine takes events (with `now` passed in) and queues
//! actions for a thin async driver to carry out; nothing here sleeps, reads a clock or
//! touches a socket, so unit tests drive reconnects and clock jumps in microseconds.

pub mod backoff;
pub mod beats;
pub mod inventory;
pub mod limiter;
pub mod pool;
pub mod presence;
pub mod rotation;
pub mod session;
pub mod tokens;

use std::time::{Duration, Instant};

pub use backoff::Backoff;

/// `now + d`, saturating far in the future instead of panicking on overflow.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}
