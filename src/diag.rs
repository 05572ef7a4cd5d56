//! Health, readiness and metrics: process-wide counters, systemd's readiness protocol
//! (`sd_notify`: a datagram on `$NOTIFY_SOCKET`, no libsystemd), and the `diag_addr` HTTP
//! endpoints `/healthz`, `/readyz` and `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use log::{info, warn};
use smol::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};
use crate::http;
use crate::net;
use crate::rt::Shutdown;

/// Counters and gauges of this process.
pub struct Metrics {
    pub tunnels_held: AtomicI64,
    pub auth_streams: AtomicI64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_acked: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub reconnects: AtomicU64,
    pub join_duration_ms: AtomicU64,
    pub nodes_online: AtomicI64,
    pub joins_accepted: AtomicU64,
    pub joins_refused_invalid: AtomicU64,
    pub joins_refused_expired: AtomicU64,
    pub joins_refused_role: AtomicU64,
    pub joins_refused_rate: AtomicU64,
    pub joins_refused_other: AtomicU64,
    /// Connections closed at accept: the source already held its cap of anonymous ones.
    pub conns_refused_source: AtomicU64,
    /// Connections closed at accept: the listener already held its cap of anonymous ones.
    pub conns_refused_global: AtomicU64,
    /// Bursts of failed accepts (EMFILE and the like).
    pub accept_errors: AtomicU64,
    /// Log lines dropped because the log output could not keep up.
    pub log_lines_dropped: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    tunnels_held: AtomicI64::new(0),
    auth_streams: AtomicI64::new(0),
    heartbeats_sent: AtomicU64::new(0),
    heartbeats_acked: AtomicU64::new(0),
    heartbeats_failed: AtomicU64::new(0),
    reconnects: AtomicU64::new(0),
    join_duration_ms: AtomicU64::new(0),
    nodes_online: AtomicI64::new(0),
    joins_accepted: AtomicU64::new(0),
    joins_refused_invalid: AtomicU64::new(0),
    joins_refused_expired: AtomicU64::new(0),
    joins_refused_role: AtomicU64::new(0),
    joins_refused_rate: AtomicU64::new(0),
    joins_refused_other: AtomicU64::new(0),
    conns_refused_source: AtomicU64::new(0),
    conns_refused_global: AtomicU64::new(0),
    accept_errors: AtomicU64::new(0),
    log_lines_dropped: AtomicU64::new(0),
};

static READY: AtomicBool = AtomicBool::new(false);
static NODE_ROLE: AtomicBool = AtomicBool::new(false);

/// Declares whether readiness needs a live link to the cluster (node role).
pub fn set_node_role(node: bool) {
    NODE_ROLE.store(node, Relaxed);
}

/// Marks the process ready (once) and tells systemd.
pub fn set_ready(what: &str) {
    if !READY.swap(true, Relaxed) {
        info!("ready: {what}");
        notify("READY=1");
    }
}

/// Ready: started (and, for a node, joined with a valid identity) and, for a node, at least
/// one tunnel or auth stream alive.
pub fn is_ready() -> bool {
    let links = METRICS.tunnels_held.load(Relaxed) + METRICS.auth_streams.load(Relaxed);
    READY.load(Relaxed) && (!NODE_ROLE.load(Relaxed) || links > 0)
}

/// Sends a state line to systemd when run under `Type=notify`; a no-op otherwise.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        warn!("cannot notify systemd ({state}): {e}");
    }
}

