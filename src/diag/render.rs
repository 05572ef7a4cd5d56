//! The Prometheus text exposition (format 0.0.4): `# HELP` and `# TYPE` once per family, then
//! its samples. A process exports the families of its roles only (an all-in-one process the
//! union), plus the common ones.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::metrics::{Bytes, Histogram, JoinFailure, Metrics, RTT_BUCKETS_US};

/// The roles this process runs, as far as metrics are concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub auth: bool,
    pub proxy: bool,
    pub node: bool,
}

impl Roles {
    fn text(self) -> String {
        let names = [
            (self.auth, "auth"),
            (self.node, "node"),
            (self.proxy, "proxy"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        on.join(",")
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: &AtomicI64) {
        self.family(name, "gauge", help);
        self.sample(name, "", v.load(Relaxed));
    }

    fn counter(&mut self, name: &str, help: &str, v: &AtomicU64) {
        self.family(name, "counter", help);
        self.sample(name, "", v.load(Relaxed));
    }

    /// One labelled series of a histogram family; `label` is `key="value"`.
    fn histogram(&mut self, name: &str, label: &str, h: &Histogram) {
        let s = h.snapshot();
        for (i, n) in s.cumulative.iter().enumerate() {
            let le = match RTT_BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            self.sample(
                &format!("{name}_bucket"),
                &format!("{{{label},le=\"{le}\"}}"),
                n,
            );
        }
        let count = s.cumulative[RTT_BUCKETS_US.len()];
        self.sample(
            &format!("{name}_sum"),
            &format!("{{{label}}}"),
            s.sum_seconds,
        );
        self.sample(&format!("{name}_count"), &format!("{{{label}}}"), count);
    }

    fn bytes(&mut self, name: &str, help: &str, b: &Bytes) {
        self.family(name, "counter", help);
        let to = b.to_service.load(Relaxed);
        let from = b.from_service.load(Relaxed);
        self.sample(name, "{direction=\"to_service\"}", to);
        self.sample(name, "{direction=\"from_service\"}", from);
    }
}

/// The exposition for a process with `roles`; `ready` is what `/readyz` answers.
pub fn render(m: &Metrics, roles: Roles, ready: bool) -> String {
    let mut o = Out(String::with_capacity(8192));
    common(&mut o, m, roles, ready);
    // Link families are shared by node and proxy: one HELP/TYPE, the union of their series.
    let mut rtt: Vec<(&str, &Histogram)> = Vec::new();
    let mut kept: Vec<(&str, &AtomicU64, &AtomicU64)> = Vec::new();
    if roles.node {
        node(&mut o, m);
        rtt.push(("tunnel", &m.rtt_tunnel));
        rtt.push(("auth_stream", &m.rtt_auth_stream));
        kept.push(("tunnel", &m.reconnects_tunnel, &m.failures_tunnel));
        kept.push((
            "auth_stream",
            &m.reconnects_auth_stream,
            &m.failures_auth_stream,
        ));
    }
    if roles.node || roles.proxy {
        joining(&mut o, m);
    }
    if roles.proxy {
        proxy(&mut o, m);
        rtt.push(("auth_link", &m.rtt_auth_link));
        kept.push(("auth_link", &m.reconnects_auth_link, &m.failures_auth_link));
    }
    if !rtt.is_empty() {
        o.family(RTT, "histogram", RTT_HELP);
        for (link, h) in rtt {
            o.histogram(RTT, &format!("link=\"{link}\""), h);
        }
        links(&mut o, &kept);
    }
    if roles.auth {
        auth(&mut o, m);
    }
    o.0
}

fn common(o: &mut Out, m: &Metrics, roles: Roles, ready: bool) {
    o.family(
        "teleport_build_info",
        "gauge",
        "Always 1; the labels say which build runs with which roles.",
    );
    let labels = format!(
        "{{version=\"{}\",arch=\"{}\",roles=\"{}\"}}",
        crate::VERSION,
        std::env::consts::ARCH,
        roles.text()
    );
    o.sample("teleport_build_info", &labels, 1);
    o.family("teleport_ready", "gauge", "1 when /readyz answers 200.");
    o.sample("teleport_ready", "", u8::from(ready));
    o.family(
        "teleport_connections_refused_total",
        "counter",
        "Connections closed at accept by a cap on anonymous connections.",
    );
    let (src, global) = (&m.conns_refused_source, &m.conns_refused_global);
    o.sample(
        "teleport_connections_refused_total",
        "{cap=\"per_source\"}",
        src.load(Relaxed),
    );
    o.sample(
        "teleport_connections_refused_total",
        "{cap=\"global\"}",
        global.load(Relaxed),
    );
    o.counter(
        "teleport_accept_error_bursts_total",
        "Bursts of failed accepts (e.g. out of file descriptors).",
        &m.accept_errors,
    );
    o.counter(
        "teleport_log_lines_dropped_total",
        "Log lines dropped because the log output was too slow.",
        &m.log_lines_dropped,
    );
}

/// Families of a link kind (`link` label) that a role keeps up: reconnects and failures.
fn links(o: &mut Out, series: &[(&str, &AtomicU64, &AtomicU64)]) {
    o.family(
        "teleport_reconnects_total",
        "counter",
        "Tunnels, streams and links re-established after one was lost.",
    );
    for (link, re, _) in series {
        o.sample(
            "teleport_reconnects_total",
            &format!("{{link=\"{link}\"}}"),
            re.load(Relaxed),
        );
    }
    o.family(
        "teleport_link_failures_total",
        "counter",
        "Failed attempts to open a tunnel, stream or link, and ones lost after opening.",
    );
    for (link, _, failed) in series {
        o.sample(
            "teleport_link_failures_total",
            &format!("{{link=\"{link}\"}}"),
            failed.load(Relaxed),
        );
    }
}

const RTT: &str = "teleport_heartbeat_rtt_seconds";
const RTT_HELP: &str = "Heartbeat round trip, from sending a beat to reading its ack.";

fn node(o: &mut Out, m: &Metrics) {
    o.gauge(
        "teleport_tunnels_held",
        "Reverse tunnels this agent holds to proxies.",
        &m.tunnels_held,
    );
    o.gauge(
        "teleport_auth_streams",
        "Direct heartbeat streams to auth.",
        &m.auth_streams,
    );
    o.counter(
        "teleport_heartbeats_sent_total",
        "Heartbeats sent.",
        &m.heartbeats_sent,
    );
    o.counter(
        "teleport_heartbeats_acked_total",
        "Heartbeats acknowledged.",
        &m.heartbeats_acked,
    );
    o.counter(
        "teleport_heartbeats_failed_total",
        "Heartbeats not acknowledged in time.",
        &m.heartbeats_failed,
    );
    o.counter(
        "teleport_node_streams_opened_total",
        "Data-plane streams a proxy opened to a local service through a tunnel.",
        &m.node_streams_opened,
    );
    o.gauge(
        "teleport_node_streams_active",
        "Data-plane streams open now.",
        &m.node_streams_active,
    );
    o.bytes(
        "teleport_node_stream_bytes_total",
        "Data-plane bytes, to the local service and back from it.",
        &m.node_bytes,
    );
}

fn joining(o: &mut Out, m: &Metrics) {
    let ms = m.join_duration_ms.load(Relaxed);
    o.family(
        "teleport_join_duration_seconds",
        "gauge",
        "Duration of this host's join (0 when it joined in an earlier run).",
    );
    o.sample(
        "teleport_join_duration_seconds",
        "",
        format!("{:.3}", ms as f64 / 1000.0),
    );
    o.family(
        "teleport_join_failures_total",
        "counter",
        "Failed join attempts of this host by reason (each retry counts).",
    );
    for (r, n) in JoinFailure::ALL.iter().zip(&m.join_failures) {
        let labels = format!("{{reason=\"{}\"}}", r.label());
        o.sample("teleport_join_failures_total", &labels, n.load(Relaxed));
    }
    const EXPIRY: &str = "teleport_host_cert_expiry_timestamp_seconds";
    o.family(
        EXPIRY,
        "gauge",
        "When the host certificate in use expires (Unix time); alert if it comes near.",
    );
    for (role, v) in [
        ("node", &m.cert_expiry_node),
        ("proxy", &m.cert_expiry_proxy),
    ] {
        let at = v.load(Relaxed);
        if at > 0 {
            o.sample(EXPIRY, &format!("{{role=\"{role}\"}}"), at);
        }
    }
    o.counter(
        "teleport_host_cert_renewals_total",
        "Host certificates renewed in place over a stream, tunnel or link.",
        &m.cert_renewals,
    );
    o.counter(
        "teleport_host_cert_renewal_failures_total",
        "Renewals of the host certificate that failed (retried at the next heartbeat).",
        &m.cert_renewal_failures,
    );
}

fn proxy(o: &mut Out, m: &Metrics) {
    o.gauge(
        "teleport_proxy_tunnels",
        "Reverse tunnels from nodes this proxy holds.",
        &m.proxy_tunnels,
    );
    o.gauge(
        "teleport_proxy_auth_link_up",
        "1 while this proxy's link to auth is up.",
        &m.proxy_link_up,
    );
    o.family(
        "teleport_proxy_dials_total",
        "counter",
        "Dials to nodes served through tunnels, by result.",
    );
    let ok = m.proxy_dials_ok.load(Relaxed);
    let failed = m.proxy_dials_failed.load(Relaxed);
    o.sample("teleport_proxy_dials_total", "{result=\"ok\"}", ok);
    o.sample("teleport_proxy_dials_total", "{result=\"error\"}", failed);
    o.gauge(
        "teleport_proxy_streams_active",
        "Dialled data-plane streams open now.",
        &m.proxy_streams_active,
    );
    o.bytes(
        "teleport_proxy_stream_bytes_total",
        "Data-plane bytes, towards the node's service and back from it.",
        &m.proxy_bytes,
    );
}

fn auth(o: &mut Out, m: &Metrics) {
    o.gauge(
        "teleport_nodes_online",
        "Nodes in the inventory.",
        &m.nodes_online,
    );
    o.family(
        "teleport_joins_total",
        "counter",
        "Join requests by result and reason.",
    );
    let series: [(&str, &AtomicU64); 6] = [
        ("{result=\"accepted\"}", &m.joins_accepted),
        (
            "{result=\"refused\",reason=\"invalid_token\"}",
            &m.joins_refused_invalid,
        ),
        (
            "{result=\"refused\",reason=\"expired_token\"}",
            &m.joins_refused_expired,
        ),
        (
            "{result=\"refused\",reason=\"wrong_role\"}",
            &m.joins_refused_role,
        ),
        (
            "{result=\"refused\",reason=\"rate_limited\"}",
            &m.joins_refused_rate,
        ),
        (
            "{result=\"refused\",reason=\"other\"}",
            &m.joins_refused_other,
        ),
    ];
    for (labels, v) in series {
        o.sample("teleport_joins_total", labels, v.load(Relaxed));
    }
}

#[cfg(test)]
mod tests;
