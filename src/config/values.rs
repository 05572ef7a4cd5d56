//! Parsers of single values of the file and the flags: names, addresses, labels, tokens, the
//! log settings. Each error names the key and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LogConf, LogOutput, LogSettings, StaticToken, Storage, StorageConf};
use crate::error::{Error, Result};
use crate::secret::Token;

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Reads a value that may be a path to a file holding it (as Teleport's `--token`).
pub fn value_or_file(v: &str) -> Result<String> {
    let p = Path::new(v);
    if v.starts_with('/') || v.starts_with("./") {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io("read token file", p, e))?;
        let first = text.lines().map(str::trim).find(|l| !l.is_empty());
        return first
            .map(str::to_string)
            .ok_or_else(|| Error::Config(format!("token file {} is empty", p.display())));
    }
    Ok(v.to_string())
}

/// Parses "k=v,k2=v2".
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("invalid label {pair:?}: expected key=value")))?;
        if k.trim().is_empty() {
            return Err(Error::Config(format!(
                "invalid label {pair:?}: the key is empty"
            )));
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// `proxy_service.proxy_protocol`: Teleport's values `on` and `off`; absent means off.
pub(super) fn parse_proxy_protocol(v: Option<&serde_yaml::Value>) -> Result<bool> {
    match v.map(|v| (v, v.as_str().map(str::to_ascii_lowercase))) {
        None => Ok(false),
        Some((_, Some(s))) if s == "on" => Ok(true),
        Some((_, Some(s))) if s == "off" => Ok(false),
        Some((v, _)) => Err(Error::Config(format!(
            "proxy_service.proxy_protocol must be \"on\" (a load balancer in front sends a \
             PROXY protocol v2 header) or \"off\", not {}",
            serde_yaml::to_string(v).unwrap_or_default().trim()
        ))),
    }
}

/// Parses static tokens: `'proxy,node:secret'` or `'auth:/path/to/file'` (one token a line).
pub fn parse_static_tokens(entries: &[String]) -> Result<Vec<StaticToken>> {
    let mut out = Vec::new();
    for entry in entries {
        let bad = |why: &str| {
            Error::Config(format!(
                "auth_service.tokens: invalid entry (roles {why}); write it as \
                 'node,proxy:secret-value' or 'node:/path/to/tokenfile'"
            ))
        };
        let (roles, value) = entry
            .split_once(':')
            .ok_or_else(|| bad("and value missing"))?;
        let roles: Vec<String> = roles
            .split(',')
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty())
            .collect();
        if roles.is_empty() {
            return Err(bad("missing"));
        }
        crate::proto::roles::parse_supported_roles(&roles)
            .map_err(|e| Error::Config(format!("auth_service.tokens: {e}")))?;
        let values: Vec<String> = if value.starts_with('/') {
            let p = Path::new(value);
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::io("read static token file", p, e))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            vec![value.trim().to_string()]
        };
        if values.iter().any(String::is_empty) || values.is_empty() {
            return Err(bad("given but the token value is empty"));
        }
        for v in values {
            out.push(StaticToken {
                roles: roles.clone(),
                token: Token::new(v),
            });
        }
    }
    Ok(out)
}

pub(super) fn parse_log(conf: Option<&LogConf>) -> Result<LogSettings> {
    let output = match conf.and_then(|l| l.output.as_deref()) {
        None | Some("stderr") | Some("") => LogOutput::Stderr,
        Some("stdout") => LogOutput::Stdout,
        Some(p) if p.starts_with('/') => LogOutput::File(PathBuf::from(p)),
        Some(other) => {
            return Err(Error::Config(format!(
                "teleport.log.output {other:?} is not supported: use stderr, stdout or an \
                 absolute file path"
            )))
        }
    };
    let level = match conf
        .and_then(|l| l.severity.as_deref())
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("INFO") => log::LevelFilter::Info,
        Some("DEBUG") => log::LevelFilter::Debug,
        Some("TRACE") => log::LevelFilter::Trace,
        Some("WARN") | Some("WARNING") => log::LevelFilter::Warn,
        Some("ERROR") | Some("ERR") => log::LevelFilter::Error,
        Some(other) => {
            return Err(Error::Config(format!(
                "teleport.log.severity {other:?} is not one of DEBUG, INFO, WARN, ERROR"
            )))
        }
    };
    let json = match conf
        .and_then(|l| l.format.as_ref())
        .and_then(|f| f.output.as_deref())
    {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::Config(format!(
                "teleport.log.format.output {other:?} is not one of text, json"
            )))
        }
    };
    Ok(LogSettings {
        output,
        level,
        json,
    })
}

