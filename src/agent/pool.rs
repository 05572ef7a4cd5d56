//! The tunnel pool: dial the proxy address (often a round-robin load balancer) again and again
//! until the agent holds exactly one tunnel to each proxy in the set the proxies announce. A
//! connection that lands on a proxy already held is closed. Heartbeats travel over every tunnel
//! and each proxy relays them to auth, so losing one proxy loses no node. This is the I/O
//! driver of `core::pool::TunnelPool` (which decides) and of one `core::beats::Beats` schedule
//! per tunnel.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use log::{info, warn};
use smol::channel;

use super::renew::Renewer;
use super::{rejected_our_cert, stale};
use crate::config::Settings;
use crate::core::backoff::os_seed;
use crate::core::pool::{Action, ConnId, TunnelPool};
use crate::diag::{self, METRICS};
use crate::error::{Error, Result};
use crate::mux::{self, Mux};
use crate::net::{self, Framed};
use crate::pki::verify::ServerRole;
use crate::proto::ALPN_TUNNEL;
use crate::proto::PROXY_SERVER_NAME;
use crate::proto::{ProxyRef, Request, Response, MAX_RESPONSE_FRAME};
use crate::rt::Shutdown;

/// What tunnels tell the pool.
pub(super) enum Event {
    /// The proxy set as this tunnel's proxy announced it (empty: unchanged).
    Set(ConnId, Vec<ProxyRef>),
    /// A heartbeat was acknowledged; `true`: relayed to auth.
    Acked(bool),
    /// This tunnel ended.
    Closed(ConnId),
}

/// A freshly dialed tunnel, after the proxy's welcome.
pub(super) struct Dialed {
    pub mux: Mux,
    pub ctl: Framed<mux::Stream>,
    pub proxy: ProxyRef,
    pub cluster_name: String,
    pub interval: Duration,
    pub proxies: Vec<ProxyRef>,
    /// The renewal generation of the certificate this tunnel was opened with.
    pub generation: u64,
}

/// How long tunnels get to say goodbye at shutdown.
const GOODBYE_WINDOW: Duration = Duration::from_millis(1200);

/// What ended a wait.
pub(super) enum Wake<T> {
    Timer,
    Shutdown,
    Got(T),
}

