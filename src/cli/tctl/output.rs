//! What `tctl` prints: pure functions from auth's answers to the exact text, so every shape
//! (tables, JSON, the status block) is unit-tested without a cluster. Fields from the cluster
//! go through `cli::printable` (via `cli::table`) so none can forge rows or move the cursor;
//! JSON has them whole, escaped by serde.

use std::collections::BTreeMap;

use crate::cli::{printable, table, MAX_CELL};
use crate::clock;
use crate::error::{Error, Result};
use crate::proto::{
    AuditEvent, ClusterStatus, LockInfo, LockTarget, NodeInfo, ProxyInfo, RotationInfo,
    TokenCreated, TokenInfo,
};

/// `--format` of the listing commands.
pub const LIST_FORMATS: [&str; 2] = ["text", "json"];

/// Refuses a `--format` this command does not print, naming the ones it does.
pub fn check_format(f: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&f) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "unknown --format {f:?}: use one of {}",
            allowed.join(", ")
        )))
    }
}

/// Pretty JSON with the line end `println!` gave it.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `tokens add` / `nodes add`: only the token (`text`), JSON, or the join instructions.
pub fn token_created(c: &TokenCreated, format: Option<&str>) -> String {
    match format {
        Some("text") => format!("{}\n", c.token.expose()),
        Some(_) => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                token: &'a str,
                roles: &'a [String],
                expires: &'a str,
            }
            json(&Out {
                token: c.token.expose(),
                roles: &c.roles,
                expires: &c.expires,
            })
        }
        None => crate::cli::instructions::join_instructions(c),
    }
}

/// `tokens rm`; `masked` is what auth reports, never the value typed.
pub fn token_removed(masked: &str) -> String {
    format!("Token {masked} has been deleted\n")
}

/// `tokens ls`: masked tokens, never their values; expiry relative to `now` (unix seconds).
pub fn tokens(tokens: &[TokenInfo], format: &str, now: i64) -> String {
    if format == "json" {
        return json(&tokens);
    }
    if tokens.is_empty() {
        return "No active tokens found.\n".into();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|tk| {
            let expiry = match tk.expires {
                Some(e) => format!("{} ({})", clock::rfc822(e), clock::compact(e - now)),
                None => "never".into(),
            };
            let uses = match tk.uses_left {
                Some(n) => n.to_string(),
                None => "unlimited".into(),
            };
            vec![
                tk.masked.clone(),
                tk.roles.join(","),
                labels_text(&tk.labels),
                expiry,
                uses,
                tk.id.clone(),
            ]
        })
        .collect();
    table(
        &[
            "Token",
            "Type",
            "Labels",
            "Expiry Time (UTC)",
            "Uses Left",
            "ID",
        ],
        &rows,
    )
}

/// `nodes ls`.
pub fn nodes(nodes: &[NodeInfo], format: &str) -> String {
    if format == "json" {
        return json(&nodes);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.hostname.clone(),
                n.uuid.clone(),
                n.addr.clone(),
                labels_text(&n.labels),
                n.version.clone(),
            ]
        })
        .collect();
    table(
        &["Host", "UUID", "Public Address", "Labels", "Version"],
        &rows,
    )
}

/// `proxies ls`.
pub fn proxies(proxies: &[ProxyInfo], format: &str) -> String {
    if format == "json" {
        return json(&proxies);
    }
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.uuid.clone(),
                p.addr.clone(),
                p.tunnels.to_string(),
                p.version.clone(),
            ]
        })
        .collect();
    table(
        &["Host", "UUID", "Public Address", "Tunnels", "Version"],
        &rows,
    )
}

