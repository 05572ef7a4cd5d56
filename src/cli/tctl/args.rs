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

/// Show the cluster's name, version and CA pin.
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
