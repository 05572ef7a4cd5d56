//! The tunnel pool: dial the proxy address (often a round-robin load balancer) again and again
//! until the agent holds exactly one tunnel to each proxy in the set the proxies announce. A
//! connection that lands on a proxy already held is closed. Heartbeats travel over every tunnel
//! and each proxy relays them to auth, so losing one proxy loses no node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use rustls::ClientConfig;
use smol::channel::{self, Sender};

use super::{dataplane, rejected_our_cert, stale};
use std::sync::atomic::Ordering::Relaxed;

use crate::config::Settings;
use crate::diag::{self, METRICS};
use crate::error::{Error, Result};
use crate::mux::{self, Mux};
use crate::net::{self, Framed};
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::pki::PROXY_SERVER_NAME;
use crate::proto::{ProxyRef, Request, Response, MAX_RESPONSE_FRAME};
use crate::proxy::ALPN_TUNNEL;
use crate::rt::{Backoff, Shutdown};

/// What tunnels tell the pool.
enum Event {
    /// The proxy set as a proxy announced it.
    Set(Vec<ProxyRef>),
    /// A heartbeat was relayed to auth.
    Relayed,
    /// The tunnel to this proxy ended.
    Closed(String),
}

/// A freshly dialed tunnel, after the proxy's welcome.
struct Dialed {
    mux: Mux,
    ctl: Framed<mux::Stream>,
    proxy: ProxyRef,
    cluster_name: String,
    interval: Duration,
    proxies: Vec<ProxyRef>,
}

/// Consecutive landings on held proxies after which the agent suspects sticky balancing.
const STICKY_HINT_AFTER: u32 = 5;

pub async fn run(
    settings: &Settings,
    addr: &str,
    identity: Identity,
    shutdown: Shutdown,
) -> Result<()> {
    let subject = identity.subject()?;
    let base = verify::client_config(&identity.ca_ders()?, Some(&identity), ServerRole::Proxy)?;
    let config = net::with_alpn(&base, &[ALPN_TUNNEL]);
    let (tx, rx) = channel::unbounded::<Event>();
    let mut held: HashMap<String, (String, smol::Task<()>)> = HashMap::new();
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
    let mut dups = Backoff::new(Duration::from_millis(40), Duration::from_secs(5));
    let mut dup_streak = 0u32;
    let mut next_dial = Instant::now();
    let mut ever_connected = false;
    let mut first_ack = false;
    // Proxies held at some point: a new tunnel to one of them is a reconnect.
    let mut ever_held: std::collections::HashSet<String> = Default::default();

    let mut handle = |ev: Event,
                      held: &mut HashMap<String, (String, smol::Task<()>)>,
                      known: &mut BTreeMap<String, String>| match ev {
        Event::Set(set) if !set.is_empty() => {
            *known = set.into_iter().map(|p| (p.id, p.name)).collect();
        }
        Event::Set(_) => {}
        Event::Relayed => {
            if !first_ack {
                first_ack = true;
                info!(
                    "first heartbeat acknowledged: node {:?} is online",
                    settings.nodename
                );
                diag::set_ready("first heartbeat acknowledged");
            }
        }
        Event::Closed(id) => {
            if let Some((name, _)) = held.remove(&id) {
                if shutdown.is_fired() {
                    log::debug!("tunnel to proxy {name:?} closed");
                } else {
                    METRICS.failures_tunnel.fetch_add(1, Relaxed);
                    diag::not_ready_because(format!("the tunnel to proxy {name:?} closed"));
                    warn!("tunnel to proxy {name:?} closed ({} left)", held.len());
                }
            }
        }
    };

    loop {
        while let Ok(ev) = rx.try_recv() {
            handle(ev, &mut held, &mut known);
        }
        METRICS.tunnels_held.store(held.len() as i64, Relaxed);
        let missing = known.keys().filter(|k| !held.contains_key(*k)).count();
        let want = held.is_empty() || missing > 0;
        let now = Instant::now();
        if want && now >= next_dial && !shutdown.is_fired() {
            match dial(settings, addr, &config).await {
                Ok(t) => {
                    if t.cluster_name != subject.cluster {
                        return Err(stale(
                            settings,
                            format!(
                                "it was issued by cluster {:?}, but {addr} serves cluster {:?}",
                                subject.cluster, t.cluster_name
                            ),
                        ));
                    }
                    ever_connected = true;
                    errors.reset();
                    let mut set = t.proxies.clone();
                    set.push(t.proxy.clone());
                    known = set.into_iter().map(|p| (p.id, p.name)).collect();
                    if held.contains_key(&t.proxy.id) {
                        dup_streak += 1;
                        if dup_streak % STICKY_HINT_AFTER == 0 {
                            warn!(
                                "holding tunnels to {} of {} proxies, but {addr} keeps sending \
                                 new connections to proxies already held; the load balancer \
                                 must use round-robin, not sticky (source/session affinity) \
                                 balancing",
                                held.len(),
                                known.len()
                            );
                        }
                        next_dial = Instant::now() + dups.next_delay_full();
                    } else {
                        dup_streak = 0;
                        dups.reset();
                        let id = t.proxy.id.clone();
                        let name = t.proxy.name.clone();
                        // Capped: proxy IDs come from verified proxies, but bound it anyway.
                        if ever_held.contains(&id) {
                            METRICS.reconnects_tunnel.fetch_add(1, Relaxed);
                        } else if ever_held.len() < 1024 {
                            ever_held.insert(id.clone());
                        }
                        let task = crate::rt::spawn(tunnel(
                            t,
                            settings.nodename.clone(),
                            tx.clone(),
                            shutdown.clone(),
                        ));
                        held.insert(id, (name.clone(), task));
                        info!(
                            "tunnel to proxy {name:?} established ({} of {} proxies)",
                            held.len(),
                            known.len().max(held.len())
                        );
                        next_dial = Instant::now();
                    }
                }
                Err(e) => {
                    METRICS.failures_tunnel.fetch_add(1, Relaxed);
                    diag::not_ready_because(format!("opening a tunnel through {addr}: {e}"));
                    if let (false, Error::Pki(detail)) = (ever_connected, &e) {
                        return Err(stale(settings, detail.clone()));
                    }
                    let delay = errors.next_delay();
                    warn!(
                        "cannot open a tunnel through {addr}: {e}; retrying in {:.1}s",
                        delay.as_secs_f64()
                    );
                    next_dial = Instant::now() + delay;
                }
            }
            continue;
        }
        let wait = if want {
            next_dial.saturating_duration_since(now)
        } else {
            Duration::from_secs(1)
        };
        let ev = futures_lite::future::or(async { rx.recv().await.ok().map(Some) }, async {
            if shutdown.sleep(wait).await {
                Some(None)
            } else {
                None
            }
        })
        .await;
        match ev {
            Some(Some(ev)) => handle(ev, &mut held, &mut known),
            Some(None) => {}
            None => break,
        }
    }
    METRICS.tunnels_held.store(0, Relaxed);
    // Let every tunnel say goodbye (each watches the shutdown itself).
    let deadline = Instant::now() + Duration::from_millis(1200);
    while !held.is_empty() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match net::with_timeout(left, rx.recv()).await {
            Some(Ok(ev)) => handle(ev, &mut held, &mut known),
            _ => break,
        }
    }
    Ok(())
}

