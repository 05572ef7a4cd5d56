//! The heartbeat stream: one mutual-TLS connection per node, kept open; a small frame every
//! interval (set by auth), never a handshake per beat. Reconnects with jittered backoff.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use std::sync::atomic::Ordering::Relaxed;

use super::{rejected_our_cert, stale};
use crate::config::Settings;
use crate::diag::{self, METRICS};
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::proto::{Request, Response, MAX_RESPONSE_FRAME};
use crate::rt::{Backoff, Shutdown};

/// Counts a live direct stream in the readiness gauge while it exists.
struct StreamGauge;

impl StreamGauge {
    fn new() -> Self {
        METRICS.auth_streams.fetch_add(1, Relaxed);
        StreamGauge
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        METRICS.auth_streams.fetch_sub(1, Relaxed);
    }
}

/// How a stream ended without an error.
enum End {
    Shutdown,
}

/// A stream that stayed up this long resets the reconnect backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Time to wait for auth to acknowledge a goodbye before exiting anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(
    settings: &Settings,
    addr: &str,
    identity: Identity,
    shutdown: Shutdown,
) -> Result<()> {
    let subject = identity.subject()?;
    let config = verify::client_config(&identity.ca_ders()?, Some(&identity), ServerRole::Auth)?;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut ever_connected = false;
    let mut first_ack_logged = false;
    loop {
        let started = Instant::now();
        let result = session(
            settings,
            addr,
            &config,
            &subject.cluster,
            &shutdown,
            &mut backoff,
            &mut ever_connected,
            &mut first_ack_logged,
        )
        .await;
        match result {
            Ok(End::Shutdown) => return Ok(()),
            Err(e @ Error::StaleIdentity { .. }) => return Err(e),
            Err(Error::Pki(detail)) if !ever_connected => {
                return Err(stale(settings, detail));
            }
            Err(e) => {
                METRICS.failures_auth_stream.fetch_add(1, Relaxed);
                diag::not_ready_because(format!("heartbeat stream to auth at {addr}: {e}"));
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                warn!(
                    "heartbeat stream to {addr} lost: {e}; reconnecting in {:.1}s",
                    delay.as_secs_f64()
                );
                if !shutdown.sleep(delay).await {
                    return Ok(());
                }
            }
        }
    }
}

async fn session(
    settings: &Settings,
    addr: &str,
    config: &std::sync::Arc<rustls::ClientConfig>,
    cluster: &str,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
    ever_connected: &mut bool,
    first_ack_logged: &mut bool,
) -> Result<End> {
    let tls = net::connect_tls(addr, config.clone()).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    let hello = super::hello(settings);
    conn.send(&Request::Hello(hello))
        .await
        .map_err(|e| Error::net(addr, e))?;
    let interval = match super::join::recv(&mut conn, addr).await {
        Ok(Response::HelloAck {
            cluster_name,
            heartbeat_interval_ms,
            ..
        }) => {
            if cluster_name != cluster {
                return Err(stale(
                    settings,
                    format!("it was issued by cluster {cluster:?}, but {addr} is cluster {cluster_name:?}"),
                ));
            }
            Duration::from_millis(heartbeat_interval_ms.max(100))
        }
        Ok(other) => return Err(super::join::unexpected(other)),
        Err(e) if !*ever_connected && rejected_our_cert(&e) => {
            return Err(stale(
                settings,
                format!("the auth server at {addr} rejected it"),
            ));
        }
        Err(e) => return Err(e),
    };
    if !*ever_connected {
        info!(
            "heartbeat stream to {addr} is up (every {}ms)",
            interval.as_millis()
        );
    } else {
        info!("heartbeat stream to {addr} re-established");
        METRICS.reconnects_auth_stream.fetch_add(1, Relaxed);
    }
    *ever_connected = true;
    let _live = StreamGauge::new();
    let mut seq = 0u64;
    loop {
        seq += 1;
        let sent = Instant::now();
        conn.send(&Request::Heartbeat { seq })
            .await
            .map_err(|e| Error::net(addr, e))?;
        METRICS.heartbeats_sent.fetch_add(1, Relaxed);
        match net::with_timeout(interval * 2, conn.recv::<Response>()).await {
            Some(Ok(Some(Response::HeartbeatAck { seq: acked, .. }))) if acked == seq => {
                let rtt = sent.elapsed();
                METRICS.rtt_auth_stream.observe(rtt);
                debug!("heartbeat {seq} acknowledged in {rtt:?}");
                METRICS.heartbeats_acked.fetch_add(1, Relaxed);
                if !*first_ack_logged {
                    *first_ack_logged = true;
                    info!(
                        "first heartbeat acknowledged: node {:?} is online",
                        settings.nodename
                    );
                    diag::set_ready("first heartbeat acknowledged");
                }
            }
            other => {
                METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                return Err(match other {
                    Some(Ok(Some(r))) => super::join::unexpected(r),
                    Some(Ok(None)) => Error::net(addr, "auth closed the stream"),
                    Some(Err(e)) => e,
                    None => Error::net(addr, "heartbeat not acknowledged in time"),
                });
            }
        }
        if !shutdown.sleep(backoff.jitter(interval, 0.1)).await {
            // Say goodbye so auth drops us from the inventory at once.
            let _ = conn.send(&Request::Goodbye).await;
            let _ = net::with_timeout(GOODBYE_TIMEOUT, conn.recv::<Response>()).await;
            conn.close().await;
            info!("said goodbye to the auth server");
            return Ok(End::Shutdown);
        }
    }
}