/// `status`: one aligned `Key  value` line per fact: cluster, version, the host CA's
/// rotation, one line per CA pin (two during a rotation), nodes online, the host cert TTL.
pub fn status(s: &ClusterStatus) -> String {
    let mut rows = vec![
        ("Cluster", s.cluster_name.clone()),
        ("Version", s.version.clone()),
        ("host CA", host_ca(&s.rotation)),
    ];
    rows.extend(s.ca_pins.iter().map(|p| ("CA pin", p.clone())));
    rows.push(("Nodes online", s.nodes_online.to_string()));
    if s.host_cert_ttl_secs > 0 {
        rows.push(("Host cert TTL", duration(s.host_cert_ttl_secs)));
    }
    if !s.storage.is_empty() {
        rows.push(("Storage", s.storage.clone()));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {}\n", printable(v, MAX_CELL)))
        .collect()
}

/// The host CA row of `status`.
fn host_ca(r: &RotationInfo) -> String {
    if r.state == "in_progress" {
        let mut s = format!(
            "in progress: phase {} (mode {}, started {}",
            r.phase,
            r.mode,
            clock::rfc3339(r.started)
        );
        if r.next_phase_at > 0 {
            s.push_str(&format!(
                ", next phase at {}",
                clock::rfc3339(r.next_phase_at)
            ));
        }
        s + ")"
    } else if r.last_rotated > 0 {
        format!("standby (rotated {})", clock::rfc3339(r.last_rotated))
    } else {
        "standby (never rotated)".into()
    }
}

/// `auth rotate`: the rotation's state after the command.
pub fn rotation(r: &RotationInfo) -> String {
    let line = if r.state == "in_progress" {
        let mut details = vec![
            format!("mode {}", r.mode),
            format!("started {}", clock::rfc3339(r.started)),
        ];
        if r.grace_secs > 0 {
            details.push(format!("grace period {}", duration(r.grace_secs)));
        }
        if r.next_phase_at > 0 {
            details.push(format!("next phase at {}", clock::rfc3339(r.next_phase_at)));
        }
        format!(
            "in_progress, phase {} ({})",
            printable(&r.phase, MAX_CELL),
            printable(&details.join(", "), MAX_CELL)
        )
    } else {
        host_ca(r)
    };
    format!("Host CA rotation: {line}\n")
}

/// A duration as Go prints it, without zero parts: "30h", "1h30m", "45s".
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

/// `nodes rm` and `rm node/...`.
pub fn node_removed(hostname: &str, uuid: &str) -> String {
    format!(
        "Node \"{}\" ({}) has been removed; its identity is revoked.\n",
        printable(hostname, MAX_CELL),
        printable(uuid, MAX_CELL)
    )
}

fn target_text(t: &LockTarget) -> String {
    printable(&t.to_string(), MAX_CELL)
}

/// `lock`: the target, and the expiry if the lock has one.
pub fn lock_created(l: &LockInfo) -> String {
    let mut out = format!("Created a lock on {}.\n", target_text(&l.target));
    if let Some(e) = l.expires {
        out.push_str(&format!("It expires at {}.\n", clock::rfc3339(e)));
    }
    out
}

/// `unlock` and `rm lock/...`.
pub fn lock_deleted(t: &LockTarget) -> String {
    format!("Removed the lock on {}.\n", target_text(t))
}

/// `locks ls`.
pub fn locks(locks: &[LockInfo], format: &str) -> String {
    if format == "json" {
        return json(&locks);
    }
    if locks.is_empty() {
        return "No locks found.\n".into();
    }
    let rows: Vec<Vec<String>> = locks
        .iter()
        .map(|l| {
            vec![
                l.target.to_string(),
                l.message.clone(),
                clock::rfc3339(l.created),
                l.expires.map_or("never".into(), clock::rfc3339),
            ]
        })
        .collect();
    table(&["Target", "Message", "Created", "Expires"], &rows)
}

/// `audit ls`: a JSON array, or one line per event: `TIME  EVENT  key=value ...`, event names
/// padded to one width. Values are escaped; strings with spaces, quotes or `=` are quoted.
pub fn audit(events: &[AuditEvent], format: &str) -> String {
    if format == "json" {
        return json(&events);
    }
    if events.is_empty() {
        return "No audit events found.\n".into();
    }
    let field = |e: &AuditEvent, k: &str| {
        e.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let names: Vec<String> = events
        .iter()
        .map(|e| printable(&field(e, "event"), MAX_CELL))
        .collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (e, name) in events.iter().zip(&names) {
        let pairs: Vec<String> = e
            .iter()
            .filter(|(k, _)| *k != "time" && *k != "event")
            .map(|(k, v)| format!("{}={}", printable(k, MAX_CELL), audit_value(v)))
            .collect();
        let line = format!(
            "{}  {name:<w$}  {}",
            printable(&field(e, "time"), MAX_CELL),
            pairs.join(" ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One value of an audit line: strings as they are (quoted when they hold spaces, quotes or
/// `=`), lists of strings joined by commas, anything else as JSON; always escaped.
fn audit_value(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let needs_quotes =
        text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
    let text = if needs_quotes {
        format!("{text:?}")
    } else {
        text
    };
    printable(&text, MAX_CELL)
}

/// Told on stderr when `audit ls` got only the newest events.
pub const AUDIT_TRUNCATED: &str = "more events matched: only the newest are shown; narrow them \
                                   with --since or raise --limit (at most 10000)";

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
