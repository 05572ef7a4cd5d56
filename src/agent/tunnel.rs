//! One tunnel of the node: heartbeats on the control stream, renewals (over this tunnel when
//! the certificate is due and no other tunnel is renewing) and refreshes (after a renewal over
//! another tunnel), and streams the proxy opens to local services. A tunnel the proxy closes
//! (the host was locked) is noticed at once, not at the next beat.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use log::{info, warn};
use smol::channel::Sender;

use super::dataplane;
use super::pool::{Dialed, Event, Wake};
use super::renew::{log_failure, Renewer};
use crate::core::backoff::os_seed;
use crate::core::beats::{Beat, Beats};
use crate::core::pool::ConnId;
use crate::diag::METRICS;
use crate::net;
use crate::proto::{Request, Response, QUIET_EVERY};
use crate::rt::Shutdown;

#[path = "seat.rs"]
mod seat;

pub(super) async fn run(
    t: Dialed,
    conn: ConnId,
    node: String,
    events: Sender<Event>,
    renewer: Arc<Renewer>,
    shutdown: Shutdown,
) {
    let Dialed {
        mux,
        mut ctl,
        proxy,
        interval,
        generation,
        ..
    } = t;
    // The generation of the certificate this tunnel's proxy knows.
    let mut shown = generation;
    let _path = renewer.path();
    let inbound = mux.inbound.clone();
    let opener = mux.opener.clone();
    let (gone_tx, gone) = smol::channel::bounded::<()>(1);
    let _acceptor = crate::rt::spawn(async move {
        while let Ok(stream) = inbound.recv().await {
            // In the tunnel's own task: its frames reach the connection without a wakeup.
            if !opener.detach(dataplane::serve(stream)).await {
                break;
            }
        }
        // The connection ended: the proxy closed it or it broke.
        drop(gone_tx);
    });
    let mut beats = Beats::new(Instant::now(), interval, os_seed());
    let via = format!("the tunnel to proxy {:?}", proxy.name);
    // One tunnel of the node beats every interval; the others, once their proxy said it tells
    // auth itself that it holds them (`quiet`, said in its first ack), every `QUIET_EVERY`
    // intervals. TCP keepalive (the kernel's bytes) notices a vanished proxy meanwhile.
    let host = renewer
        .identity()
        .subject()
        .map_or(node.clone(), |s| s.host_id);
    let seat = seat::Seat::new(host, conn);
    let (mut quiet_ok, mut seated) = (false, false);
    loop {
        let now = Instant::now();
        if !seated && seat.take() {
            seated = true;
            info!(
                "heartbeats of {node:?} go over the tunnel to proxy {:?}",
                proxy.name
            );
        }
        // A quiet tunnel whose proxy still knows an older certificate (renewed over another
        // tunnel) beats at once, so that the ack lets it show the new one before the old expires.
        let behind = shown != renewer.generation();
        let every = if seated || !quiet_ok || behind {
            1
        } else {
            QUIET_EVERY
        };
        beats.set_every(now, every);
        match beats.tick(now) {
            Some(Beat::Send(seq)) => {
                if ctl.send(&Request::Heartbeat { seq }).await.is_err() {
                    break;
                }
                METRICS.heartbeats_sent.fetch_add(1, Relaxed);
            }
            Some(Beat::Missed(seq)) => {
                METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                log::debug!(
                    "tunnel of {node:?} to {:?}: beat {seq} not acknowledged",
                    proxy.name
                );
                break;
            }
            None => {}
        }
        // A quiet tunnel looks for a free seat once per interval.
        let mut wake_at = beats.poll_timeout();
        if !seated {
            wake_at = wake_at.min(Instant::now() + beats.interval());
        }
        let wait = wake_at.saturating_duration_since(Instant::now());
        let timer = async {
            if shutdown.sleep(wait).await {
                Wake::Timer
            } else {
                Wake::Shutdown
            }
        };
        let timer = future::or(timer, async {
            let _ = gone.recv().await;
            Wake::Got(Ok(None))
        });
        // `recv` is cancel-safe: losing the race to the timer loses no bytes.
        let wake = if beats.in_flight() {
            future::or(async { Wake::Got(ctl.recv::<Response>().await) }, timer).await
        } else {
            timer.await
        };
        match wake {
            Wake::Timer => {}
            Wake::Shutdown => {
                let _ = ctl.send(&Request::Goodbye).await;
                let _ = net::with_timeout(Duration::from_secs(1), ctl.recv::<Response>()).await;
                info!("said goodbye to proxy {:?}", proxy.name);
                break;
            }
            Wake::Got(Ok(Some(Response::HeartbeatAck {
                seq,
                proxies,
                relayed,
                renew,
                quiet,
            }))) => match beats.on_ack(Instant::now(), seq) {
                Ok(rtt) => {
                    quiet_ok |= quiet;
                    METRICS.rtt_tunnel.observe(rtt);
                    METRICS.heartbeats_acked.fetch_add(1, Relaxed);
                    let _ = events.try_send(Event::Set(conn, proxies));
                    let _ = events.try_send(Event::Acked(relayed));
                    // Between beats the control stream is ours. A proxy that still knows an
                    // older certificate is shown the newest first (it may be why it asks for
                    // a renewal, and a renewal's proof is checked against what it knows).
                    if shown != renewer.generation() {
                        let now = renewer.generation();
                        match renewer.refresh_over(&mut ctl, &via).await {
                            Ok(()) => shown = now,
                            Err(e) => log_failure("showing the renewed certificate", &via, &e),
                        }
                    } else if renew || renewer.due() {
                        match renewer.renew_over(&mut ctl, &via).await {
                            Ok(true) => shown = renewer.generation(),
                            Ok(false) => {}
                            Err(e) => log_failure("renewing the host certificate", &via, &e),
                        }
                    }
                }
                Err(bad) => {
                    METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                    log::debug!("tunnel of {node:?} to {:?} ended: {bad}", proxy.name);
                    break;
                }
            },
            Wake::Got(Ok(Some(Response::Error { message, .. }))) => {
                METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                warn!("proxy {:?} closed the tunnel: {message}", proxy.name);
                break;
            }
            Wake::Got(other) => {
                METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                // A refusal the proxy sent as it closed (a lock) is worth a warning.
                if let Some(Ok(Some(Response::Error { message, .. }))) =
                    net::with_timeout(Duration::from_millis(100), ctl.recv::<Response>()).await
                {
                    warn!("proxy {:?} closed the tunnel: {message}", proxy.name);
                } else {
                    log::debug!("tunnel of {node:?} to {:?} ended: {other:?}", proxy.name);
                }
                break;
            }
        }
    }
    let _ = events.try_send(Event::Closed(conn));
    drop(mux);
}
