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
