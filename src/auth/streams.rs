//! Long-lived streams on auth: a node's direct heartbeat stream, and a proxy's link that carries
//! the proxy's own heartbeats and the heartbeats it relays for tunnelled nodes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use log::{debug, info, warn};

use super::state::AuthState;
use crate::core::inventory::node_info;
use crate::net::{self, Framed};
use crate::pki::Subject;
use crate::proto::limits;
use crate::proto::pace::{Beat, Pacer};
use crate::proto::{
    self, ErrorCode, ProxyHello, ProxyRef, RelayedBeat, Request, Response, StreamHello,
    PROTOCOL_VERSION,
};
use crate::rt::Shutdown;
use crate::VERSION;

/// Any byte stream: TLS in production, an in-memory pipe in unit tests. Who is at the other
/// end is the verified `Subject` the caller passes in, never something the stream says.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// The next message, `None` when the peer went away, broke the protocol, stayed silent past
/// `idle`, or we are stopping.
async fn next<S: Io>(conn: &mut Framed<S>, idle: Duration, shutdown: &Shutdown) -> Option<Request> {
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

fn lock(state: &AuthState) -> std::sync::MutexGuard<'_, crate::core::inventory::Inventory> {
    state.inventory.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a stream's first message; on a problem answers with the error and returns false.
async fn hello_ok<S: Io>(conn: &mut Framed<S>, version: u32, checked: Result<(), String>) -> bool {
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

/// One node's direct stream: hello, heartbeats, goodbye.
pub async fn heartbeat_stream<S: Io>(
    mut conn: Framed<S>,
    hello: StreamHello,
    subject: Subject,
    peer: SocketAddr,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) {
    let checked = limits::check_hello(&hello, &subject.node_name).map_err(|e| e.to_string());
    if !hello_ok(&mut conn, hello.version, checked).await {
        return;
    }
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
    loop {
        match next(&mut conn, Duration::from_millis(ttl), &shutdown).await {
            Some(Request::Heartbeat { seq }) => {
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
                    renew: false,
                };
                if conn.send(&ack).await.is_err() {
                    return;
                }
            }
            Some(Request::Goodbye) => {
                lock(&state).remove(&subject.host_id, conn_id);
                info!("node {:?} ({}) said goodbye", info.hostname, info.uuid);
                let _ = conn.send(&Response::GoodbyeAck).await;
                conn.close().await;
                return;
            }
            // A brief network cut must not flap the node: it stays listed until its TTL.
            other => {
                debug!("heartbeat stream of {:?} ended ({other:?})", info.hostname);
                return;
            }
        }
    }
}

/// A proxy's link: its own heartbeats (answered with the proxy set) and relayed node beats.
pub async fn proxy_link<S: Io>(
    mut conn: Framed<S>,
    hello: ProxyHello,
    subject: Subject,
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
    // The proxy reads its hello answer alone (and drops what it read past it), so the web
    // pins follow a heartbeat answer: the first one, then whenever they change.
    let mut sent_web = None;
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
    loop {
        match next(&mut conn, Duration::from_millis(ttl), &shutdown).await {
            Some(Request::Heartbeat { seq }) => {
                let (proxies, now_web) = refresh(&state);
                let ack = Response::HeartbeatAck {
                    seq,
                    proxies,
                    relayed: true,
                    renew: false,
                };
                if conn.send(&ack).await.is_err() {
                    return;
                }
                // The install scripts this proxy serves pin every live proxy's web keys.
                if sent_web.as_ref() != Some(&now_web) {
                    if conn
                        .send(&Response::ProxyWeb(now_web.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent_web = Some(now_web);
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
                let info = node_info(&host_id, &node_name, "", labels, &server_version);
                lock(&state).upsert_via(info, &me.id, state.now_ms(), ttl);
            }
            Some(Request::RelayGoodbye { host_id }) => {
                lock(&state).remove_via(&host_id, &me.id);
            }
            Some(Request::Goodbye) => {
                lock(&state).remove_proxy(&me.id, conn_id);
                info!("proxy {:?} said goodbye", me.name);
                let _ = conn.send(&Response::GoodbyeAck).await;
                return;
            }
            other => {
                debug!("link of proxy {:?} ended ({other:?})", me.name);
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
