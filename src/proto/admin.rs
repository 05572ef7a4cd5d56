//! The admin API's vocabulary (`tctl` to auth): commands, and what answers carry: tokens,
//! nodes, proxies, status, locks, rotation, audit events.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Token;

use super::msg::WebTrust;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub name: String,
    pub uuid: String,
    pub addr: String,
    pub version: String,
    /// How many nodes hold a tunnel to this proxy.
    pub tunnels: usize,
}

/// `tctl` operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminCmd {
    TokensAdd {
        roles: Vec<String>,
        ttl_secs: u64,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        /// How many joins the token allows (`--uses`); `None`: unlimited until it expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uses: Option<u32>,
    },
    TokensList,
    /// A token's value or its public ID.
    TokensRemove {
        token: Token,
    },
    NodesList,
    ProxiesList,
    Status,
    /// `tctl auth sign --user`: sign a user's CSR (only its key is used) for `ttl_secs`.
    UserSign {
        user: String,
        ttl_secs: u64,
        csr: String,
    },
    /// `tctl nodes rm NAME|UUID`: forget a node and revoke its identity.
    NodesRemove {
        node: String,
    },
    /// `tctl lock`: lock a host (by UUID) or a user identity.
    LockCreate {
        target: LockTarget,
        #[serde(default)]
        message: String,
        /// `None`: until unlocked.
        #[serde(default)]
        ttl_secs: Option<u64>,
    },
    LocksList,
    /// `tctl unlock`.
    LockDelete {
        target: LockTarget,
    },
    /// `tctl auth rotate`.
    Rotate(RotateRequest),
    /// `tctl audit ls`: events at or after `since` (Unix seconds), at most `limit`, newest last.
    AuditList {
        #[serde(default)]
        since: Option<i64>,
        limit: u32,
    },
}

/// What a lock applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockTarget {
    /// A host (node or proxy) by its host UUID.
    ServerId(String),
    /// A user identity (`tctl auth sign --user`) by user name.
    User(String),
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTarget::ServerId(id) => write!(f, "server_id={id}"),
            LockTarget::User(u) => write!(f, "user={u}"),
        }
    }
}

/// A lock as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub target: LockTarget,
    pub message: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `None`: until unlocked.
    pub expires: Option<i64>,
}

/// `tctl auth rotate`: `manual` with a `phase`, or semi-automatic over `grace_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequest {
    /// Only "host" in this build.
    pub ca_type: String,
    pub manual: bool,
    /// With `manual`: init, update_clients, update_servers, standby or rollback.
    #[serde(default)]
    pub phase: Option<String>,
    /// Without `manual`: the grace period; `None` for the default (30h, as Teleport).
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// The host CA's rotation, as `tctl status` shows it. Names follow Teleport's `Rotation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationInfo {
    /// "standby" or "in_progress".
    pub state: String,
    /// standby, init, update_clients, update_servers or rollback.
    pub phase: String,
    /// "auto", "manual" or empty when never rotated.
    #[serde(default)]
    pub mode: String,
    /// Unix seconds; 0 when not rotating.
    #[serde(default)]
    pub started: i64,
    #[serde(default)]
    pub grace_secs: u64,
    /// Unix seconds of the last completed rotation; 0: never.
    #[serde(default)]
    pub last_rotated: i64,
    /// In auto mode: when the next phase starts (Unix seconds); 0 otherwise.
    #[serde(default)]
    pub next_phase_at: i64,
}

/// One audit event: its JSON object as written to the log.
pub type AuditEvent = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: Token,
    pub roles: Vec<String>,
    /// RFC 3339.
    pub expires: String,
    pub ttl_secs: u64,
    pub ca_pins: Vec<String>,
    pub auth_addr: String,
    /// Public address of a live proxy, for the one-line install; empty without proxies.
    #[serde(default)]
    pub proxy_addr: String,
    /// The web pins of every live proxy, for the one-line install.
    #[serde(default)]
    pub proxy_web: WebTrust,
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub masked: String,
    pub roles: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds; `None` for static tokens, which never expire.
    pub expires: Option<i64>,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Joins left for a token made with `--uses`; `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub uuid: String,
    pub addr: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    /// Names of the proxies the node holds a tunnel to (empty for direct nodes).
    #[serde(default)]
    pub tunnels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_name: String,
    pub version: String,
    pub host_ca_rotation: String,
    /// Every pin a joining host must accept: two while a rotation is in progress.
    pub ca_pins: Vec<String>,
    pub nodes_online: usize,
    #[serde(default)]
    pub rotation: Box<RotationInfo>,
    /// `auth_service.host_cert_ttl` in seconds.
    #[serde(default)]
    pub host_cert_ttl_secs: u64,
    /// Auth's backend: "sqlite" or the PostgreSQL URL without its password.
    #[serde(default)]
    pub storage: String,
}
