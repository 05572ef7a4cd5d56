//! What `teleport configure` writes: a v3 file that `teleport start` reads back unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{
    hostname, normalize_addr, parse_file_config, validate_name, Roles, DEFAULT_AUTH_LISTEN,
    DEFAULT_AUTH_PORT, DEFAULT_CONFIG_PATH, DEFAULT_DATA_DIR,
};
use crate::error::{Error, Result};
use crate::pki::pin::Pin;

/// Inputs of `teleport configure` / `teleport node configure`.
#[derive(Debug, Clone, Default)]
pub struct ConfigureInput {
    pub roles: Roles,
    pub token: Option<String>,
    pub auth_server: Option<String>,
    pub proxy: Option<String>,
    pub ca_pins: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cluster_name: Option<String>,
    /// The proxy's public address (`--public-addr`, HOST:PORT, 443 by default); its port is
    /// also the port the proxy listens on.
    pub public_addr: Option<String>,
    /// A certificate and key for the proxy's web port (`--cert-file`, `--key-file`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A plain YAML scalar where that cannot change its type (keys like `hostname`), else quoted.
fn key(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "no" | "true" | "false" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        q(s)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "\"yes\""
    } else {
        "\"no\""
    }
}

/// Renders the v3 file. Without pins it holds the line `  ca_pin: ""`, so the documented
/// `sed -i 's| ca_pin: ""| ca_pin: "sha256:..."|'` edit works.
pub fn render_config(input: &ConfigureInput) -> Result<String> {
    if input.auth_server.is_some() && input.proxy.is_some() {
        return Err(Error::Config(
            "--proxy and --auth-server cannot both be set: choose one".into(),
        ));
    }
    let nodename = input.node_name.clone().unwrap_or_else(hostname);
    validate_name(&nodename, "--node-name")?;
    let pins = input
        .ca_pins
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Pin::parse(p).map(|pin| pin.to_string()))
        .collect::<Result<Vec<_>>>()?;
    let data_dir = input
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    let mut y = String::from("version: v3\nteleport:\n");
    let _ = writeln!(y, "  nodename: {}", q(&nodename));
    let _ = writeln!(y, "  data_dir: {}", q(&data_dir.to_string_lossy()));
    if let Some(t) = &input.token {
        let _ = writeln!(
            y,
            "  join_params:\n    token_name: {}\n    method: token",
            q(t)
        );
    }
    if let Some(a) = &input.auth_server {
        let a = normalize_addr(a, DEFAULT_AUTH_PORT, "--auth-server")?;
        let _ = writeln!(y, "  auth_server: {}", q(&a));
    }
    if let Some(p) = &input.proxy {
        let p = normalize_addr(p, 443, "--proxy")?;
        let _ = writeln!(y, "  proxy_server: {}", q(&p));
    }
    y.push_str("  log:\n    output: stderr\n    severity: INFO\n    format:\n      output: text\n");
    match pins.as_slice() {
        [] => y.push_str("  ca_pin: \"\"\n"),
        [one] => {
            let _ = writeln!(y, "  ca_pin: {}", q(one));
        }
        many => {
            y.push_str("  ca_pin:\n");
            for p in many {
                let _ = writeln!(y, "  - {}", q(p));
            }
        }
    }
    y.push_str("  diag_addr: \"\"\n");
    let _ = writeln!(y, "auth_service:\n  enabled: {}", yes_no(input.roles.auth));
    if input.roles.auth {
        let cluster = input
            .cluster_name
            .clone()
            .unwrap_or_else(|| nodename.clone());
        validate_name(&cluster, "--cluster-name")?;
        let _ = writeln!(y, "  listen_addr: {}", q(DEFAULT_AUTH_LISTEN));
        let _ = writeln!(y, "  cluster_name: {}", q(&cluster));
    }
    let _ = writeln!(y, "ssh_service:\n  enabled: {}", yes_no(input.roles.node));
    if input.roles.node {
        let mut labels = input.labels.clone();
        labels
            .entry("hostname".into())
            .or_insert_with(|| nodename.clone());
        y.push_str("  labels:\n");
        for (k, v) in &labels {
            let _ = writeln!(y, "    {}: {}", key(k), q(v));
        }
    }
    let _ = writeln!(
        y,
        "proxy_service:\n  enabled: {}",
        yes_no(input.roles.proxy)
    );
    render_proxy(input, &mut y)?;
    // What we write must be what we read.
    parse_file_config(&y, Path::new("<generated>"))?;
    Ok(y)
}

/// The settings of a proxy: where browsers and agents reach it and the certificate it shows.
fn render_proxy(input: &ConfigureInput, y: &mut String) -> Result<()> {
    let proxy_only = [
        ("--public-addr", input.public_addr.is_some()),
        ("--cert-file", input.cert_file.is_some()),
        ("--key-file", input.key_file.is_some()),
    ];
    if !input.roles.proxy {
        if let Some((flag, _)) = proxy_only.iter().find(|(_, set)| *set) {
            return Err(Error::Config(format!(
                "{flag} sets up the proxy service: add proxy to --roles (e.g. --roles=proxy)"
            )));
        }
        return Ok(());
    }
    if input.proxy.is_some() && !input.roles.auth {
        return Err(Error::Config(
            "a proxy joins the auth server directly, not through another proxy: use \
             --auth-server=HOST:3025 (with a proxy token from \"tctl tokens add --type=proxy\" \
             and --ca-pin)"
                .into(),
        ));
    }
    if let Some(public) = &input.public_addr {
        let public = normalize_addr(public, 443, "--public-addr")?;
        let port = public.rsplit_once(':').map_or("443", |(_, p)| p);
        let _ = writeln!(y, "  web_listen_addr: {}", q(&format!("0.0.0.0:{port}")));
        let _ = writeln!(y, "  public_addr: {}", q(&public));
    }
    match (&input.cert_file, &input.key_file) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            for (flag, p) in [("--cert-file", cert), ("--key-file", key)] {
                if !p.is_absolute() {
                    return Err(Error::Config(format!(
                        "{flag} {}: give an absolute path (the service does not start in this \
                         directory)",
                        p.display()
                    )));
                }
            }
            let _ = writeln!(
                y,
                "  https_keypairs:\n  - cert_file: {}\n    key_file: {}",
                q(&cert.to_string_lossy()),
                q(&key.to_string_lossy())
            );
        }
        _ => {
            return Err(Error::Config(
                "--cert-file and --key-file go together: give both (the certificate chain and \
                 its private key, PEM)"
                    .into(),
            ))
        }
    }
    Ok(())
}

/// Where `-o/--output` sends the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

pub fn parse_output(s: &str) -> Result<Output> {
    match s {
        "stdout" => Ok(Output::Stdout),
        "" | "file" => Ok(Output::File(PathBuf::from(DEFAULT_CONFIG_PATH))),
        s => {
            let p = s.strip_prefix("file://").unwrap_or(s);
            if p.starts_with('/') {
                Ok(Output::File(PathBuf::from(p)))
            } else {
                Err(Error::Config(format!(
                    "invalid --output {s:?}: use stdout, file (= {DEFAULT_CONFIG_PATH}), \
                     file:///absolute/path or an absolute path"
                )))
            }
        }
    }
}
