//! The proxy's side of agent tunnels: the control stream (hello, heartbeats relayed to auth,
//! goodbye) and dials from admins through a tunnel to a service on the node.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use log::{debug, info, warn};

use super::{dials, ProxyState, TunnelEntry};
use crate::core::rotation::CertFacts;
use crate::mux;
use crate::net::{self, Framed};
use crate::pki::Subject;
use crate::proto::{
    ErrorCode, LockTarget, Request, Response, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
    PROTOCOL_VERSION,
};
use crate::rt::Shutdown;

/// Time a new tunnel has to open its control stream and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Tunnels one host may hold on this proxy: one, briefly two while a duplicate landing is
/// closed; more is a misbehaving host, not a reconnect.
const MAX_TUNNELS_PER_HOST: usize = 4;

/// One agent tunnel over `io` (TLS in production, an in-memory pipe in unit tests). `subject`
/// is the verified certificate of the peer: the only source of its host ID and node name.
pub async fn serve<T>(
    io: T,
    subject: Subject,
    cert: (CertFacts, String),
    peer: SocketAddr,
    state: Arc<ProxyState>,
    shutdown: Shutdown,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mux::Mux {
        opener,
        inbound,
        driver: _driver,
    } = mux::start(io, false);
    let control = match net::with_timeout(HELLO_TIMEOUT, inbound.recv()).await {
        Some(Ok(s)) => s,
        _ => {
            warn!("rejected a tunnel from {peer}: no control stream opened");
            return;
        }
    };
    // Streams are the proxy's to open: with the queue closed, any other the node opens is
    // dropped at once (holding no window of buffered data, and no task to drain it).
    drop(inbound);
    let mut ctl = Framed::new(control, MAX_REQUEST_FRAME);
    let hello = match net::with_timeout(HELLO_TIMEOUT, ctl.recv::<Request>()).await {
        Some(Ok(Some(Request::TunnelHello(h)))) if h.version == PROTOCOL_VERSION => h,
        Some(Ok(Some(Request::TunnelHello(h)))) => {
            refuse(&mut ctl, crate::proto::version_mismatch(h.version)).await;
            return;
        }
        other => {
            warn!(
                "rejected a tunnel from {peer}: {}",
                what_came(&other, "tunnel hello")
            );
            return;
        }
    };
    // The node's name is the one auth put into its certificate; an oversized or forged hello
    // closes this tunnel only.
    if let Err(e) = crate::proto::limits::check_hello(&hello, &subject.node_name) {
        warn!("rejected a tunnel from {peer} ({}): {e}", subject.host_id);
        refuse(
            &mut ctl,
            Response::error(ErrorCode::BadParameter, e.to_string()),
        )
        .await;
        return;
    }
    // A locked or removed host is told why, and its tunnel closed.
    if let Some(why) = state.denial(&LockTarget::ServerId(subject.host_id.clone())) {
        warn!("rejected a tunnel from {peer} ({}): {why}", subject.host_id);
        let code = if why.contains("was removed") {
            ErrorCode::NotFound
        } else {
            ErrorCode::AccessDenied
        };
        refuse(&mut ctl, Response::error(code, why)).await;
        return;
    }
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (kill, killed) = crate::rt::shutdown_pair();
    let held = {
        let mut t = state.tunnels();
        let list = t.entry(subject.host_id.clone()).or_default();
        let held = list.len();
        if held < MAX_TUNNELS_PER_HOST {
            list.push(TunnelEntry {
                node_name: hello.node_name.clone(),
                opener: opener.clone(),
                conn,
                kill,
            });
        }
        held
    };
    if held >= MAX_TUNNELS_PER_HOST {
        warn!(
            "rejected a tunnel from {peer} ({}): it already holds {held} here",
            subject.host_id
        );
        let why = format!("this host already holds {held} tunnels to this proxy");
        refuse(&mut ctl, Response::error(ErrorCode::BadParameter, why)).await;
        return;
    }
    let _held = crate::diag::Live::new(&crate::diag::METRICS.proxy_tunnels);
    info!(
        "tunnel from node {:?} ({}) at {peer} established",
        hello.node_name, subject.host_id
    );
    let welcome = Response::TunnelWelcome {
        proxy: state.me.clone(),
        cluster_name: state.cluster_name.clone(),
        heartbeat_interval_ms: state.interval().as_millis() as u64,
        proxies: state.proxy_set(),
    };
    if ctl.send(&welcome).await.is_ok() {
        let (facts, pem) = cert;
        super::control::run(
            &mut ctl, &hello, &subject, facts, pem, &killed, &state, &shutdown,
        )
        .await;
    }
    {
        let mut t = state.tunnels();
        if let Some(list) = t.get_mut(&subject.host_id) {
            list.retain(|e| e.conn != conn);
            if list.is_empty() {
                t.remove(&subject.host_id);
            }
        }
    }
    debug!("tunnel from {:?} closed", hello.node_name);
}

