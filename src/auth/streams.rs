//! A node's direct heartbeat stream on auth: hello, heartbeats, renewals, goodbye. The stream
//! closes when the node's certificate expires or its CA is dropped, and at once when the node
//! is locked or removed. (A proxy's link is in `link`.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use log::{debug, info, warn};

use super::renew;
use super::state::AuthState;
use crate::clock::now_unix;
use crate::core::inventory::node_info;
use crate::core::rotation::{self, CertFacts, Pace, RenewPacer};
use crate::net::{self, Framed};
use crate::pki::Subject;
use crate::proto::limits;
use crate::proto::pace::{Beat, Pacer};
use crate::proto::{self, ErrorCode, Request, Response, StreamHello, PROTOCOL_VERSION, ROLE_NODE};
use crate::rt::Shutdown;
use crate::VERSION;

/// Any byte stream: TLS in production, an in-memory pipe in unit tests. Who is at the other
/// end is the verified `Subject` the caller passes in, never something the stream says.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// The next message, `None` when the peer went away, broke the protocol, stayed silent past
/// `idle`, or we are stopping.
pub(super) async fn next<S: Io>(
    conn: &mut Framed<S>,
    idle: Duration,
    shutdown: &Shutdown,
) -> Option<Request> {
    let msg = futures_lite::future::or(
        async { net::with_timeout(idle, conn.recv::<Request>()).await },
        async {
            shutdown.wait().await;
            None
        },
    )
    .await;
    match msg {
        Some(Ok(Some(m))) => Some(m),
        _ => None,
    }
}

pub(super) fn lock(
    state: &AuthState,
) -> std::sync::MutexGuard<'_, crate::core::inventory::Inventory> {
    state.inventory.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a stream's first message; on a problem answers with the error and returns false.
pub(super) async fn hello_ok<S: Io>(
    conn: &mut Framed<S>,
    version: u32,
    checked: Result<(), String>,
) -> bool {
    let refusal = if version != PROTOCOL_VERSION {
        proto::version_mismatch(version)
    } else if let Err(e) = checked {
        Response::error(ErrorCode::BadParameter, e)
    } else {
        return true;
    };
    let _ = conn.send(&refusal).await;
    false
}

/// What ended a wait on a stream.
pub(super) enum Wake {
    Msg(Option<Request>),
    /// The host was locked or removed.
    Killed,
}

/// The next message, or `Killed` as soon as `killed` fires.
pub(super) async fn next_or_killed<S: Io>(
    conn: &mut Framed<S>,
    idle: Duration,
    shutdown: &Shutdown,
    killed: &Shutdown,
) -> Wake {
    futures_lite::future::or(
        async { Wake::Msg(next(conn, idle, shutdown).await) },
        async {
            killed.wait().await;
            Wake::Killed
        },
    )
    .await
}

