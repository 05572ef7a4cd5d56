//! `teleport.yaml` (v3) and the flags of `teleport start`, merged into the settings of each
//! service. The file's types are in `schema` (unknown keys rejected), keys we do not implement
//! are refused in `unsupported`, single values are parsed in `values`, and `render` writes the
//! file for `teleport configure`. All YAML lives in this module.

mod file;
mod merge;
mod paths;
mod render;
mod schema;
mod unsupported;
mod values;

pub use file::{load_file_config, locate, parse_file_config};
pub use render::{parse_output, render_config, ConfigureInput, Output};
pub use schema::*;
pub use values::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pki::pin::Pin;
use crate::secret::Token;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/teleport.yaml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/teleport";
pub const DEFAULT_AUTH_LISTEN: &str = "0.0.0.0:3025";
pub const DEFAULT_AUTH_PORT: u16 = 3025;
pub const DEFAULT_WEB_LISTEN: &str = "0.0.0.0:3080";
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest heartbeat interval auth accepts in its config.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// Effective settings of `teleport start`.

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    pub auth: bool,
    pub node: bool,
    pub proxy: bool,
}

impl Roles {
    /// Parses `--roles=auth,node,proxy`.
    pub fn parse(s: &str) -> Result<Roles> {
        let mut roles = Roles::default();
        for r in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match r.to_ascii_lowercase().as_str() {
                "auth" => roles.auth = true,
                "node" | "ssh" => roles.node = true,
                "proxy" => roles.proxy = true,
                other => {
                    return Err(Error::Config(format!(
                        "unknown role {other:?} in --roles: use a comma-separated list of auth, \
                         node and proxy"
                    )))
                }
            }
        }
        if roles == Roles::default() {
            return Err(Error::Config(
                "--roles is empty: name at least one of auth, node, proxy".into(),
            ));
        }
        Ok(roles)
    }
}

/// Command-line flags of `teleport start` that override the file.
#[derive(Debug, Default, Clone)]
pub struct StartFlags {
    pub config: Option<PathBuf>,
    pub roles: Option<String>,
    pub token: Option<String>,
    pub ca_pins: Vec<String>,
    /// `--auth-server`, repeatable: tried in order.
    pub auth_servers: Vec<String>,
    /// `--proxy`: join and keep tunnels through this proxy (any port).
    pub proxy: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub nodename: Option<String>,
    pub labels: Option<String>,
    pub insecure: bool,
    pub pid_file: Option<PathBuf>,
    pub diag_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub output: LogOutput,
    pub level: log::LevelFilter,
    pub json: bool,
}

/// A static token from `auth_service.tokens`.
#[derive(Debug, Clone)]
pub struct StaticToken {
    pub roles: Vec<String>,
    pub token: Token,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub listen_addr: SocketAddr,
    pub cluster_name: String,
    pub static_tokens: Vec<StaticToken>,
    pub heartbeat_interval: Duration,
    /// Lifetime of the host certificates auth signs (`auth_service.host_cert_ttl`).
    pub host_cert_ttl: Duration,
    /// The address printed in join instructions.
    pub advertise_addr: String,
    /// Where auth keeps its state (`teleport.storage`).
    pub storage: Storage,
}

/// Auth's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// `data_dir/auth.db` (the default).
    Sqlite,
    /// A shared PostgreSQL database; its `Debug` masks the password.
    Postgres(crate::pg::ConnParams),
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub web_listen_addr: SocketAddr,
    /// host:port agents and users reach this proxy at (often a load balancer).
    pub public_addr: String,
    /// (certificate, key) files for the web API; the cluster CA issues one otherwise.
    pub https_keypair: Option<(PathBuf, PathBuf)>,
    /// `proxy_service.proxy_protocol: on`: a load balancer sends a PROXY v2 header first, and
    /// its source address is the client's.
    pub proxy_protocol: bool,
    /// Ports on a node a user identity may dial (`proxy_service.user_dial_ports`).
    pub user_dial_ports: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub roles: Roles,
    pub nodename: String,
    pub data_dir: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub token: Option<Token>,
    /// The first of `auth_servers` (what single-server code paths use).
    pub auth_server: Option<String>,
    /// Every auth server given, in the order they are tried.
    pub auth_servers: Vec<String>,
    pub proxy_server: Option<String>,
    pub ca_pins: Vec<Pin>,
    pub insecure: bool,
    pub labels: BTreeMap<String, String>,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub proxy: ProxySettings,
    /// Where /healthz, /readyz and /metrics are served, if anywhere.
    pub diag_addr: Option<SocketAddr>,
    pub config_path: Option<PathBuf>,
}

impl Settings {
    pub fn proxy_identity_path(&self) -> PathBuf {
        paths::proxy_identity_path(&self.data_dir)
    }

    pub fn identity_path(&self) -> PathBuf {
        paths::node_identity_path(&self.data_dir)
    }
}

pub use paths::{
    admin_identity_path, ADMIN_IDENTITY_FILE, AUDIT_LOG_FILE, AUTH_DB_FILE, HOST_UUID_FILE,
    NODE_IDENTITY_FILE, PROXY_DENIALS_FILE, PROXY_IDENTITY_FILE,
};

#[cfg(test)]
mod tests;
