//! A tunnel's control stream on the proxy, after the hello: heartbeats relayed to auth (with
//! a renewal request when the node's certificate is due), renewals relayed to auth, refreshes
//! (the node renewed over another proxy), goodbye. And what auth pushes that concerns tunnels:
//! the CAs to trust, and the hosts and users to shut out at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::state::Judge;
use super::ProxyState;
use crate::clock::now_unix;
use crate::core::rotation::{self, CertFacts, Pace, RenewPacer};
use crate::mux;
use crate::net::{self, Framed};
use crate::pki::{self, Subject};
use crate::proto::pace::{Beat, Pacer};
use crate::proto::{
    Denial, ErrorCode, LockTarget, RelayedBeat, Request, Response, StreamHello, TrustInfo,
    QUIET_EVERY,
};
use crate::rt::Shutdown;

/// How long auth has to answer a relayed renewal.
const RENEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Auth's new trust: client certificates of these CAs only, from the next handshake on;
/// established tunnels are judged at their next heartbeat.
pub fn trust_changed(state: &ProxyState, info: TrustInfo) {
    let judge = match Judge::new(info) {
        Ok(j) => j,
        Err(e) => {
            warn!("auth sent CA certificates this proxy cannot read: {e}");
            return;
        }
    };
    let ders: Vec<_> = judge
        .info
        .ca_certs
        .iter()
        .filter_map(|p| pki::certs_from_pem(p).ok())
        .flatten()
        .collect();
    if let Err(e) = state.tls.set_trust(&ders) {
        warn!("cannot trust the cluster's CAs: {e}");
        return;
    }
    *state.trust.write().unwrap_or_else(|p| p.into_inner()) = Some(judge);
}

/// Auth's new denials: refuse them from now on, close the tunnels of denied hosts and the
/// dials of denied users, and keep them on disk for a restart while auth is unreachable.
pub fn denials_changed(state: &Arc<ProxyState>, denials: Vec<Denial>) {
    super::denials::save(state, &denials);
    let map: HashMap<LockTarget, String> =
        denials.into_iter().map(|d| (d.target, d.message)).collect();
    // The map first: a tunnel or dial that starts now is refused, and one that started an
    // instant before is in the lists closed below (both check again after registering).
    *state.denied.write().unwrap_or_else(|p| p.into_inner()) = map.clone();
    for (target, message) in &map {
        match target {
            LockTarget::ServerId(id) => {
                if let Some(list) = state.tunnels().get(id) {
                    for entry in list {
                        info!("closing the tunnel of host {id}: {message}");
                        entry.kill.fire();
                    }
                }
            }
            LockTarget::User(user) => state.user_dials.kill(user),
        }
    }
}

/// What ended a wait on the control stream.
enum Wake {
    Msg(Option<crate::error::Result<Option<Request>>>),
    /// Time to tell auth again that this tunnel is held, or to judge it silent.
    Tick,
    Killed,
}

/// How long a tunnel may stay silent: a quiet tunnel beats every `QUIET_EVERY` intervals, and
/// gets three more (as a stream that beats every interval gets three) before it is judged dead.
pub fn silence_allowed(interval: Duration) -> Duration {
    interval * (QUIET_EVERY + 3)
}

