//! Messages. Every connection opens with a request that carries `version`; a server that speaks
//! another protocol version answers with `ErrorCode::VersionMismatch` and a message that says
//! which side to upgrade.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Token;

/// Version of this wire protocol.
pub const PROTOCOL_VERSION: u32 = 1;

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Unauthenticated: the cluster's CA certificates, to be checked against a pin.
    GetCa { version: u32 },
    /// Unauthenticated: join with a token.
    Register(RegisterRequest),
    /// Admin identity required: one `tctl` operation.
    Admin { version: u32, cmd: AdminCmd },
    /// Host identity required: opens the heartbeat stream.
    Hello(StreamHello),
    /// On an open stream.
    Heartbeat { seq: u64 },
    /// On an open stream: the service stops; remove it from the inventory now.
    Goodbye,
    /// Proxy identity required: opens the proxy's link to auth.
    ProxyHello(ProxyHello),
    /// On a proxy link: a node's heartbeat that arrived over a tunnel to this proxy.
    Relay(RelayedBeat),
    /// On a proxy link: a node said goodbye on its tunnel to this proxy.
    RelayGoodbye {
        #[serde(rename = "hostID")]
        host_id: String,
    },
    /// On a tunnel's control stream: the node introduces itself to the proxy.
    TunnelHello(StreamHello),
    /// Proxy identity required: is this token valid for `role` (without using it)? For the
    /// install-node script, which must fail before installing anything.
    CheckToken {
        version: u32,
        token: Token,
        role: String,
        /// The anonymous caller's address as the proxy saw it; auth rate-limits by it.
        #[serde(default)]
        remote_addr: String,
    },
    /// Admin identity required, on a proxy's `teleport-transport` ALPN: open a stream to a
    /// node's local service through its tunnel.
    Dial {
        version: u32,
        /// Node name or host UUID.
        node: String,
        /// Address on the node, e.g. 127.0.0.1:22.
        addr: String,
    },
}

/// The first message on a proxy's link to auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyHello {
    pub version: u32,
    pub name: String,
    pub public_addr: String,
    pub server_version: String,
    /// What this proxy's web listener serves browsers and curl.
    #[serde(default)]
    pub web: WebTrust,
}

/// The certificates a proxy's web listener may serve: curl pins of each (`sha256//BASE64` of
/// the SubjectPublicKeyInfo) and whether they are publicly trusted (`https_keypairs`). For the
/// install line `tctl tokens add` prints and for the install script's own downloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebTrust {
    #[serde(default)]
    pub pins: Vec<String>,
    /// True when every certificate served to web clients comes from `https_keypairs`.
    #[serde(default)]
    pub public: bool,
}

/// A node heartbeat relayed by a proxy. It carries the node's description so that auth needs
/// no per-tunnel state to rebuild its inventory after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedBeat {
    #[serde(rename = "hostID")]
    pub host_id: String,
    pub node_name: String,
    pub server_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A proxy as announced to agents: they keep one tunnel to each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProxyRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub name: String,
    pub uuid: String,
    pub addr: String,
    pub version: String,
    /// How many nodes hold a tunnel to this proxy.
    pub tunnels: usize,
}

/// A join request. Field names follow Teleport's `RegisterUsingTokenRequest` where the meaning
/// is the same.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub version: u32,
    pub token: String,
    #[serde(rename = "hostID")]
    pub host_id: String,
    pub node_name: String,
    /// "Node", "Proxy", ...
    pub role: String,
    /// PEM certificate signing request; the private key stays on the host.
    pub csr: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Filled in by a relaying proxy; ignored from direct clients.
    #[serde(default)]
    pub remote_addr: String,
    /// Extra names for the certificate (proxies: their public addresses).
    #[serde(default)]
    pub dns_names: Vec<String>,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("host_id", &self.host_id)
            .field("node_name", &self.node_name)
            .field("role", &self.role)
            .field("token", &"MASKED")
            .finish()
    }
}

/// The first message on a heartbeat stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    pub version: u32,
    pub node_name: String,
    pub server_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The address the node announces, if any; otherwise auth records the peer address.
    #[serde(default)]
    pub public_addr: String,
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
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Ca {
        cluster_name: String,
        certs: Vec<String>,
    },
    /// Answer to `Register`; names follow Teleport's `Certs`.
    Registered {
        tls: String,
        tls_ca_certs: Vec<String>,
        cluster_name: String,
    },
    HelloAck {
        cluster_name: String,
        server_version: String,
        heartbeat_interval_ms: u64,
        /// On proxy links: the current proxy set.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxies: Vec<ProxyRef>,
    },
    HeartbeatAck {
        seq: u64,
        /// On proxy links and tunnels: the current proxy set.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxies: Vec<ProxyRef>,
        /// On tunnels: whether the proxy passed the beat on to auth.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        relayed: bool,
    },
    /// Answer to a tunnel hello: who this proxy is.
    TunnelWelcome {
        proxy: ProxyRef,
        cluster_name: String,
        heartbeat_interval_ms: u64,
        proxies: Vec<ProxyRef>,
    },
    /// A dial through a tunnel succeeded; raw bytes follow.
    DialOk,
    /// Answer to `CheckToken`: the token would be accepted.
    TokenOk,
    GoodbyeAck,
    TokenCreated(TokenCreated),
    /// On a proxy link, after the first heartbeat answer and whenever it changes: the web pins
    /// of every live proxy (`public` if all of them serve publicly trusted certificates).
    ProxyWeb(WebTrust),
    Tokens {
        tokens: Vec<TokenInfo>,
    },
    TokenRemoved {
        masked: String,
    },
    Nodes {
        nodes: Vec<NodeInfo>,
    },
    Proxies {
        proxies: Vec<ProxyInfo>,
    },
    Status(ClusterStatus),
    /// Answer to `UserSign`: the user's certificate, the CA certificates, expiry (Unix seconds).
    UserCert {
        cert: String,
        ca_certs: Vec<String>,
        expires: i64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

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
    pub ca_pins: Vec<String>,
    pub nodes_online: usize,
}

/// Error classes, mapped to exit messages in one place (`Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    AccessDenied,
    BadParameter,
    NotFound,
    RateLimited,
    VersionMismatch,
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::AccessDenied => "access denied",
            ErrorCode::BadParameter => "bad parameter",
            ErrorCode::NotFound => "not found",
            ErrorCode::RateLimited => "rate limited",
            ErrorCode::VersionMismatch => "version mismatch",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal error",
        })
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// The answer a server gives to a request of another protocol version.
pub fn version_mismatch(client: u32) -> Response {
    let upgrade = if client > PROTOCOL_VERSION {
        "upgrade the auth server"
    } else {
        "upgrade this teleport binary"
    };
    Response::error(
        ErrorCode::VersionMismatch,
        format!(
            "client speaks protocol v{client} but the server speaks v{PROTOCOL_VERSION}: {upgrade}"
        ),
    )
}
