//! Keys Teleport reads that teleport-lite does not implement. Each is refused with what to do
//! instead, rather than accepted and ignored: a setting that silently does nothing is worse
//! than an error. Values that match what teleport-lite does anyway (what `teleport configure`
//! of Teleport writes: `proxy_listener_mode: multiplex`, `acme: {}`,
//! `https_keypairs_reload_interval: 0s`) are accepted.

use std::path::Path;

use super::schema::FileConfig;
use crate::error::{Error, Result};

/// Refuses the first key of `file` that names a feature teleport-lite does not have.
pub fn check(file: &FileConfig, origin: &Path) -> Result<()> {
    let refuse = |key: &str, why: &str| {
        Err(Error::Config(format!(
            "{}: {key} is not implemented by teleport-lite: {why}",
            origin.display()
        )))
    };
    let g = &file.teleport;
    let extra_fields = g.log.as_ref().and_then(|l| l.format.as_ref());
    if extra_fields.is_some_and(|f| f.extra_fields.as_ref().is_some_and(|v| !v.is_empty())) {
        return refuse(
            "teleport.log.format.extra_fields",
            "every line carries the time, level and component; remove the key",
        );
    }
    let a = &file.auth_service;
    match a.proxy_listener_mode.as_deref() {
        None | Some("multiplex") => {}
        Some(_) => {
            return refuse(
                "auth_service.proxy_listener_mode other than multiplex",
                "the proxy serves everything on web_listen_addr (as multiplex does); remove \
                 the key or write multiplex",
            )
        }
    }
    let s = &file.ssh_service;
    if s.listen_addr.is_some() {
        return refuse(
            "ssh_service.listen_addr",
            "the node runs no SSH server of its own; \"tctl nodes dial\" reaches the host's \
             sshd (e.g. 127.0.0.1:22) through the tunnel. Remove the key",
        );
    }
    if s.public_addr.is_some() {
        return refuse(
            "ssh_service.public_addr",
            "nodes are reached through their tunnels, never at an address of their own; \
             remove the key",
        );
    }
    let p = &file.proxy_service;
    if p.public_addr
        .clone()
        .is_some_and(|v| v.into_vec().len() > 1)
    {
        return refuse(
            "more than one proxy_service.public_addr",
            "the proxy has one public address (its load balancer's); keep one entry",
        );
    }
    if p.acme.as_ref().is_some_and(acme_enabled) {
        return refuse(
            "proxy_service.acme",
            "get a certificate another way (e.g. certbot) and set proxy_service.https_keypairs \
             to its cert_file and key_file, or remove acme to use the certificate the cluster \
             issues",
        );
    }
    match p.https_keypairs_reload_interval.as_deref().map(str::trim) {
        None | Some("0") | Some("0s") | Some("") => {}
        Some(_) => {
            return refuse(
                "proxy_service.https_keypairs_reload_interval",
                "the keypair is read at start; after renewing the certificate run \"systemctl \
                 reload teleport\" (SIGHUP), and remove the key or set it to 0s",
            )
        }
    }
    Ok(())
}

/// `acme: {}` and `acme: {enabled: no}` are what Teleport's `configure` writes: off.
fn acme_enabled(v: &serde_yaml::Value) -> bool {
    match v {
        serde_yaml::Value::Null => false,
        serde_yaml::Value::Mapping(m) if m.is_empty() => false,
        serde_yaml::Value::Mapping(m) => match m.get("enabled") {
            Some(serde_yaml::Value::Bool(b)) => *b,
            Some(serde_yaml::Value::String(s)) => {
                !matches!(s.to_ascii_lowercase().as_str(), "no" | "false" | "off")
            }
            _ => true,
        },
        _ => true,
    }
}