/// What arrived instead of the `expected` first message, without echoing the peer's bytes into
/// the log.
fn what_came(got: &Option<crate::error::Result<Option<Request>>>, expected: &str) -> String {
    match got {
        None => format!("no {expected} within the time allowed"),
        Some(Ok(None)) => format!("closed before its {expected}"),
        Some(Ok(Some(_))) => format!("the first message was not a {expected}"),
        Some(Err(_)) => format!("its {expected} was not a valid message"),
    }
}

/// Sends a refusal and gives the node a moment to read it and close: the frame only leaves
/// while the tunnel's multiplexer runs, which ends when the tunnel is dropped.
async fn refuse(ctl: &mut Framed<mux::Stream>, why: Response) {
    if ctl.send(&why).await.is_ok() {
        let _ = net::with_timeout(Duration::from_secs(1), ctl.recv::<Request>()).await;
    }
}

enum Found {
    None,
    One(mux::Opener),
    Ambiguous(usize),
}

/// A node by host UUID, or by name if exactly one node has that name.
fn find_tunnel(tunnels: &std::collections::HashMap<String, Vec<TunnelEntry>>, node: &str) -> Found {
    let first = |list: &Vec<TunnelEntry>| list.first().map(|e| e.opener.clone());
    if let Some(o) = tunnels.get(node).and_then(first) {
        return Found::One(o);
    }
    // A UUID names a host, never a node name (auth refuses such names at join).
    if crate::proto::limits::is_uuid_shaped(node) {
        return Found::None;
    }
    let named: Vec<&Vec<TunnelEntry>> = tunnels
        .values()
        .filter(|l| l.iter().any(|e| e.node_name == node))
        .collect();
    match named.as_slice() {
        [] => Found::None,
        [one] => first(one).map_or(Found::None, Found::One),
        many => Found::Ambiguous(many.len()),
    }
}

/// Opens a stream to `addr` on the node through its tunnel; returns the stream ready for raw
/// bytes (after the node's `DialOk`), what followed the answer, and the tunnel's handle (to
/// run the splice in the tunnel's task).
pub async fn dial_node(
    state: &ProxyState,
    node: &str,
    addr: &str,
) -> Result<(mux::Stream, Vec<u8>, mux::Opener), Response> {
    let opener = find_tunnel(&state.tunnels(), node);
    let opener = match opener {
        Found::One(o) => o,
        Found::None => {
            return Err(Response::error(
                ErrorCode::NotFound,
                format!(
                    "no tunnel to node {node:?} on proxy {:?}: is the node online (tctl nodes \
                     ls)?",
                    state.me.name
                ),
            ))
        }
        Found::Ambiguous(n) => {
            return Err(Response::error(
                ErrorCode::BadParameter,
                format!("{n} nodes are named {node:?}: dial one by its UUID (see tctl nodes ls)"),
            ))
        }
    };
    let stream = opener.open().await.map_err(|e| {
        Response::error(ErrorCode::Unavailable, format!("cannot open a stream: {e}"))
    })?;
    let mut f = Framed::new(stream, MAX_RESPONSE_FRAME);
    let dial = Request::Dial {
        version: PROTOCOL_VERSION,
        node: node.to_string(),
        addr: addr.to_string(),
    };
    if let Err(e) = f.send(&dial).await {
        return Err(Response::error(ErrorCode::Unavailable, e.to_string()));
    }
    match net::with_timeout(Duration::from_secs(10), f.recv::<Response>()).await {
        Some(Ok(Some(Response::DialOk))) => {
            let (stream, rest) = f.into_parts();
            Ok((stream, rest, opener))
        }
        Some(Ok(Some(err @ Response::Error { .. }))) => Err(err),
        other => Err(Response::error(
            ErrorCode::Unavailable,
            format!("the node did not answer the dial: {other:?}"),
        )),
    }
}

