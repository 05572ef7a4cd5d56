//! Several auth servers (`--auth-server` repeated): used in the order given, moving on to the
//! next when one cannot be reached.

use std::time::Duration;

use log::warn;

use crate::core::Backoff;
use crate::net;
use crate::rt::Shutdown;

/// The first of `addrs` (from `start`, wrapping around) that accepts a TCP connection within
/// the connect timeout; round after round with backoff until one does. `None` on shutdown.
/// A single address is returned as is: the caller's own retries then say why it fails.
pub async fn first_reachable(addrs: &[String], start: usize, shutdown: &Shutdown) -> Option<usize> {
    if addrs.len() <= 1 {
        return Some(0);
    }
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        for k in 0..addrs.len() {
            let i = (start + k) % addrs.len();
            match reach(&addrs[i]).await {
                Ok(()) => return Some(i),
                Err(e) => warn!(
                    "auth server {} cannot be reached ({e}); trying the next",
                    addrs[i]
                ),
            }
            if shutdown.is_fired() {
                return None;
            }
        }
        let delay = backoff.next_delay();
        warn!(
            "none of the auth servers {} can be reached; trying again in {:.1}s",
            addrs.join(", "),
            delay.as_secs_f64()
        );
        if !shutdown.sleep(delay).await {
            return None;
        }
    }
}

async fn reach(addr: &str) -> crate::error::Result<()> {
    let fut = async {
        let sock = net::resolve(addr).await?;
        net::source::connect(sock)
            .await
            .map(drop)
            .map_err(|e| crate::error::Error::net(addr, e))
    };
    net::with_timeout(net::CONNECT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|| Err(crate::error::Error::net(addr, "timed out connecting")))
}

/// The auth servers a long-lived client (a proxy's link) uses, and the one in use now. A client
/// whose connection to auth fails moves on to the next (`fail_over`), so the backoff between
/// attempts is spent on another server rather than on the one that died.
#[derive(Debug)]
pub struct AuthAddrs {
    addrs: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
}

impl AuthAddrs {
    /// `addrs` must not be empty; `first` is the one to use first.
    pub fn new(addrs: Vec<String>, first: usize) -> Self {
        assert!(!addrs.is_empty(), "at least one auth server");
        let first = first % addrs.len();
        AuthAddrs {
            addrs,
            current: first.into(),
        }
    }

    pub fn current(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.addrs[i % self.addrs.len()]
    }

    /// Moves to the next address (a single one stays); returns it.
    pub fn fail_over(&self) -> &str {
        let n = self.addrs.len();
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        self.current
            .store((i + 1) % n, std::sync::atomic::Ordering::Relaxed);
        self.current()
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::AuthAddrs;

    #[test]
    fn failing_over_goes_round_the_list_from_the_first_used() {
        let a = AuthAddrs::new(vec!["a:1".into(), "b:2".into(), "c:3".into()], 1);
        assert_eq!(a.current(), "b:2");
        assert_eq!(a.fail_over(), "c:3");
        assert_eq!(a.fail_over(), "a:1");
        assert_eq!(a.current(), "a:1");
        let one = AuthAddrs::new(vec!["x:9".into()], 0);
        assert_eq!(one.fail_over(), "x:9");
    }
}