/// One node's direct stream: hello, heartbeats, renewals, goodbye. `cert` describes the
/// verified certificate the node connected with.
pub async fn heartbeat_stream<S: Io>(
    mut conn: Framed<S>,
    hello: StreamHello,
    subject: Subject,
    mut cert: CertFacts,
    peer: SocketAddr,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) {
    let checked = limits::check_hello(&hello, &subject.node_name).map_err(|e| e.to_string());
    // The awaits of this long-lived task are boxed: it idles as one of thousands, and its
    // size is that of its largest wait.
    if !Box::pin(hello_ok(&mut conn, hello.version, checked)).await {
        return;
    }
    if let Some(refused) = renew::refusal(&state, &subject.host_id) {
        warn!(
            "refused the stream of {} from {peer}: it is locked or removed",
            subject.host_id
        );
        let _ = conn.send(&refused).await;
        return;
    }
    let guard = state.revoke.register(&subject.host_id);
    let conn_id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let addr = if hello.public_addr.is_empty() {
        peer.ip().to_string()
    } else {
        hello.public_addr.clone()
    };
    let info = node_info(
        &subject.host_id,
        &hello.node_name,
        &addr,
        hello.labels,
        &hello.server_version,
    );
    let ttl = state.ttl_ms();
    lock(&state).upsert(info.clone(), conn_id, state.now_ms(), ttl);
    info!(
        "node {:?} ({}) is online from {peer}",
        info.hostname, info.uuid
    );
    let ack = Response::HelloAck {
        cluster_name: state.cluster_name.clone(),
        server_version: VERSION.to_string(),
        heartbeat_interval_ms: state.heartbeat_interval.as_millis() as u64,
        proxies: Vec::new(),
    };
    if conn.send(&ack).await.is_err() {
        return;
    }
    // A node beating far faster than the interval costs the inventory lock once per half
    // interval, and its stream is closed if it keeps on.
    let mut pacer = Pacer::default();
    let mut pacer_renew = RenewPacer::default();
    loop {
        let wake = next_or_killed(
            &mut conn,
            Duration::from_millis(ttl),
            &shutdown,
            &guard.killed,
        );
        match Box::pin(wake).await {
            Wake::Killed => {
                lock(&state).remove(&subject.host_id, conn_id);
                let why = renew::refusal(&state, &subject.host_id);
                info!(
                    "closed the stream of node {:?} ({}): it was locked or removed",
                    info.hostname, info.uuid
                );
                if let Some(why) = why {
                    let _ = conn.send(&why).await;
                }
                conn.close().await;
                return;
            }
            Wake::Msg(Some(Request::Heartbeat { seq })) => {
                let now = now_unix();
                if let Err(why) = renew::still_valid(&state, &cert, now) {
                    lock(&state).remove(&subject.host_id, conn_id);
                    let who = format!("the stream of node {:?} ({})", info.hostname, info.uuid);
                    return Box::pin(close_invalid(&mut conn, &who, why)).await;
                }
                let beat = pacer.on_beat(std::time::Instant::now(), state.heartbeat_interval);
                if beat == Beat::Flood {
                    warn!(
                        "node {:?} ({}) sends heartbeats far faster than the interval; closing \
                         its stream",
                        info.hostname, info.uuid
                    );
                    return;
                }
                if beat == Beat::Due {
                    let mut inv = lock(&state);
                    if !inv.heartbeat(&subject.host_id, conn_id, state.now_ms(), ttl) {
                        // Expired meanwhile: announce again.
                        inv.upsert(info.clone(), conn_id, state.now_ms(), ttl);
                    }
                }
                let ack = Response::HeartbeatAck {
                    seq,
                    proxies: Vec::new(),
                    relayed: true,
                    renew: renew::must_renew(&state, &cert, ROLE_NODE, now),
                    quiet: false,
                };
                if conn.send(&ack).await.is_err() {
                    return;
                }
            }
            // The stream's TLS already proved the node holds its key: no proof needed.
            Wake::Msg(Some(Request::Renew { csr, .. })) => {
                let renewal = renew_on_stream(
                    &mut conn,
                    csr,
                    &subject,
                    &mut cert,
                    &mut pacer_renew,
                    (conn_id, &info.hostname),
                    &state,
                );
                // Boxed: a rare branch, and this long-lived task is as big as its largest wait.
                if !Box::pin(renewal).await {
                    return;
                }
            }
            Wake::Msg(Some(Request::Goodbye)) => {
                lock(&state).remove(&subject.host_id, conn_id);
                info!("node {:?} ({}) said goodbye", info.hostname, info.uuid);
                let _ = conn.send(&Response::GoodbyeAck).await;
                conn.close().await;
                return;
            }
            // A brief network cut must not flap the node: it stays listed until its TTL.
            Wake::Msg(other) => {
                debug!("heartbeat stream of {:?} ended ({other:?})", info.hostname);
                return;
            }
        }
    }
}

/// A renewal asked for on a node's stream; false when the stream must close.
async fn renew_on_stream<S: Io>(
    conn: &mut Framed<S>,
    csr: String,
    subject: &Subject,
    cert: &mut CertFacts,
    pacer_renew: &mut RenewPacer,
    (conn_id, hostname): (u64, &str),
    state: &Arc<AuthState>,
) -> bool {
    // An expired certificate renews nothing, even on a stream opened before.
    if let Err(why) = renew::still_valid(state, cert, now_unix()) {
        lock(state).remove(&subject.host_id, conn_id);
        let who = format!("the stream of node {hostname:?} ({})", subject.host_id);
        close_invalid(conn, &who, why).await;
        return false;
    }
    let changed = state.ca.get().rotation.changed;
    match pacer_renew.attempt(now_unix(), changed, state.host_ttl_secs()) {
        Pace::Go => {}
        Pace::TooSoon => {
            let soon = Response::error(ErrorCode::RateLimited, rotation::TOO_SOON);
            return conn.send(&soon).await.is_ok();
        }
        Pace::Flood => {
            warn!(
                "node {hostname:?} ({}) asks for renewals far too often; closing its stream",
                subject.host_id
            );
            return false;
        }
    }
    let (st, subj) = (state.clone(), subject.clone());
    let sans = state.host_sans(&subject.host_id, ROLE_NODE, &[]);
    let answer = smol::unblock(move || renew::sign(&st, &subj, &sans, &csr, "")).await;
    if let Some((facts, _)) = crate::pki::renewed_cert(&answer) {
        *cert = facts;
    }
    conn.send(&answer).await.is_ok()
}

/// Closes a stream or link whose certificate expired or lost its CA (`who` names it in the
/// log), telling the host the fix.
pub(super) async fn close_invalid<S: Io>(conn: &mut Framed<S>, who: &str, why: String) {
    warn!("closed {who}: {why}");
    let msg = format!("{why}: remove the identity and join again with a new token");
    let _ = conn
        .send(&Response::error(ErrorCode::AccessDenied, msg))
        .await;
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
