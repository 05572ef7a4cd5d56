//! A proxy's link to auth: the proxy's own heartbeats (answered with the proxy set), the beats
//! it relays for tunnelled nodes, renewals for itself and for those nodes, and what auth pushes
//! to it: the web pins of every proxy, the CAs and signers (`Trust`), and who may not connect
//! (`Denied`), at the start and at once on every change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use smol::channel::Sender;

use super::renew;
use super::state::AuthState;
use super::streams::{close_invalid, hello_ok, lock, next, Io};
use crate::clock::now_unix;
use crate::core::inventory::node_info;
use crate::core::rotation::CertFacts;
use crate::net::Framed;
use crate::pki::ca::Sans;
use crate::pki::Subject;
use crate::proto::{
    limits, Denial, ErrorCode, LockTarget, ProxyHello, ProxyRef, RelayedBeat, Request, Response,
    TrustInfo, WebTrust, ROLE_PROXY,
};
use crate::rt::Shutdown;
use crate::VERSION;

/// Renewals one proxy may have in flight; more are answered "busy" at once.
const MAX_RENEWALS: usize = 64;

/// What ended a wait on the link.
enum Wake {
    Msg(Option<Request>),
    Killed,
    Changed,
    /// A renewal's answer (and whether it was the proxy's own).
    Answer(u64, Response, bool),
}

/// What was last pushed to the proxy, to send only changes.
#[derive(Default)]
struct Pushed {
    web: Option<WebTrust>,
    trust: Option<TrustInfo>,
    denied: Option<Vec<Denial>>,
}