pub async fn run(
    settings: &Settings,
    addr: &str,
    renewer: Arc<Renewer>,
    shutdown: Shutdown,
) -> Result<()> {
    let subject = renewer.identity().subject()?;
    let (tx, rx) = channel::unbounded::<Event>();
    let mut pool = TunnelPool::new(Instant::now(), os_seed());
    // Tunnel tasks by connection; dropping one cancels it.
    let mut tasks: HashMap<ConnId, smol::Task<()>> = HashMap::new();
    // Dialed connections between `landed` and the pool's verdict on them.
    let mut landing: HashMap<ConnId, Dialed> = HashMap::new();
    let mut last_conn: ConnId = 0;
    let mut dial_error: Option<Error> = None;
    let feed = |pool: &mut TunnelPool, tasks: &mut HashMap<_, _>, ev: Event| match ev {
        Event::Set(conn, set) => pool.announced(conn, set),
        Event::Acked(relayed) => pool.acked(relayed),
        Event::Closed(conn) => {
            tasks.remove(&conn);
            pool.closed(conn);
        }
    };

    while !shutdown.is_fired() {
        while let Ok(ev) = rx.try_recv() {
            feed(&mut pool, &mut tasks, ev);
        }
        pool.tick(Instant::now());
        while let Some(action) = pool.poll_action() {
            match action {
                Action::Dial => {
                    last_conn += 1;
                    match dial(settings, addr, &renewer).await {
                        Ok(t) => {
                            if t.cluster_name != subject.cluster {
                                return Err(stale(
                                    settings,
                                    format!(
                                        "it was issued by cluster {:?}, but {addr} serves \
                                         cluster {:?}",
                                        subject.cluster, t.cluster_name
                                    ),
                                ));
                            }
                            let (proxy, others) = (t.proxy.clone(), t.proxies.clone());
                            landing.insert(last_conn, t);
                            pool.landed(Instant::now(), last_conn, proxy, others);
                        }
                        Err(e) => {
                            if let Some(fatal) = super::revoked(settings, &e) {
                                return Err(fatal);
                            }
                            METRICS.failures_tunnel.fetch_add(1, Relaxed);
                            diag::not_ready_because(format!(
                                "opening a tunnel through {addr}: {e}"
                            ));
                            let e = if pool.ever_landed() {
                                e
                            } else {
                                match super::fatal_before_up(&subject.cluster, e) {
                                    Ok(fatal) => return Err(fatal),
                                    Err(e) => e,
                                }
                            };
                            dial_error = Some(e);
                            pool.dial_failed(Instant::now());
                        }
                    }
                }
                Action::Hold {
                    conn,
                    proxy,
                    reconnect,
                    held,
                    known,
                } => {
                    let Some(t) = landing.remove(&conn) else {
                        continue;
                    };
                    if reconnect {
                        METRICS.reconnects_tunnel.fetch_add(1, Relaxed);
                    }
                    let tunnel = super::tunnel::run(
                        t,
                        conn,
                        settings.nodename.clone(),
                        tx.clone(),
                        renewer.clone(),
                        shutdown.clone(),
                    );
                    tasks.insert(conn, crate::rt::spawn(tunnel));
                    info!(
                        "tunnel to proxy {:?} established ({held} of {known} proxies)",
                        proxy.name
                    );
                }
                Action::Close { conn, .. } => {
                    // Dropping the mux closes the connection.
                    landing.remove(&conn);
                }
                Action::Sticky {
                    held,
                    known,
                    missing,
                } => warn!(
                    "holding tunnels to {held} of {known} proxies, but {addr} keeps sending new \
                     connections to proxies already held, none to {missing:?}; the load \
                     balancer must use round-robin, not sticky (source/session affinity) \
                     balancing, and route to every proxy (is one down in its health checks?)"
                ),
                Action::Retry { delay } => {
                    let e = dial_error.take().map(|e| e.to_string()).unwrap_or_default();
                    warn!(
                        "cannot open a tunnel through {addr}: {e}; retrying in {:.1}s",
                        delay.as_secs_f64()
                    );
                }
                Action::Lost { name, left, .. } if shutdown.is_fired() => {
                    log::debug!("tunnel to proxy {name:?} closed ({left} left)");
                }
                Action::Lost { name, left, .. } => {
                    METRICS.failures_tunnel.fetch_add(1, Relaxed);
                    diag::not_ready_because(format!("the tunnel to proxy {name:?} closed"));
                    warn!("tunnel to proxy {name:?} closed ({left} left)");
                }
                Action::Online => {
                    info!(
                        "first heartbeat acknowledged: node {:?} is online",
                        settings.nodename
                    );
                    diag::set_ready("first heartbeat acknowledged");
                }
            }
        }
        METRICS.tunnels_held.store(pool.held() as i64, Relaxed);
        // Nothing to dial: wake for tunnel events only (the sender is held here, so `recv`
        // never ends; the hour is a mere upper bound).
        let wait = pool.poll_timeout().map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        let wake = future::or(async { Wake::Got(rx.recv().await.ok()) }, async {
            if shutdown.sleep(wait).await {
                Wake::Timer
            } else {
                Wake::Shutdown
            }
        })
        .await;
        if let Wake::Got(Some(ev)) = wake {
            feed(&mut pool, &mut tasks, ev);
        }
    }
    pool.shutdown();
    METRICS.tunnels_held.store(0, Relaxed);
    // Let every tunnel say goodbye (each watches the shutdown itself).
    let deadline = Instant::now() + GOODBYE_WINDOW;
    while pool.held() > 0 && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match net::with_timeout(left, rx.recv()).await {
            Some(Ok(ev)) => feed(&mut pool, &mut tasks, ev),
            _ => break,
        }
        while let Some(action) = pool.poll_action() {
            if let Action::Lost { name, .. } = action {
                log::debug!("tunnel to proxy {name:?} closed");
            }
        }
    }
    Ok(())
}

async fn dial(settings: &Settings, addr: &str, renewer: &Renewer) -> Result<Dialed> {
    // The newest identity: a renewal may have happened since the last dial.
    let generation = renewer.generation();
    let base = renewer.client_config(ServerRole::Proxy)?;
    let config = net::with_alpn(&base, &[ALPN_TUNNEL]);
    let tls = net::connect_tls_as(addr, config, PROXY_SERVER_NAME).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_TUNNEL) {
        return Err(Error::net(
            addr,
            crate::error::NetKind::NoAlpn("teleport-lite reverse tunnel"),
        ));
    }
    let mux = mux::start(tls, true);
    // Bounded: the pool waits on this, and a proxy that closes the connection as the stream
    // opens must not stall every other tunnel's upkeep.
    let stream = match net::with_timeout(net::CONNECT_TIMEOUT, mux.opener.open()).await {
        Some(opened) => opened.map_err(|e| Error::net(addr, e))?,
        None => {
            return Err(Error::net(
                addr,
                "the tunnel's control stream did not open in time",
            ))
        }
    };
    let mut ctl = Framed::new(stream, MAX_RESPONSE_FRAME);
    let hello = super::hello(settings);
    ctl.send(&Request::TunnelHello(hello))
        .await
        .map_err(|e| Error::net(addr, e))?;
    match super::join::recv(&mut ctl, addr).await {
        Ok(Response::TunnelWelcome {
            proxy,
            cluster_name,
            heartbeat_interval_ms,
            proxies,
        }) => Ok(Dialed {
            mux,
            ctl,
            proxy,
            cluster_name,
            interval: Duration::from_millis(heartbeat_interval_ms.max(100)),
            proxies,
            generation,
        }),
        Ok(other) => Err(super::join::unexpected(other)),
        Err(e) => {
            if rejected_our_cert(&e) {
                return Err(stale(settings, format!("the proxy at {addr} rejected it")));
            }
            Err(e)
        }
    }
}
