//! The names peers agree on: ALPN protocols, the fixed TLS server names, and the roles a
//! certificate's Organization carries. Every layer takes them from here, so a server and its
//! clients cannot drift apart.

/// ALPN of auth's port. Clients offer it so that dialing a proxy by mistake fails at once with a
/// clear message instead of a stalled exchange.
pub const ALPN_AUTH: &[u8] = b"teleport-auth";
/// ALPN of an agent's reverse tunnel to a proxy.
pub const ALPN_TUNNEL: &[u8] = b"teleport-reversetunnel";
/// ALPN of a dial through a proxy's tunnels (`tctl nodes dial`, ssh).
pub const ALPN_TRANSPORT: &[u8] = b"teleport-transport";
/// ALPN of the proxy's web API.
pub const ALPN_HTTP: &[u8] = b"http/1.1";

/// The name every auth server's certificate carries and every client verifies, so that joining
/// by IP address or by any DNS name works without IP SANs; no joining host may use it.
pub const AUTH_SERVER_NAME: &str = "teleport.cluster.local";
/// The name every proxy's certificate carries on tunnels, whatever address (often a load
/// balancer) agents dialed; no joining host may use it.
pub const PROXY_SERVER_NAME: &str = "proxy.teleport.cluster.local";

/// Roles as encoded in a certificate's Organization.
pub const ROLE_NODE: &str = "Node";
pub const ROLE_ADMIN: &str = "Admin";
pub const ROLE_AUTH: &str = "Auth";
pub const ROLE_PROXY: &str = "Proxy";
/// A person's short-lived identity from `tctl auth sign`: it may dial nodes through a proxy
/// and nothing else.
pub const ROLE_USER: &str = "User";

/// The web API paths a proxy serves for joining.
pub const CREDENTIALS_PATH: &str = "/v1/webapi/host/credentials";
pub const EXPORT_PATH: &str = "/v1/webapi/auth/export?type=tls-host";