/// The proxy's link. `cert` and `sans` describe the verified certificate it connected with.
pub async fn proxy_link<S: Io>(
    mut conn: Framed<S>,
    hello: ProxyHello,
    subject: Subject,
    mut cert: CertFacts,
    sans: Sans,
    peer: SocketAddr,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) {
    let checked = limits::check_name(&hello.name, "proxy name")
        .and_then(|()| limits::check_version(&hello.server_version))
        .and_then(|()| limits::check_addr(&hello.public_addr))
        .map_err(|e| e.to_string())
        .and_then(|()| crate::pki::webpin::check_list(&hello.web.pins));
    if !hello_ok(&mut conn, hello.version, checked).await {
        return;
    }
    if let Some(refused) = renew::refusal(&state, &subject.host_id) {
        warn!(
            "refused the link of proxy {} from {peer}: it is locked or removed",
            subject.host_id
        );
        let _ = conn.send(&refused).await;
        return;
    }
    let guard = state.revoke.register(&subject.host_id);
    let changes = state.revoke.subscribe();
    let conn_id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let me = ProxyRef {
        id: subject.host_id.clone(),
        name: hello.name.clone(),
    };
    let ttl = state.ttl_ms();
    let refresh = |state: &AuthState| {
        let mut inv = lock(state);
        inv.upsert_proxy(
            me.clone(),
            &hello.public_addr,
            &hello.server_version,
            conn_id,
            state.now_ms(),
            ttl,
        );
        inv.set_proxy_web(&me.id, hello.web.clone());
        (inv.proxy_set(state.now_ms()), inv.web_trust(state.now_ms()))
    };
    let (proxies, _) = refresh(&state);
    info!("proxy {:?} ({}) is online from {peer}", me.name, me.id);
    let ack = Response::HelloAck {
        cluster_name: state.cluster_name.clone(),
        server_version: VERSION.to_string(),
        heartbeat_interval_ms: state.heartbeat_interval.as_millis() as u64,
        proxies,
    };
    if conn.send(&ack).await.is_err() {
        return;
    }
    // The proxy reads its hello answer alone (and drops what it read past it), so pushes
    // follow a heartbeat answer: the first one, then whenever they change.
    let mut pushed = Pushed::default();
    let mut acked_once = false;
    let (answers_tx, answers_rx) = smol::channel::bounded::<(u64, Response, bool)>(MAX_RENEWALS);
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let wake = futures_lite::future::or(
            futures_lite::future::or(
                async { Wake::Msg(next(&mut conn, Duration::from_millis(ttl), &shutdown).await) },
                async {
                    guard.killed.wait().await;
                    Wake::Killed
                },
            ),
            futures_lite::future::or(
                async {
                    let _ = changes.changed.recv().await;
                    Wake::Changed
                },
                async {
                    match answers_rx.recv().await {
                        Ok((id, answer, own)) => Wake::Answer(id, answer, own),
                        Err(_) => std::future::pending().await,
                    }
                },
            ),
        )
        .await;
        let msg = match wake {
            Wake::Killed => {
                lock(&state).remove_proxy(&me.id, conn_id);
                info!(
                    "closed the link of proxy {:?}: it was locked or removed",
                    me.name
                );
                if let Some(why) = renew::refusal(&state, &me.id) {
                    let _ = conn.send(&why).await;
                }
                return;
            }
            Wake::Changed => {
                if acked_once
                    && push(&mut conn, &state, &mut pushed, None, true)
                        .await
                        .is_err()
                {
                    return;
                }
                continue;
            }
            Wake::Answer(id, answer, own) => {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if own {
                    if let Some((facts, _)) = crate::pki::renewed_cert(&answer) {
                        cert = facts;
                    }
                }
                let relay = Response::RelayAnswer {
                    id,
                    answer: Box::new(answer),
                };
                if conn.send(&relay).await.is_err() {
                    return;
                }
                continue;
            }
            Wake::Msg(m) => m,
        };
        match msg {
            Some(Request::Heartbeat { seq }) => {
                let now = now_unix();
                if let Err(why) = renew::still_valid(&state, &cert, now) {
                    lock(&state).remove_proxy(&me.id, conn_id);
                    let who = format!("the link of proxy {:?}", me.name);
                    return close_invalid(&mut conn, &who, why).await;
                }
                let (proxies, web) = refresh(&state);
                let ack = Response::HeartbeatAck {
                    seq,
                    proxies,
                    relayed: true,
                    renew: renew::must_renew(&state, &cert, ROLE_PROXY, now),
                    quiet: false,
                };
                if conn.send(&ack).await.is_err() {
                    return;
                }
                // Trust and denials are sent after the first answer, then only when a change
                // wakes this link: a beat does not rebuild them.
                let all = !acked_once;
                acked_once = true;
                if push(&mut conn, &state, &mut pushed, Some(web), all)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(Request::Relay(RelayedBeat {
                host_id,
                node_name,
                server_version,
                labels,
            })) => {
                // The proxy checked the tunnel's hello; a beat that still fails is dropped
                // alone, never the proxy's link with every other node's beats.
                if let Err(e) = limits::check_name(&node_name, "node_name")
                    .and_then(|()| limits::check_labels(&labels))
                    .and_then(|()| limits::check_version(&server_version))
                {
                    debug!("dropped a beat relayed by proxy {:?}: {e}", me.name);
                    continue;
                }
                // A proxy that has not yet closed a locked host's tunnel cannot list it.
                let target = LockTarget::ServerId(host_id.clone());
                if state.revoke.denial(&target, now_unix()).is_some() {
                    continue;
                }
                let info = node_info(&host_id, &node_name, "", labels, &server_version);
                lock(&state).upsert_via(info, &me.id, state.now_ms(), ttl);
            }
            Some(Request::RelayGoodbye { host_id }) => {
                lock(&state).remove_via(&host_id, &me.id);
            }
            Some(Request::RelayRenew {
                id,
                host_id,
                csr,
                cert: shown,
                proof,
            }) => {
                if in_flight.load(Ordering::Relaxed) >= MAX_RENEWALS {
                    let busy = Response::error(
                        ErrorCode::RateLimited,
                        "too many renewals in flight through this proxy; retry shortly",
                    );
                    let relay = Response::RelayAnswer {
                        id,
                        answer: Box::new(busy),
                    };
                    if conn.send(&relay).await.is_err() {
                        return;
                    }
                    continue;
                }
                // The proxy's own certificate must still be valid to renew it.
                if host_id == me.id {
                    if let Err(why) = renew::still_valid(&state, &cert, now_unix()) {
                        lock(&state).remove_proxy(&me.id, conn_id);
                        let who = format!("the link of proxy {:?}", me.name);
                        return close_invalid(&mut conn, &who, why).await;
                    }
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let relayed = Relayed {
                    id,
                    host_id,
                    csr,
                    cert: shown,
                    proof,
                };
                spawn_renewal(&state, &subject, &sans, relayed, answers_tx.clone());
            }
            Some(Request::Goodbye) => {
                lock(&state).remove_proxy(&me.id, conn_id);
                info!("proxy {:?} said goodbye", me.name);
                let _ = conn.send(&crate::proto::Response::GoodbyeAck).await;
                return;
            }
            other => {
                debug!("link of proxy {:?} ended ({other:?})", me.name);
                return;
            }
        }
    }
}

/// A renewal a proxy relays: its own (its host ID) or a node's.
struct Relayed {
    id: u64,
    host_id: String,
    csr: String,
    cert: String,
    proof: String,
}

/// Signs a renewal off the executor and queues its answer for the link.
fn spawn_renewal(
    state: &Arc<AuthState>,
    proxy: &Subject,
    sans: &Sans,
    r: Relayed,
    answers: Sender<(u64, Response, bool)>,
) {
    let (st, proxy, sans) = (state.clone(), proxy.clone(), sans.clone());
    let own = r.host_id == proxy.host_id;
    let id = r.id;
    crate::rt::spawn(async move {
        let answer = smol::unblock(move || {
            if own {
                // Its public names stay those auth gave it at its join.
                let names: Vec<String> = sans
                    .dns
                    .iter()
                    .cloned()
                    .chain(sans.ips.iter().map(|ip| ip.to_string()))
                    .collect();
                let sans = st.host_sans(&proxy.host_id, ROLE_PROXY, &names);
                renew::sign(&st, &proxy, &sans, &r.csr, "")
            } else {
                renew::sign_relayed(&st, &proxy.host_id, &r.host_id, &r.csr, &r.cert, &r.proof)
            }
        })
        .await;
        let _ = answers.send((id, answer, own)).await;
    })
    .detach();
}

/// Sends what changed since the last push: web pins (when given), and with `all` the trust
/// and the denials.
async fn push<S: Io>(
    conn: &mut Framed<S>,
    state: &AuthState,
    pushed: &mut Pushed,
    web: Option<WebTrust>,
    all: bool,
) -> std::io::Result<()> {
    if let Some(web) = web {
        if pushed.web.as_ref() != Some(&web) {
            conn.send(&Response::ProxyWeb(web.clone())).await?;
            pushed.web = Some(web);
        }
    }
    if !all {
        return Ok(());
    }
    let trust = state.ca.get().trust_info(state.host_ttl_secs());
    if pushed.trust.as_ref() != Some(&trust) {
        conn.send(&Response::Trust(trust.clone())).await?;
        pushed.trust = Some(trust);
    }
    let denied = state.revoke.denials(now_unix());
    if pushed.denied.as_ref() != Some(&denied) {
        conn.send(&Response::Denied {
            denials: denied.clone(),
        })
        .await?;
        pushed.denied = Some(denied);
    }
    Ok(())
}