async fn dial(settings: &Settings, addr: &str, config: &Arc<ClientConfig>) -> Result<Dialed> {
    let tls = net::connect_tls_as(addr, config.clone(), PROXY_SERVER_NAME).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_TUNNEL) {
        return Err(Error::Protocol(format!(
            "{addr} does not speak the tunnel protocol (no {} ALPN): is it a teleport-lite \
             proxy?",
            String::from_utf8_lossy(ALPN_TUNNEL)
        )));
    }
    let mux = mux::start(tls, true);
    let stream = mux.opener.open().await.map_err(|e| Error::net(addr, e))?;
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
        }),
        Ok(other) => Err(super::join::unexpected(other)),
        Err(e) => {
            if rejected_our_cert(&e) {
                return Err(Error::Pki(format!(
                    "the proxy at {addr} rejected our identity"
                )));
            }
            Err(e)
        }
    }
}

/// One tunnel: heartbeats on the control stream, and streams the proxy opens to local services.
async fn tunnel(t: Dialed, node_name: String, events: Sender<Event>, shutdown: Shutdown) {
    let Dialed {
        mux,
        mut ctl,
        proxy,
        interval,
        ..
    } = t;
    let inbound = mux.inbound.clone();
    let _acceptor = crate::rt::spawn(async move {
        while let Ok(stream) = inbound.recv().await {
            crate::rt::spawn(dataplane::serve(stream)).detach();
        }
    });
    let mut jitter = Backoff::new(interval, interval);
    let mut seq = 0u64;
    loop {
        seq += 1;
        let sent = Instant::now();
        if ctl.send(&Request::Heartbeat { seq }).await.is_err() {
            break;
        }
        METRICS.heartbeats_sent.fetch_add(1, Relaxed);
        match net::with_timeout(interval * 2, ctl.recv::<Response>()).await {
            Some(Ok(Some(Response::HeartbeatAck {
                seq: acked,
                proxies,
                relayed,
            }))) if acked == seq => {
                METRICS.rtt_tunnel.observe(sent.elapsed());
                METRICS.heartbeats_acked.fetch_add(1, Relaxed);
                let _ = events.try_send(Event::Set(proxies));
                if relayed {
                    let _ = events.try_send(Event::Relayed);
                }
            }
            other => {
                METRICS.heartbeats_failed.fetch_add(1, Relaxed);
                log::debug!(
                    "tunnel of {node_name:?} to {:?} ended: {other:?}",
                    proxy.name
                );
                break;
            }
        }
        if !shutdown.sleep(jitter.jitter(interval, 0.1)).await {
            let _ = ctl.send(&Request::Goodbye).await;
            let _ = net::with_timeout(Duration::from_secs(1), ctl.recv::<Response>()).await;
            info!("said goodbye to proxy {:?}", proxy.name);
            break;
        }
    }
    let _ = events.try_send(Event::Closed(proxy.id.clone()));
    drop(mux);
}