/// An admin's or user's `teleport-transport` connection: one dial, then raw bytes both ways.
/// `who` names the verified identity for the log.
pub async fn serve_dial(
    tls: crate::net::ServerTls,
    peer: SocketAddr,
    state: Arc<ProxyState>,
    subject: &Subject,
) {
    let who = format!("{} {:?}", subject.role.to_lowercase(), subject.host_id);
    let mut f = Framed::new(tls, MAX_REQUEST_FRAME);
    let (node, addr) = match net::with_timeout(HELLO_TIMEOUT, f.recv::<Request>()).await {
        Some(Ok(Some(Request::Dial { node, addr, .. }))) => (node, addr),
        other => {
            warn!(
                "rejected a transport connection from {peer}: {}",
                what_came(&other, "dial")
            );
            return;
        }
    };
    let m = &crate::diag::METRICS;
    if subject.role == crate::proto::ROLE_USER {
        if let Some(why) = state.denial(&LockTarget::User(subject.host_id.clone())) {
            warn!("refused a dial by {who} at {peer}: {why}");
            m.proxy_dials_failed.fetch_add(1, Ordering::Relaxed);
            let _ = f.send(&Response::error(ErrorCode::AccessDenied, why)).await;
            return;
        }
    }
    let policy = dials::check(subject, &addr, &state.user_dial_ports)
        .and_then(|()| state.user_dials.take(subject));
    let slot = match policy {
        Ok(slot) => slot,
        Err(why) => {
            warn!("refused a dial by {who} at {peer} to {addr:?} on node {node:?}: {why}");
            m.proxy_dials_failed.fetch_add(1, Ordering::Relaxed);
            let code = match why {
                dials::Refusal::BadAddr => ErrorCode::BadParameter,
                dials::Refusal::PortNotAllowed { .. } => ErrorCode::AccessDenied,
                dials::Refusal::TooMany => ErrorCode::RateLimited,
            };
            let _ = f.send(&Response::error(code, why.to_string())).await;
            return;
        }
    };
    // Checked again now that the slot is held: a lock pushed in between found no dial to close.
    if slot.is_some() {
        if let Some(why) = state.denial(&LockTarget::User(subject.host_id.clone())) {
            warn!("refused a dial by {who} at {peer}: {why}");
            m.proxy_dials_failed.fetch_add(1, Ordering::Relaxed);
            let _ = f.send(&Response::error(ErrorCode::AccessDenied, why)).await;
            return;
        }
    }
    match dial_node(&state, &node, &addr).await {
        Ok((stream, node_rest, tunnel)) => {
            m.proxy_dials_ok.fetch_add(1, Ordering::Relaxed);
            if f.send(&Response::DialOk).await.is_err() {
                return;
            }
            info!("{who} at {peer} dialed {addr:?} on node {node:?}");
            let (tls, client_rest) = f.into_parts();
            let b = &m.proxy_bytes;
            b.to_service
                .fetch_add(client_rest.len() as u64, Ordering::Relaxed);
            b.from_service
                .fetch_add(node_rest.len() as u64, Ordering::Relaxed);
            let mut stream = stream;
            if !client_rest.is_empty()
                && futures_lite::AsyncWriteExt::write_all(&mut stream, &client_rest)
                    .await
                    .is_err()
            {
                return;
            }
            let mut tls = tls;
            if !node_rest.is_empty()
                && futures_lite::AsyncWriteExt::write_all(&mut tls, &node_rest)
                    .await
                    .is_err()
            {
                return;
            }
            let splice = crate::diag::splice(tls, stream, &m.proxy_bytes, &m.proxy_streams_active);
            // In the tunnel's task: frames reach the connection without a wakeup. Dropping
            // this future (the user is locked) stops the splice there.
            let splice = async {
                tunnel.run(splice).await;
            };
            match &slot {
                // A user's dial ends when the user is locked.
                Some(slot) => {
                    futures_lite::future::or(splice, async {
                        slot.killed.wait().await;
                        info!("closed a dial by {who}: the user is locked");
                    })
                    .await
                }
                None => splice.await,
            }
        }
        Err(resp) => {
            m.proxy_dials_failed.fetch_add(1, Ordering::Relaxed);
            let _ = f.send(&resp).await;
        }
    }
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
