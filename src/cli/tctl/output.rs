//! What `tctl` prints: pure functions from auth's answers to the exact text, so every shape
//! (tables, JSON, the status block) is unit-tested without a cluster. Fields from the cluster
//! go through `cli::printable` (via `cli::table`) so none can forge rows or move the cursor;
//! JSON has them whole, escaped by serde.

use std::collections::BTreeMap;

use crate::cli::{printable, table, MAX_CELL};
use crate::clock;
use crate::error::{Error, Result};
use crate::proto::{ClusterStatus, NodeInfo, ProxyInfo, TokenCreated, TokenInfo};

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
            vec![
                tk.masked.clone(),
                tk.roles.join(","),
                labels_text(&tk.labels),
                expiry,
                tk.id.clone(),
            ]
        })
        .collect();
    table(
        &["Token", "Type", "Labels", "Expiry Time (UTC)", "ID"],
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

/// `status`: one aligned `Key  value` line per fact, one line per CA pin.
pub fn status(s: &ClusterStatus) -> String {
    let mut rows = vec![
        ("Cluster", s.cluster_name.clone()),
        ("Version", s.version.clone()),
        ("host CA", s.host_ca_rotation.clone()),
        ("Nodes", s.nodes_online.to_string()),
    ];
    rows.extend(s.ca_pins.iter().map(|p| ("CA pin", p.clone())));
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {}\n", printable(v, MAX_CELL)))
        .collect()
}

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