/// Checks "host:port" and returns it; a bare host gets `default_port`.
pub fn normalize_addr(addr: &str, default_port: u16, what: &str) -> Result<String> {
    let addr = addr.trim();
    let bad = || {
        Error::Config(format!(
            "invalid {what} {addr:?}: expected HOST:PORT, for example auth.example.com:3025"
        ))
    };
    if addr.is_empty() || addr.contains("://") || addr.contains(char::is_whitespace) {
        return Err(bad());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            port.parse::<u16>().map_err(|_| bad())?;
            Ok(addr.to_string())
        }
        Some(_) => Err(bad()),
        None => Ok(format!("{addr}:{default_port}")),
    }
}

/// Names that end up in certificates and tables: hostname characters only.
pub fn validate_name(name: &str, what: &str) -> Result<()> {
    if crate::proto::limits::check_name(name, "name").is_ok() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid {what} {name:?}: use letters, digits, '-', '.' and '_' (at most 253)"
        )))
    }
}

/// `proxy_service.user_dial_ports`: 1 to 64 ports, none of them 0; `[22]` when absent.
pub fn parse_dial_ports(ports: Option<&[u16]>) -> Result<Vec<u16>> {
    let Some(ports) = ports else {
        return Ok(vec![22]);
    };
    if ports.is_empty() || ports.len() > 64 || ports.contains(&0) {
        return Err(Error::Config(format!(
            "proxy_service.user_dial_ports: {ports:?} must list 1 to 64 ports from 1 to 65535 \
             (the ports on a node a user identity may dial, e.g. [22])"
        )));
    }
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// Shortest `auth_service.host_cert_ttl`: hosts renew at two thirds of it, over a stream that
/// needs a heartbeat or two to carry the renewal.
pub const MIN_HOST_CERT_TTL: Duration = Duration::from_secs(3);
/// Longest `auth_service.host_cert_ttl`.
pub const MAX_HOST_CERT_TTL: Duration = Duration::from_secs(8760 * 3600);

/// `auth_service.host_cert_ttl`: 24h by default. A day, as Nomad's node identities: long
/// enough that a host offline over a weekend night needs no new token, short enough that a
/// stolen identity file stops working by itself; hosts renew at 16h, so a renewal missed for
/// hours on a flaky network still leaves margin.
pub fn host_cert_ttl(value: Option<&str>) -> Result<Duration> {
    let Some(s) = value else {
        return Ok(crate::pki::ca::HOST_CERT_VALIDITY);
    };
    let ttl = crate::clock::parse_duration(s)
        .map_err(|e| Error::Config(format!("auth_service.host_cert_ttl: {e}")))?;
    if !(MIN_HOST_CERT_TTL..=MAX_HOST_CERT_TTL).contains(&ttl) {
        return Err(Error::Config(format!(
            "auth_service.host_cert_ttl must be between {}s and {}h, e.g. 24h",
            MIN_HOST_CERT_TTL.as_secs(),
            MAX_HOST_CERT_TTL.as_secs() / 3600
        )));
    }
    Ok(ttl)
}

/// `teleport.storage`: SQLite in data_dir unless `type: postgresql` with a `conn_string`.
pub fn parse_storage(conf: Option<&StorageConf>) -> Result<Storage> {
    let Some(conf) = conf else {
        return Ok(Storage::Sqlite);
    };
    let kind = conf.kind.as_deref().map(str::trim).unwrap_or("sqlite");
    match kind.to_ascii_lowercase().as_str() {
        "" | "sqlite" | "dir" => {
            if conf.conn_string.is_some() {
                return Err(Error::Config(
                    "teleport.storage.conn_string is only read with type: postgresql; remove it \
                     or set type: postgresql"
                        .into(),
                ));
            }
            Ok(Storage::Sqlite)
        }
        "postgresql" | "postgres" => {
            let url = conf.conn_string.as_deref().filter(|s| !s.trim().is_empty());
            let url = url.ok_or_else(|| {
                Error::Config(
                    "teleport.storage.type is postgresql but conn_string is missing: add \
                     conn_string: \"postgresql://USER@HOST:5432/DATABASE?sslmode=verify-full\""
                        .into(),
                )
            })?;
            // The message never repeats the URL: it may hold a password.
            let params = crate::pg::ConnParams::parse(url).map_err(|why| {
                Error::Config(format!("teleport.storage.conn_string is not usable: {why}"))
            })?;
            Ok(Storage::Postgres(params))
        }
        "dynamodb" | "etcd" | "firestore" | "spanner" | "cockroachdb" => {
            Err(Error::Config(format!(
                "teleport.storage.type {kind:?} is not supported by teleport-lite; use sqlite or \
             postgresql"
            )))
        }
        _ => Err(Error::Config(format!(
            "teleport.storage.type {kind:?} is unknown: use sqlite (the default) or postgresql"
        ))),
    }
}
