//! The proxy's link to auth: hello, own heartbeats (answered with the proxy set), and relayed
//! node beats, batched into as few TLS records as possible. Reconnects with jittered backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{ProxyState, RelayRx};
use crate::core::Backoff;
use crate::diag::METRICS;
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::verify::{self, ServerRole};
use crate::proto::{encode, ProxyHello, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION};
use crate::rt::Shutdown;
use crate::VERSION;

/// Messages written in one batch at most.
const BATCH: usize = 512;

pub async fn run(state: Arc<ProxyState>, relay_rx: RelayRx, shutdown: Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
    let mut ever_up = false;
    loop {
        let started = Instant::now();
        let result = session(&state, &relay_rx, &shutdown, &mut ever_up).await;
        state.link_up.store(false, Ordering::Relaxed);
        METRICS.proxy_link_up.store(0, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(e) => {
                METRICS.failures_auth_link.fetch_add(1, Ordering::Relaxed);
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                let lost = state.auth.current().to_owned();
                // Several auth servers: the next attempt goes to the next one.
                let next = state.auth.fail_over();
                warn!(
                    "link to auth at {lost} lost: {e}; reconnecting to {next} in {:.1}s",
                    delay.as_secs_f64()
                );
                if !shutdown.sleep(delay).await {
                    return;
                }
            }
        }
    }
}

async fn session(
    state: &Arc<ProxyState>,
    relay_rx: &RelayRx,
    shutdown: &Shutdown,
    ever_up: &mut bool,
) -> Result<()> {
    let addr = state.auth.current().to_owned();
    let identity = state.identity();
    let config = verify::client_config(&identity.ca_ders()?, Some(&identity), ServerRole::Auth)?;
    let tls = net::connect_tls(&addr, config).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&Request::ProxyHello(ProxyHello {
        version: PROTOCOL_VERSION,
        name: state.me.name.clone(),
        public_addr: state.public_addr.clone(),
        server_version: VERSION.to_string(),
        web: state.own_web.clone(),
    }))
    .await
    .map_err(|e| Error::net(&addr, e))?;
    match crate::net::rpc::recv(&mut conn, &addr).await? {
        Response::HelloAck {
            heartbeat_interval_ms,
            proxies,
            ..
        } => {
            state
                .heartbeat_interval_ms
                .store(heartbeat_interval_ms.max(100), Ordering::Relaxed);
            *state.proxies.lock().unwrap_or_else(|p| p.into_inner()) = proxies;
        }
        other => return Err(crate::net::rpc::unexpected(other)),
    }
    // Drop beats queued while the link was down: they are stale.
    while relay_rx.try_recv().is_ok() {}
    state.link_up.store(true, Ordering::Relaxed);
    METRICS.proxy_link_up.store(1, Ordering::Relaxed);
    if *ever_up {
        info!("link to auth at {addr} re-established");
        METRICS.reconnects_auth_link.fetch_add(1, Ordering::Relaxed);
    } else {
        info!("link to auth at {addr} is up");
        *ever_up = true;
    }
    let (tls, _) = conn.into_parts();
    let (rd, wr) = futures_lite::io::split(tls);
    let mut reader = Framed::new(rd, MAX_RESPONSE_FRAME);
    let mut writer = Framed::new(wr, MAX_RESPONSE_FRAME);
    let interval = state.interval();
    let ttl = interval * 3;
    // The last beat's number and when it left (µs since `base`), for the round-trip histogram.
    let base = Instant::now();
    let last_beat = (AtomicU64::new(0), AtomicU64::new(0));
    let last_beat = &last_beat;

    let st = state.clone();
    let read_side = async move {
        // Bytes of a big push (a long denial list) that were arriving when the last wait ran
        // out: auth is answering, only slowly, so the link is not judged dead while they grow.
        let mut arriving = 0;
        loop {
            let got = net::with_timeout(ttl, reader.recv::<Response>()).await;
            if got.is_none() && reader.pending() > arriving {
                arriving = reader.pending();
                continue;
            }
            arriving = 0;
            match got {
                Some(Ok(Some(Response::HeartbeatAck {
                    seq,
                    proxies,
                    renew,
                    ..
                }))) => {
                    if renew {
                        let _ = st.renew_now.try_send(());
                    }
                    if seq == last_beat.0.load(Ordering::Relaxed) {
                        let sent = Duration::from_micros(last_beat.1.load(Ordering::Relaxed));
                        METRICS
                            .rtt_auth_link
                            .observe(base.elapsed().saturating_sub(sent));
                    }
                    *st.proxies.lock().unwrap_or_else(|p| p.into_inner()) = proxies;
                }
                Some(Ok(Some(Response::ProxyWeb(web)))) => {
                    *st.cluster_web.lock().unwrap_or_else(|p| p.into_inner()) = web;
                }
                Some(Ok(Some(Response::RelayAnswer { id, answer }))) => st.answered(id, *answer),
                Some(Ok(Some(Response::Trust(trust)))) => super::control::trust_changed(&st, trust),
                Some(Ok(Some(Response::Denied { denials }))) => {
                    super::control::denials_changed(&st, denials)
                }
                Some(Ok(Some(_))) => {}
                Some(Ok(None)) => {
                    return Err(Error::net(st.auth.current(), "auth closed the link"))
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::net(st.auth.current(), "auth stopped answering")),
            }
        }
    };
    let write_side = async {
        let mut seq = 0u64;
        let mut next_beat = Instant::now();
        loop {
            if Instant::now() >= next_beat {
                seq += 1;
                let at = base.elapsed().as_micros() as u64;
                last_beat.1.store(at, Ordering::Relaxed);
                last_beat.0.store(seq, Ordering::Relaxed);
                writer
                    .send(&Request::Heartbeat { seq })
                    .await
                    .map_err(|e| Error::net(&addr, e))?;
                next_beat = Instant::now() + interval;
            }
            let wait = next_beat.saturating_duration_since(Instant::now());
            let first =
                futures_lite::future::or(async { relay_rx.recv().await.ok().map(Some) }, async {
                    if shutdown.sleep(wait).await {
                        Some(None)
                    } else {
                        None
                    }
                })
                .await;
            match first {
                None => {
                    let _ = writer.send(&Request::Goodbye).await;
                    return Ok(());
                }
                Some(None) => continue,
                Some(Some(msg)) => {
                    let mut batch = encode(&msg);
                    for _ in 1..BATCH {
                        match relay_rx.try_recv() {
                            Ok(m) => batch.extend(encode(&m)),
                            Err(_) => break,
                        }
                    }
                    writer
                        .send_raw(&batch)
                        .await
                        .map_err(|e| Error::net(&addr, e))?;
                }
            }
        }
    };
    futures_lite::future::or(write_side, read_side).await
}