/// The Prometheus text exposition.
pub fn render() -> String {
    let m = &METRICS;
    let mut s = String::new();
    let mut put = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    let g = |a: &AtomicI64| a.load(Relaxed).to_string();
    let c = |a: &AtomicU64| a.load(Relaxed).to_string();
    let join = format!("{:.3}", m.join_duration_ms.load(Relaxed) as f64 / 1000.0);
    let gauges: [(&str, &str, &AtomicI64); 3] = [
        (
            "teleport_tunnels_held",
            "Reverse tunnels this agent holds.",
            &m.tunnels_held,
        ),
        (
            "teleport_auth_streams",
            "Direct heartbeat streams to auth.",
            &m.auth_streams,
        ),
        (
            "teleport_nodes_online",
            "Nodes in the inventory (auth).",
            &m.nodes_online,
        ),
    ];
    for (name, help, v) in gauges {
        put(name, "gauge", help, &[("", g(v))]);
    }
    let counters: [(&str, &str, &AtomicU64); 6] = [
        (
            "teleport_heartbeats_sent_total",
            "Heartbeats sent.",
            &m.heartbeats_sent,
        ),
        (
            "teleport_heartbeats_acked_total",
            "Heartbeats acknowledged.",
            &m.heartbeats_acked,
        ),
        (
            "teleport_heartbeats_failed_total",
            "Heartbeats not acknowledged.",
            &m.heartbeats_failed,
        ),
        (
            "teleport_reconnects_total",
            "Reconnects of streams and tunnels.",
            &m.reconnects,
        ),
        (
            "teleport_accept_error_bursts_total",
            "Bursts of failed accepts (e.g. out of file descriptors).",
            &m.accept_errors,
        ),
        (
            "teleport_log_lines_dropped_total",
            "Log lines dropped because the log output was too slow.",
            &m.log_lines_dropped,
        ),
    ];
    for (name, help, v) in counters {
        put(name, "counter", help, &[("", c(v))]);
    }
    put(
        "teleport_join_duration_seconds",
        "gauge",
        "Duration of this host's join.",
        &[("", join)],
    );
    put(
        "teleport_joins_total",
        "counter",
        "Join requests by result (auth).",
        &[
            ("{result=\"accepted\"}", c(&m.joins_accepted)),
            (
                "{result=\"refused\",reason=\"invalid_token\"}",
                c(&m.joins_refused_invalid),
            ),
            (
                "{result=\"refused\",reason=\"expired_token\"}",
                c(&m.joins_refused_expired),
            ),
            (
                "{result=\"refused\",reason=\"wrong_role\"}",
                c(&m.joins_refused_role),
            ),
            (
                "{result=\"refused\",reason=\"rate_limited\"}",
                c(&m.joins_refused_rate),
            ),
            (
                "{result=\"refused\",reason=\"other\"}",
                c(&m.joins_refused_other),
            ),
        ],
    );
    put(
        "teleport_connections_refused_total",
        "counter",
        "Connections closed at accept by a cap on anonymous connections.",
        &[
            ("{cap=\"per_source\"}", c(&m.conns_refused_source)),
            ("{cap=\"global\"}", c(&m.conns_refused_global)),
        ],
    );
    let ready = u8::from(is_ready()).to_string();
    put(
        "teleport_ready",
        "gauge",
        "1 when /readyz answers 200.",
        &[("", ready)],
    );
    s
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
        "/readyz" if is_ready() => (200, "{\"status\":\"ok\"}\n".to_string()),
        "/readyz" => (503, "{\"status\":\"not ready\"}\n".to_string()),
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

/// `teleport health`: exit 0 when the process at `addr` is ready (Docker HEALTHCHECK).
pub fn probe(addr: &str) -> Result<()> {
    smol::block_on(async {
        let fut = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| Error::net(addr, e))?;
            http::roundtrip(&mut tcp, "GET", addr, "/readyz", None)
                .await
                .map_err(|e| Error::net(addr, e))
        };
        match crate::net::with_timeout(std::time::Duration::from_secs(5), fut).await {
            Some(Ok(r)) if r.status == 200 => Ok(()),
            Some(Ok(r)) => Err(Error::net(addr, format!("not ready (HTTP {})", r.status))),
            Some(Err(e)) => Err(e),
            None => Err(Error::net(addr, "timed out")),
        }
    })
}
