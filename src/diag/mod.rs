//! Health, readiness and metrics: process-wide counters, systemd's readiness protocol
//! (`sd_notify`: a datagram on `$NOTIFY_SOCKET`, no libsystemd), and the `diag_addr` HTTP
//! endpoints `/healthz`, `/readyz` and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use log::info;
use smol::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};
use crate::http;
use crate::net;
use crate::rt::Shutdown;

mod counted;
mod health;
mod render;

pub use counted::{splice, Counted};
pub use health::{health_main, probe, Probe, EXIT_NOT_READY, EXIT_UNREACHABLE};
// The counters and systemd's protocol sit below `net`, which records into them; these paths
// stay for callers.
pub use crate::metrics::{Histogram, JoinFailure, Live, Metrics, METRICS, RTT_BUCKETS_US};
pub use crate::rt::notify;
pub use render::Roles;

static READY: AtomicBool = AtomicBool::new(false);
/// The roles as bits: 1 auth, 2 proxy, 4 node.
static ROLES: AtomicU8 = AtomicU8::new(0);
/// Why the process is not ready, as last reported; written on state changes only (a failed
/// connection, a lost stream), never per heartbeat.
static WHY: Mutex<String> = Mutex::new(String::new());

/// Declares the roles this process runs: they choose the metric families and whether
/// readiness needs a live link to the cluster (node role).
pub fn set_roles(r: Roles) {
    let bits = u8::from(r.auth) | u8::from(r.proxy) << 1 | u8::from(r.node) << 2;
    ROLES.store(bits, Relaxed);
}

fn roles() -> Roles {
    let bits = ROLES.load(Relaxed);
    Roles {
        auth: bits & 1 != 0,
        proxy: bits & 2 != 0,
        node: bits & 4 != 0,
    }
}

/// Marks the process ready (once) and tells systemd.
pub fn set_ready(what: &str) {
    if !READY.swap(true, Relaxed) {
        info!("ready: {what}");
        notify("READY=1");
    }
}

/// Records why the process is not (or no longer) ready; `/readyz` and `teleport health` show
/// it while they answer "not ready".
/// The text may quote a peer's error message: it is cut and escaped like anything we print.
pub fn not_ready_because(why: impl AsRef<str>) {
    let why = crate::proto::limits::printable(why.as_ref(), MAX_REASON);
    *WHY.lock().unwrap_or_else(|p| p.into_inner()) = why;
}

/// Why the store auth needs is unusable now, if it is (empty when it is fine).
static STORAGE_DOWN: Mutex<String> = Mutex::new(String::new());

/// Records whether auth's store answers: while it does not, the process is not ready (it
/// keeps serving what it holds in memory). Returns whether this changed the state.
pub fn set_storage_down(why: Option<&str>) -> bool {
    let why = why.map_or(String::new(), |w| {
        crate::proto::limits::printable(w, MAX_REASON)
    });
    let mut cur = STORAGE_DOWN.lock().unwrap_or_else(|p| p.into_inner());
    let changed = cur.is_empty() != why.is_empty();
    *cur = why;
    changed
}

/// Longest reason `/readyz` gives, in characters.
const MAX_REASON: usize = 400;

/// Ready: started (and, for a node, joined with a valid identity and a heartbeat acknowledged)
/// and, for a node, at least one tunnel or auth stream alive. Otherwise the reason.
pub fn readiness() -> std::result::Result<(), String> {
    let down = STORAGE_DOWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if !down.is_empty() {
        return Err(down);
    }
    let links = METRICS.tunnels_held.load(Relaxed) + METRICS.auth_streams.load(Relaxed);
    let ready = READY.load(Relaxed);
    let node = roles().node;
    if ready && (!node || links > 0) {
        return Ok(());
    }
    if !ready && node && links > 0 {
        return Err("connected, but no heartbeat acknowledged by auth yet".into());
    }
    let why = WHY.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Err(match (why.is_empty(), ready) {
        (false, _) => why,
        (true, false) => "starting".into(),
        (true, true) => "no tunnel or heartbeat stream to the cluster is up".into(),
    })
}

pub fn is_ready() -> bool {
    readiness().is_ok()
}

/// The Prometheus text exposition of this process's roles.
pub fn render() -> String {
    render::render(&METRICS, roles(), is_ready())
}

/// Serves the diagnostics endpoints until shutdown.
pub async fn serve(addr: SocketAddr, shutdown: Shutdown) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on diag_addr {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::net(addr.to_string(), e))?;
    info!("diagnostics on http://{local} (/healthz, /readyz, /metrics)");
    let caps = net::Caps::new(net::Limits::default());
    let serve = net::serve(listener, caps, shutdown, |tcp, _peer, slot| async move {
        let _slot = slot;
        // One request and its answer, then the connection closes; a client that stalls
        // either way is dropped.
        net::with_timeout(ANSWER_TIMEOUT, answer(tcp)).await;
    });
    crate::rt::spawn(serve).detach();
    Ok(local)
}

/// Time a diagnostics client gets to send its request and read the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

async fn answer(mut tcp: TcpStream) {
    let Ok(req) = http::read_request(&mut tcp).await else {
        return;
    };
    let (status, body) = match req.path.as_str() {
        "/healthz" => (200, "{\"status\":\"ok\"}\n".to_string()),
        "/readyz" => match readiness() {
            Ok(()) => (200, "{\"status\":\"ok\"}\n".to_string()),
            Err(why) => {
                let body = serde_json::json!({"status": "not ready", "reason": why});
                (503, format!("{body}\n"))
            }
        },
        "/metrics" => (200, render()),
        _ => (404, "{\"error\":{\"message\":\"not found\"}}\n".to_string()),
    };
    let ctype = if req.path == "/metrics" {
        "text/plain; version=0.0.4"
    } else {
        "application/json"
    };
    let _ = http::write_response(&mut tcp, status, ctype, body.as_bytes()).await;
}
