//! Messages. Every connection opens with a request that carries `version`; a server that speaks
//! another protocol version answers with `ErrorCode::VersionMismatch` and a message that says
//! which side to upgrade.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Token;

pub use super::admin::*;

/// Version of this wire protocol.
pub const PROTOCOL_VERSION: u32 = 1;

/// A quiet tunnel (`quiet` in a tunnel's `heartbeat_ack`) beats once per this many intervals;
/// the proxy waits this many intervals plus three before it judges such a tunnel dead.
pub const QUIET_EVERY: u32 = 12;

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
    /// On an authenticated stream (a node's direct stream, a proxy's link, a tunnel's control
    /// stream): sign a new certificate for the key of `csr`. Auth takes only the key from the
    /// CSR; every name comes from its record of the host.
    Renew {
        csr: String,
        /// The CSR signed by the key of the certificate being renewed (hex), so that a proxy
        /// relaying the renewal cannot forge one (`pki::proof`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        proof: String,
    },
    /// On a tunnel's control stream, after the node renewed over another tunnel: its new
    /// certificate, so this proxy extends the tunnel's life to the new expiry.
    Refresh { cert: String },
    /// On a proxy link: renew the certificate of `host_id`, a node holding a tunnel to this
    /// proxy, or of the proxy itself (its own host ID). Answered by `RelayAnswer` with `id`.
    RelayRenew {
        id: u64,
        #[serde(rename = "hostID")]
        host_id: String,
        csr: String,
        /// For a node: the certificate its tunnel presented (PEM) and its proof.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        cert: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        proof: String,
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

/// What a proxy needs to judge the certificates its tunnels present: the CA certificates to
/// trust, which one signs each kind of certificate now, since when (a certificate issued
/// before `changed` must be renewed) and the host certificate lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustInfo {
    pub ca_certs: Vec<String>,
    /// Index in `ca_certs` of the CA that signs node and user certificates.
    pub client_signer: usize,
    /// Index in `ca_certs` of the CA that signs auth and proxy certificates.
    pub server_signer: usize,
    /// Unix seconds of the last change of the CA set or of a signer.
    pub changed: i64,
    /// Unix seconds when the last rotation dropped a CA: tunnels with its certificates may
    /// renew for 30 s after.
    #[serde(default)]
    pub retired_at: i64,
    pub host_cert_ttl_secs: u64,
}

/// A host or user that may not connect: locked, or removed with `tctl nodes rm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub target: LockTarget,
    /// What the host or user is told.
    pub message: String,
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
        /// The certificate this connection presented must be renewed now (a CA rotation
        /// phase began, or it was issued with an older lifetime).
        #[serde(default, skip_serializing_if = "is_false")]
        renew: bool,
        /// On tunnels: this proxy tells auth itself, every interval, that it holds the tunnel,
        /// so a node whose other tunnel beats at the full rate may beat here only every
        /// `QUIET_EVERY` intervals. Older proxies leave it out (beat every interval).
        #[serde(default, skip_serializing_if = "is_false")]
        quiet: bool,
    },
    /// Answer to `Renew` (and inside `RelayAnswer`): the new certificate, the CA certificates
    /// to trust from now on, and its expiry (Unix seconds).
    Renewed {
        tls: String,
        tls_ca_certs: Vec<String>,
        expires: i64,
        /// Signatures over `tls_ca_certs` by the key of each CA auth holds (hex): the host
        /// accepts the new set only if a CA it already trusts signed it (`pki::proof`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ca_proof: Vec<String>,
    },
    /// Answer to `Refresh`: the tunnel now lives until `expires` (Unix seconds).
    Refreshed {
        expires: i64,
    },
    /// On a proxy link: the answer to `RelayRenew { id }`.
    RelayAnswer {
        id: u64,
        answer: Box<Response>,
    },
    /// On a proxy link, at the start and whenever it changes: the CAs and signers.
    Trust(TrustInfo),
    /// On a proxy link, at the start and whenever it changes: who may not connect. The proxy
    /// closes their tunnels and dials at once.
    Denied {
        denials: Vec<Denial>,
    },
    NodeRemoved {
        hostname: String,
        uuid: String,
    },
    Locks {
        locks: Vec<LockInfo>,
    },
    LockCreated(LockInfo),
    LockDeleted {
        target: LockTarget,
    },
    Rotation(RotationInfo),
    Audit {
        events: Vec<AuditEvent>,
        /// More events matched than `limit`; the oldest were left out.
        #[serde(default)]
        truncated: bool,
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

fn is_false(b: &bool) -> bool {
    !*b
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