/// Serves the control stream until the node leaves, fails, is shut out or the proxy stops.
/// `cert` describes the node certificate the tunnel was opened with, `cert_pem` is that
/// certificate (both follow renewals and refreshes).
pub async fn run(
    ctl: &mut Framed<mux::Stream>,
    hello: &StreamHello,
    subject: &Subject,
    mut cert: CertFacts,
    mut cert_pem: String,
    killed: &Shutdown,
    state: &ProxyState,
    shutdown: &Shutdown,
) {
    // Checked again now that the tunnel is registered: a lock pushed between the hello's check
    // and the registration found no tunnel to close.
    if let Some(why) = state.denial(&LockTarget::ServerId(subject.host_id.clone())) {
        let _ = ctl
            .send(&Response::error(ErrorCode::AccessDenied, why))
            .await;
        return;
    }
    let beat = RelayedBeat {
        host_id: subject.host_id.clone(),
        node_name: hello.node_name.clone(),
        server_version: hello.server_version.clone(),
        labels: hello.labels.clone(),
    };
    // Acks repeat the set only when it changed. The first ack always carries it: the welcome's
    // copy was read before the welcome went out, and a change that came in between would
    // otherwise never reach the node.
    let mut last_sent = Vec::new();
    // Beats only keep the tunnel alive; a node that beats far faster than the interval is
    // closed.
    let mut pacer = Pacer::default();
    let mut pacer_renew = RenewPacer::default();
    // The proxy tells auth itself, once per interval, that it holds this tunnel (the node may
    // beat here only every `QUIET_EVERY` intervals): the first time at once.
    let mut next_relay = Instant::now();
    let mut heard = Instant::now();
    let mut told_quiet = false;
    loop {
        let interval = state.interval();
        let now = Instant::now();
        if now >= next_relay {
            state.relay(Request::Relay(beat.clone()));
            next_relay = now + interval;
        }
        let silent_until = heard + silence_allowed(interval);
        if now >= silent_until {
            info!("closing the silent tunnel of {:?}", hello.node_name);
            return;
        }
        let tick = next_relay.min(silent_until);
        let wake = futures_lite::future::or(
            async { Wake::Msg(Some(ctl.recv::<Request>().await)) },
            futures_lite::future::or(
                async {
                    smol::Timer::at(tick).await;
                    Wake::Tick
                },
                async {
                    futures_lite::future::or(shutdown.wait(), killed.wait()).await;
                    if killed.is_fired() {
                        Wake::Killed
                    } else {
                        Wake::Msg(None)
                    }
                },
            ),
        )
        .await;
        if matches!(wake, Wake::Msg(Some(_))) {
            heard = Instant::now();
        }
        let msg = match wake {
            Wake::Tick => continue,
            Wake::Killed => {
                let why = state
                    .denial(&LockTarget::ServerId(subject.host_id.clone()))
                    .unwrap_or_else(|| "this host may no longer connect".into());
                let _ = ctl
                    .send(&Response::error(ErrorCode::AccessDenied, why))
                    .await;
                return;
            }
            Wake::Msg(m) => m,
        };
        match msg {
            Some(Ok(Some(Request::Heartbeat { seq }))) => {
                let now = now_unix();
                let judged = state
                    .trust
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|j| (j.still_valid(&cert, now), j.must_renew(&cert, now)));
                let renew = match judged {
                    Some((Err(why), _)) => {
                        warn!("closing the tunnel of {:?}: {why}", hello.node_name);
                        let msg =
                            format!("{why}: remove the identity and join again with a new token");
                        let _ = ctl
                            .send(&Response::error(ErrorCode::AccessDenied, msg))
                            .await;
                        return;
                    }
                    Some((Ok(()), renew)) => renew,
                    // Auth has not said yet: the certificate's own dates decide.
                    None if cert.not_after <= now => {
                        warn!(
                            "closing the tunnel of {:?}: its certificate expired",
                            hello.node_name
                        );
                        let msg = "its certificate expired: remove the identity and join again \
                                   with a new token";
                        let _ = ctl
                            .send(&Response::error(ErrorCode::AccessDenied, msg))
                            .await;
                        return;
                    }
                    None => now >= cert.renew_at(),
                };
                let relayed = match pacer.on_beat(Instant::now(), state.interval()) {
                    Beat::Due | Beat::Early => state.link_up.load(Ordering::Relaxed),
                    Beat::Flood => {
                        warn!(
                            "tunnel of {:?} sends heartbeats far faster than the interval; \
                             closing it",
                            hello.node_name
                        );
                        return;
                    }
                };
                let set = state.proxy_set();
                let proxies = if set != last_sent {
                    last_sent = set.clone();
                    set
                } else {
                    Vec::new()
                };
                let ack = Response::HeartbeatAck {
                    seq,
                    proxies,
                    relayed,
                    renew,
                    // Said once: the node remembers it for this tunnel.
                    quiet: !std::mem::replace(&mut told_quiet, true),
                };
                if ctl.send(&ack).await.is_err() {
                    return;
                }
            }
            Some(Ok(Some(req @ (Request::Renew { .. } | Request::Refresh { .. })))) => {
                match pace(&mut pacer_renew, state) {
                    Pace::Go => {}
                    Pace::TooSoon => {
                        let soon = Response::error(ErrorCode::RateLimited, rotation::TOO_SOON);
                        if ctl.send(&soon).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Pace::Flood => return flooded(hello),
                }
                let answer = match req {
                    Request::Renew { csr, proof } => {
                        let host_id = subject.host_id.clone();
                        let shown = cert_pem.clone();
                        let relay = |id| Request::RelayRenew {
                            id,
                            host_id,
                            csr,
                            cert: shown,
                            proof,
                        };
                        let answer = Box::pin(state.ask_over_link(relay, RENEW_TIMEOUT)).await;
                        if let Some((facts, pem)) = pki::renewed_cert(&answer) {
                            cert = facts;
                            cert_pem = pem;
                        }
                        answer
                    }
                    // The certificate this tunnel is judged by already: nothing to check.
                    Request::Refresh { cert: pem } if pem == cert_pem => Response::Refreshed {
                        expires: cert.not_after,
                    },
                    Request::Refresh { cert: pem } => match refreshed(state, subject, &pem) {
                        Ok(facts) => {
                            let expires = facts.not_after;
                            cert = facts;
                            cert_pem = pem;
                            Response::Refreshed { expires }
                        }
                        Err(why) => Response::error(ErrorCode::BadParameter, why),
                    },
                    _ => Response::error(ErrorCode::BadParameter, "not a renewal"),
                };
                if ctl.send(&answer).await.is_err() {
                    return;
                }
            }
            Some(Ok(Some(Request::Goodbye))) => {
                state.relay(Request::RelayGoodbye {
                    host_id: subject.host_id.clone(),
                });
                // The ack leaves only while the multiplexer runs, which ends with this
                // handler: wait (briefly) for the node to read it and close.
                if ctl.send(&Response::GoodbyeAck).await.is_ok() {
                    let _ = net::with_timeout(Duration::from_secs(1), ctl.recv::<Request>()).await;
                }
                info!("node {:?} said goodbye on its tunnel", hello.node_name);
                return;
            }
            Some(Ok(Some(_))) => {
                warn!(
                    "tunnel of {:?} sent a message that is not valid on a tunnel; closing it",
                    hello.node_name
                );
                return;
            }
            Some(Err(e)) => {
                warn!("tunnel of {:?} failed: {e}", hello.node_name);
                return;
            }
            _ => return,
        }
    }
}

/// Takes a renewal or refresh attempt through the tunnel's pacer.
fn pace(pacer: &mut RenewPacer, state: &ProxyState) -> Pace {
    let (ttl, changed) = state
        .trust
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or((0, 0), |j| (j.info.host_cert_ttl_secs, j.info.changed));
    pacer.attempt(now_unix(), changed, ttl)
}

fn flooded(hello: &StreamHello) {
    warn!(
        "tunnel of {:?} sends renewals or refreshes far too often; closing it",
        hello.node_name
    );
}

/// Checks a certificate a node shows after renewing over another proxy: issued by a CA this
/// proxy trusts, valid now, and for exactly the host this tunnel authenticated as.
fn refreshed(state: &ProxyState, subject: &Subject, pem: &str) -> Result<CertFacts, String> {
    let bad = || "the refreshed certificate is not a valid certificate of this host".to_string();
    let der = pki::certs_from_pem(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(bad)?;
    if !state.tls.verifies(&der) {
        return Err(bad());
    }
    match pki::subject_of(&der) {
        Ok(s) if &s == subject => {}
        _ => return Err(bad()),
    }
    pki::facts_of(&der).map_err(|_| bad())
}
