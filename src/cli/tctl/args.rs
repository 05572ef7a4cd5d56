//! The command line of `tctl`: argh structs only, no behaviour.

use std::path::PathBuf;

use argh::FromArgs;

/// Admin tool for a teleport-lite cluster.
#[derive(FromArgs)]
pub struct Cli {
    /// config file of the auth server (default /etc/teleport.yaml)
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// auth server address, HOST:PORT (default: the config's listen_addr)
    #[argh(option)]
    pub auth_server: Option<String>,
    /// identity file: the admin's (default DATA_DIR/admin-identity.pem), or a user's from
    /// "tctl auth sign" for nodes dial and ssh-config
    #[argh(option, short = 'i')]
    pub identity: Option<PathBuf>,
    #[argh(subcommand)]
    pub cmd: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Sub {
    Tokens(TokensCmd),
    Nodes(NodesCmd),
    Proxies(ProxiesCmd),
    Status(StatusCmd),
    Version(VersionCmd),
    Auth(AuthCmd),
    SshConfig(SshConfigCmd),
    Audit(AuditCmd),
    Rm(RmCmd),
    Lock(LockCmd),
    Locks(LocksCmd),
    Unlock(UnlockCmd),
}

/// Manage join tokens.
#[derive(FromArgs)]
#[argh(subcommand, name = "tokens")]
pub struct TokensCmd {
    #[argh(subcommand)]
    pub cmd: TokensSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum TokensSub {
    Add(TokensAdd),
    Ls(TokensLs),
    Rm(TokensRm),
}

/// Create a join token.
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
pub struct TokensAdd {
    /// token type(s), comma-separated: node, proxy; bot makes it single-use (bot,node)
    #[argh(option, long = "type")]
    pub kind: String,
    /// time to live with a unit, e.g. 5m or 1h (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    pub ttl: String,
    /// labels of the token, k=v,k2=v2
    #[argh(option)]
    pub labels: Option<String>,
    /// how many joins the token allows, 1 to 10000 (default: any number until it expires)
    #[argh(option)]
    pub uses: Option<u32>,
    /// output format: text (only the token) or json; default prints join instructions
    #[argh(option)]
    pub format: Option<String>,
}

/// List join tokens (never their secret values).
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct TokensLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    pub format: String,
}

/// Delete a join token.
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
pub struct TokensRm {
    /// the token value, or its ID from "tctl tokens ls"
    #[argh(positional)]
    pub token: String,
}

/// Manage nodes.
#[derive(FromArgs)]
#[argh(subcommand, name = "nodes")]
pub struct NodesCmd {
    #[argh(subcommand)]
    pub cmd: NodesSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum NodesSub {
    Add(NodesAdd),
    Ls(NodesLs),
    Dial(NodesDial),
    Rm(NodesRm),
}

/// Remove a node from the inventory and revoke its identity: it cannot connect again until it
/// joins anew with a new token.
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
pub struct NodesRm {
    /// node name or UUID (as tctl nodes ls shows them)
    #[argh(positional)]
    pub node: String,
}

/// Connect stdin/stdout to a TCP service on a node's loopback, through a proxy and the node's
/// reverse tunnel (usable as an ssh ProxyCommand).
#[derive(FromArgs)]
#[argh(subcommand, name = "dial")]
pub struct NodesDial {
    /// proxy address, HOST:PORT
    #[argh(option)]
    pub proxy: String,
    /// node name or UUID
    #[argh(positional)]
    pub node: String,
    /// address on the node (default 127.0.0.1:22)
    #[argh(positional, default = "String::from(\"127.0.0.1:22\")")]
    pub addr: String,
    /// the node is given as NODE.CLUSTER (ssh's %h under "Host *.CLUSTER"): remove the
    /// cluster name of the identity, once
    #[argh(switch)]
    pub strip_cluster: bool,
}

/// Manage proxies.
#[derive(FromArgs)]
#[argh(subcommand, name = "proxies")]
pub struct ProxiesCmd {
    #[argh(subcommand)]
    pub cmd: ProxiesSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum ProxiesSub {
    Ls(ProxiesLs),
}

/// List online proxies and how many tunnels each holds.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct ProxiesLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    pub format: String,
}

/// Create a token for a new node (same as tokens add).
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
pub struct NodesAdd {
    /// roles of the new service, comma-separated (default node)
    #[argh(option, default = "String::from(\"node\")")]
    pub roles: String,
    /// time to live with a unit, e.g. 5m or 1h (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    pub ttl: String,
    /// output format: text or json; default prints join instructions
    #[argh(option)]
    pub format: Option<String>,
}

/// List online nodes.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct NodesLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    pub format: String,
}

/// Show the cluster's name, version, host CA rotation and CA pins.
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
pub struct StatusCmd {}

/// Print the version.
#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
pub struct VersionCmd {}

/// Manage the cluster's certificates.
#[derive(FromArgs)]
#[argh(subcommand, name = "auth")]
pub struct AuthCmd {
    #[argh(subcommand)]
    pub cmd: AuthSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AuthSub {
    Sign(AuthSign),
    Rotate(AuthRotate),
}

/// Rotate the host CA: automatically over a grace period (default 30h), or phase by phase
/// with --manual --phase=init|update_clients|update_servers|standby|rollback.
#[derive(FromArgs)]
#[argh(subcommand, name = "rotate")]
pub struct AuthRotate {
    /// which CA: host (the only one in this build)
    #[argh(option, long = "type")]
    pub kind: String,
    /// automatic rotation: how long hosts have to renew while both CAs are trusted, e.g.
    /// 30h (default 30h)
    #[argh(option)]
    pub grace_period: Option<String>,
    /// move through the phases by hand, one --phase at a time
    #[argh(switch)]
    pub manual: bool,
    /// with --manual: init, update_clients, update_servers, standby or rollback
    #[argh(option)]
    pub phase: Option<String>,
}

/// Create a short-lived user identity that can dial nodes (tctl nodes dial, ssh) and nothing
/// else.
#[derive(FromArgs)]
#[argh(subcommand, name = "sign")]
pub struct AuthSign {
    /// user name written into the certificate
    #[argh(option)]
    pub user: String,
    /// identity file to write (mode 0600)
    #[argh(option, short = 'o')]
    pub out: PathBuf,
    /// lifetime, e.g. 8h or 90m (default 12h, at most 30h)
    #[argh(option)]
    pub ttl: Option<String>,
    /// output format: file (the only one: key, certificate and CA in one PEM file)
    #[argh(option, default = "String::from(\"file\")")]
    pub format: String,
    /// replace the file if it exists
    #[argh(switch)]
    pub overwrite: bool,
}

/// Print an OpenSSH config block: `ssh root@NODE.CLUSTER` then goes through the proxy.
#[derive(FromArgs)]
#[argh(subcommand, name = "ssh-config")]
pub struct SshConfigCmd {
    /// proxy address, HOST:PORT
    #[argh(option)]
    pub proxy: String,
}

/// Read the audit log of auth: tokens, joins, certificates, locks, removals, rotations.
#[derive(FromArgs)]
#[argh(subcommand, name = "audit")]
pub struct AuditCmd {
    #[argh(subcommand)]
    pub cmd: AuditSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AuditSub {
    Ls(AuditLs),
}

/// List audit events, oldest first.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct AuditLs {
    /// only events since this long ago (e.g. 1h, 30m) or since an RFC 3339 time
    /// (e.g. 2026-11-25T14:30:00Z)
    #[argh(option)]
    pub since: Option<String>,
    /// at most this many events, the newest ones: 1 to 10000 (default 1000)
    #[argh(option, default = "1000")]
    pub limit: u32,
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    pub format: String,
}

/// Remove a resource: node/NAME_OR_UUID, lock/server_id=UUID or lock/user=NAME.
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
pub struct RmCmd {
    /// what to remove, KIND/NAME
    #[argh(positional)]
    pub resource: String,
}

/// Lock a host or a user: its tunnels, streams and dials are closed now, and it cannot
/// connect until unlocked (or the lock expires).
#[derive(FromArgs)]
#[argh(subcommand, name = "lock")]
pub struct LockCmd {
    /// host UUID to lock (see tctl nodes ls)
    #[argh(option)]
    pub server_id: Option<String>,
    /// user name to lock (of a tctl auth sign --user identity)
    #[argh(option)]
    pub user: Option<String>,
    /// what the locked host or user is told
    #[argh(option, default = "String::new()")]
    pub message: String,
    /// how long the lock lasts, e.g. 1h (default: until tctl unlock)
    #[argh(option)]
    pub ttl: Option<String>,
}

/// Manage locks.
#[derive(FromArgs)]
#[argh(subcommand, name = "locks")]
pub struct LocksCmd {
    #[argh(subcommand)]
    pub cmd: LocksSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum LocksSub {
    Ls(LocksLs),
}

/// List locks in force.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct LocksLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    pub format: String,
}

/// Remove the lock on a host or a user.
#[derive(FromArgs)]
#[argh(subcommand, name = "unlock")]
pub struct UnlockCmd {
    /// host UUID of the lock
    #[argh(option)]
    pub server_id: Option<String>,
    /// user name of the lock
    #[argh(option)]
    pub user: Option<String>,
}
