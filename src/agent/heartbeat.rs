//! The heartbeat stream: one mutual-TLS connection per node, kept open; a small frame every
//! interval (set by auth), never a handshake per beat. This is the I/O driver of
//! `core::session::Session`, which decides when to connect, beat, give up and back off.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use log::{debug, info, warn};
use rustls::ClientConfig;

use super::renew::Renewer;
use super::{rejected_our_cert, stale};
use crate::config::Settings;
use crate::core::backoff::os_seed;
use crate::core::session::{Action, Cause, Session};
use crate::diag::{self, METRICS};
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::verify::ServerRole;
use crate::proto::{Request, Response, MAX_RESPONSE_FRAME};
use crate::rt::Shutdown;

type Stream = Framed<futures_rustls::client::TlsStream<crate::net::Tcp>>;

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

/// Time to wait for auth to acknowledge a goodbye before exiting anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// What ended a wait.
enum Wake {
    Timer,
    Shutdown,
    Recv(Box<Result<Option<Response>>>),
}

pub async fn run(
    settings: &Settings,
    addr: &str,
    renewer: Arc<Renewer>,
    shutdown: Shutdown,
) -> Result<()> {
    run_any(settings, &[addr.to_string()], 0, renewer, shutdown).await
}

/// Like `run`, over several auth servers: starts with `addrs[first]` and, when a stream is
/// lost, reconnects to the next one that can be reached (`--auth-server` repeated).
pub async fn run_any(
    settings: &Settings,
    addrs: &[String],
    first: usize,
    renewer: Arc<Renewer>,
    shutdown: Shutdown,
) -> Result<()> {
    let subject = renewer.identity().subject()?;
    let mut s = Session::new(Instant::now(), os_seed());
    let mut current = first;
    let mut rotate = false;
    let mut conn: Option<Stream> = None;
    let mut live: Option<StreamGauge> = None;
    // The failure the driver saw last, reported when the machine gives the stream up.
    let mut error: Option<Error> = None;
    loop {
        while let Some(action) = s.poll_action() {
            let addr = addrs[current % addrs.len()].as_str();
            match action {
                Action::Connect => {
                    if rotate && addrs.len() > 1 {
                        let next = (current + 1) % addrs.len();
                        match super::servers::first_reachable(addrs, next, &shutdown).await {
                            Some(i) => current = i,
                            None => return Ok(()),
                        }
                    }
                    let addr = addrs[current % addrs.len()].as_str();
                    // The newest identity: a renewal may have happened since.
                    let config = renewer.client_config(ServerRole::Auth)?;
                    match open(settings, addr, &config, &subject.cluster, s.ever_up()).await {
                        Ok((stream, interval)) => {
                            conn = Some(stream);
                            s.connected(Instant::now(), interval);
                        }
                        Err(e @ Error::StaleIdentity { .. }) => return Err(e),
                        Err(e) if super::revoked(settings, &e).is_some() => {
                            return Err(super::revoked(settings, &e).unwrap_or(e));
                        }
                        Err(e) if !s.ever_up() => {
                            match super::fatal_before_up(&subject.cluster, e) {
                                Ok(fatal) => return Err(fatal),
                                Err(e) => {
                                    error = Some(e);
                                    s.failed(Instant::now());
                                }
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            s.failed(Instant::now());
                        }
                    }
                }
                Action::Up { first, interval } => {
                    if first {
                        info!(
                            "heartbeat stream to {addr} is up (every {}ms)",
                            interval.as_millis()
                        );
                    } else {
                        info!("heartbeat stream to {addr} re-established");
                        METRICS.reconnects_auth_stream.fetch_add(1, Relaxed);
                    }
                    live = Some(StreamGauge::new());
                }
                Action::SendBeat(seq) => {
                    let sent = match conn.as_mut() {
                        Some(c) => c
                            .send(&Request::Heartbeat { seq })
                            .await
                            .map_err(|e| Error::net(addr, e)),
                        None => Err(Error::net(addr, "no stream")),
                    };
                    match sent {
                        Ok(()) => {
                            METRICS.heartbeats_sent.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            error = Some(e);
                            s.failed(Instant::now());
                        }
                    }
                }
                Action::Acked { seq, rtt } => {
                    METRICS.rtt_auth_stream.observe(rtt);
                    debug!("heartbeat {seq} acknowledged in {rtt:?}");
                    METRICS.heartbeats_acked.fetch_add(1, Relaxed);
                }
                Action::Online => {
                    info!(
                        "first heartbeat acknowledged: node {:?} is online",
                        settings.nodename
                    );
                    diag::set_ready("first heartbeat acknowledged");
                }
                Action::Lost { cause, delay } => {
                    conn = None;
                    live = None;
                    rotate = true;
                    let e = match cause {
                        Cause::Failed => error
                            .take()
                            .unwrap_or_else(|| Error::net(addr, "the stream failed")),
                        Cause::AckTimeout => {
                            METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                            Error::net(addr, "heartbeat not acknowledged in time")
                        }
                        Cause::BadAck(bad) => {
                            METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                            Error::Protocol(format!("auth at {addr} sent a {bad}"))
                        }
                    };
                    METRICS.failures_auth_stream.fetch_add(1, Relaxed);
                    diag::not_ready_because(format!("heartbeat stream to auth at {addr}: {e}"));
                    warn!(
                        "heartbeat stream to {addr} lost: {e}; reconnecting in {:.1}s",
                        delay.as_secs_f64()
                    );
                }
                Action::Goodbye => {
                    // Say goodbye so auth drops us from the inventory at once.
                    if let Some(mut c) = conn.take() {
                        let _ = c.send(&Request::Goodbye).await;
                        let _ = net::with_timeout(GOODBYE_TIMEOUT, c.recv::<Response>()).await;
                        c.close().await;
                        info!("said goodbye to the auth server");
                    }
                }
            }
        }
        let Some(deadline) = s.poll_timeout() else {
            // Closed: the shutdown was handled above.
            drop(live);
            return Ok(());
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let timer = async {
            if shutdown.sleep(wait).await {
                Wake::Timer
            } else {
                Wake::Shutdown
            }
        };
        // Read whenever the stream is up: auth answers beats, and when it closes the stream
        // (a lock) it says why at once. `recv` is cancel-safe, so losing the race to the
        // timer loses no bytes.
        let wake = match conn.as_mut() {
            Some(c) => {
                future::or(
                    async { Wake::Recv(Box::new(c.recv::<Response>().await)) },
                    timer,
                )
                .await
            }
            _ => timer.await,
        };
        let now = Instant::now();
        let addr = addrs[current % addrs.len()].as_str();
        match wake {
            Wake::Timer => s.tick(now),
            Wake::Shutdown => s.shutdown(),
            Wake::Recv(got) => match *got {
                Ok(Some(Response::HeartbeatAck { seq, renew, .. })) => {
                    s.acked(now, seq);
                    // Between beats the stream is ours: renew when auth asks or it is due.
                    if (renew || renewer.due()) && !s.awaiting_ack() {
                        if let Some(c) = conn.as_mut() {
                            let via = format!("the heartbeat stream to {addr}");
                            if let Err(e) = renewer.renew_over(c, &via).await {
                                super::renew::log_failure(
                                    "renewing the host certificate",
                                    &via,
                                    &e,
                                );
                            }
                        }
                    }
                }
                other => {
                    METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                    if let Ok(Some(Response::Error { code, message })) = &other {
                        let e = Error::Remote {
                            code: *code,
                            message: message.clone(),
                        };
                        if let Some(fatal) = super::revoked(settings, &e) {
                            return Err(fatal);
                        }
                    }
                    error = Some(match other {
                        Ok(Some(r)) => super::join::unexpected(r),
                        Ok(None) => Error::net(addr, "auth closed the stream"),
                        Err(e) => e,
                    });
                    s.failed(now);
                }
            },
        }
    }
}

/// Connects, says hello and returns the stream with the interval auth asks for.
async fn open(
    settings: &Settings,
    addr: &str,
    config: &Arc<ClientConfig>,
    cluster: &str,
    ever_up: bool,
) -> Result<(Stream, Duration)> {
    let tls = net::connect_tls(addr, config.clone()).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    let hello = super::hello(settings);
    conn.send(&Request::Hello(hello))
        .await
        .map_err(|e| Error::net(addr, e))?;
    match super::join::recv(&mut conn, addr).await {
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
            Ok((conn, Duration::from_millis(heartbeat_interval_ms)))
        }
        Ok(other) => Err(super::join::unexpected(other)),
        Err(e) if !ever_up && rejected_our_cert(&e) => Err(stale(
            settings,
            format!("the auth server at {addr} rejected it"),
        )),
        Err(e) => Err(e),
    }
}
