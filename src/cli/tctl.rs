//! `tctl`: the admin CLI. Talks to auth with the admin identity over mutual TLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;

use super::tctl_access as access;
use crate::auth::server::{admin_identity_path, dial_addr};
use crate::clock;
use crate::config::{self, FileConfig};
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::proto::{
    AdminCmd, ClusterStatus, NodeInfo, Request, Response, TokenInfo, MAX_RESPONSE_FRAME,
    PROTOCOL_VERSION,
};

/// Admin tool for a teleport-lite cluster.
#[derive(FromArgs)]
struct Cli {
    /// config file of the auth server (default /etc/teleport.yaml)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// auth server address, HOST:PORT (default: the config's listen_addr)
    #[argh(option)]
    auth_server: Option<String>,
    /// identity file: the admin's (default DATA_DIR/admin-identity.pem), or a user's from
    /// "tctl auth sign" for nodes dial and ssh-config
    #[argh(option, short = 'i')]
    identity: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Tokens(TokensCmd),
    Nodes(NodesCmd),
    Proxies(ProxiesCmd),
    Status(StatusCmd),
    Version(VersionCmd),
    Auth(access::AuthCmd),
    SshConfig(access::SshConfigCmd),
}

/// Manage join tokens.
#[derive(FromArgs)]
#[argh(subcommand, name = "tokens")]
struct TokensCmd {
    #[argh(subcommand)]
    cmd: TokensSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum TokensSub {
    Add(TokensAdd),
    Ls(TokensLs),
    Rm(TokensRm),
}

/// Create a join token.
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct TokensAdd {
    /// token type(s), comma-separated: app, auth, bot, db, discovery, kube, node, proxy,
    /// windowsdesktop
    #[argh(option, long = "type")]
    kind: String,
    /// time to live, e.g. 5m or 1h (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    ttl: String,
    /// labels of the token, k=v,k2=v2
    #[argh(option)]
    labels: Option<String>,
    /// output format: text (only the token) or json; default prints join instructions
    #[argh(option)]
    format: Option<String>,
}

/// List join tokens (never their secret values).
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct TokensLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
}

/// Delete a join token.
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct TokensRm {
    /// the token value, or its ID from "tctl tokens ls"
    #[argh(positional)]
    token: String,
}

/// Manage nodes.
#[derive(FromArgs)]
#[argh(subcommand, name = "nodes")]
struct NodesCmd {
    #[argh(subcommand)]
    cmd: NodesSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum NodesSub {
    Add(NodesAdd),
    Ls(NodesLs),
    Dial(NodesDial),
}

/// Connect stdin/stdout to a TCP service on a node's loopback, through a proxy and the node's
/// reverse tunnel (usable as an ssh ProxyCommand).
#[derive(FromArgs)]
#[argh(subcommand, name = "dial")]
struct NodesDial {
    /// proxy address, HOST:PORT
    #[argh(option)]
    proxy: String,
    /// node name or UUID
    #[argh(positional)]
    node: String,
    /// address on the node (default 127.0.0.1:22)
    #[argh(positional, default = "String::from(\"127.0.0.1:22\")")]
    addr: String,
    /// the node is given as NODE.CLUSTER (ssh's %h under "Host *.CLUSTER"): remove the
    /// cluster name of the identity, once
    #[argh(switch)]
    strip_cluster: bool,
}

/// Manage proxies.
#[derive(FromArgs)]
#[argh(subcommand, name = "proxies")]
struct ProxiesCmd {
    #[argh(subcommand)]
    cmd: ProxiesSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ProxiesSub {
    Ls(ProxiesLs),
}

/// List online proxies and how many tunnels each holds.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct ProxiesLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
}

/// Create a token for a new node (same as tokens add).
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct NodesAdd {
    /// roles of the new service, comma-separated (default node)
    #[argh(option, default = "String::from(\"node\")")]
    roles: String,
    /// time to live, e.g. 5m or 1h (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    ttl: String,
    /// output format: text or json; default prints join instructions
    #[argh(option)]
    format: Option<String>,
}

/// List online nodes.
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct NodesLs {
    /// output format: text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
}

/// Show the cluster's name, version and CA pin.
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct StatusCmd {}

/// Print the version.
#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
struct VersionCmd {}

/// Options that may appear anywhere on the line, as in Teleport's tctl.
const GLOBAL_OPTS: [&str; 6] = [
    "-c",
    "--config",
    "--auth-server",
    "-i",
    "--identity",
    "--insecure-no-op",
];

fn hoist_globals(args: &[String]) -> Vec<String> {
    let args = crate::cli::split_equals(args);
    let (mut globals, mut rest) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if GLOBAL_OPTS.contains(&a) && i + 1 < args.len() {
            let name = if a == "--config" { "-c" } else { a };
            globals.push(name.to_string());
            globals.push(args[i + 1].clone());
            i += 2;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    globals.extend(rest);
    globals
}

pub fn main(args: &[String]) -> i32 {
    crate::logging::init_cli();
    let cli: Cli = match crate::cli::parse("tctl", &hoist_globals(args)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Sub::Version(_) = cli.cmd {
        println!("{}", crate::cli::teleport::version_line());
        return 0;
    }
    match run(cli) {
        Ok(()) => 0,
        Err(e) => crate::cli::fail(&e),
    }
}

/// Where auth is and who we are.
struct Target {
    addr: String,
    identity: Identity,
    id_path: PathBuf,
}

fn target(cli: &Cli) -> Result<Target> {
    let path = config::locate(cli.config.as_deref());
    let file = match &path {
        Some(p) => config::load_file_config(p)?,
        None => FileConfig::default(),
    };
    let data_dir = file
        .teleport
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    let addr = match &cli.auth_server {
        Some(a) => config::normalize_addr(a, config::DEFAULT_AUTH_PORT, "--auth-server")?,
        None => {
            let listen = file
                .auth_service
                .listen_addr
                .clone()
                .unwrap_or_else(|| config::DEFAULT_AUTH_LISTEN.into());
            let sock = listen.parse().map_err(|_| {
                Error::Config(format!(
                    "auth_service.listen_addr {listen:?} is not an IP:PORT"
                ))
            })?;
            dial_addr(sock)
        }
    };
    let id_path = cli
        .identity
        .clone()
        .unwrap_or_else(|| admin_identity_path(&data_dir));
    if !id_path.exists() {
        return Err(Error::Config(format!(
            "no admin identity at {}: run tctl on the auth server host as the user that runs \
             auth (usually root), point -c at its config, or pass --identity FILE",
            id_path.display()
        )));
    }
    Ok(Target {
        addr,
        identity: Identity::load(&id_path)?,
        id_path,
    })
}

fn call(t: &Target, cmd: AdminCmd) -> Result<Response> {
    smol::block_on(async {
        let config =
            verify::client_config(&t.identity.ca_ders()?, Some(&t.identity), ServerRole::Auth)?;
        let tls = net::connect_tls(&t.addr, config)
            .await
            .map_err(|e| match e {
                Error::Net { addr, detail } => Error::Net {
                    addr,
                    detail: format!("{detail} (is the auth service running?)"),
                },
                other => other,
            })?;
        let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
        conn.send(&Request::Admin {
            version: PROTOCOL_VERSION,
            cmd,
        })
        .await
        .map_err(|e| Error::net(&t.addr, e))?;
        match net::with_timeout(Duration::from_secs(30), conn.recv::<Response>()).await {
            Some(Ok(Some(Response::Error { code, message }))) => Err(Error::remote(code, message)),
            Some(Ok(Some(r))) => Ok(r),
            Some(Ok(None)) => Err(Error::net(&t.addr, "auth closed the connection")),
            Some(Err(e)) => Err(access::explain_refusal(e, &t.id_path)),
            None => Err(Error::net(&t.addr, "timed out waiting for auth")),
        }
    })
}

fn check_format(f: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&f) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "unknown --format {f:?}: use one of {}",
            allowed.join(", ")
        )))
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn run(cli: Cli) -> Result<()> {
    // Validate local input before contacting auth.
    match &cli.cmd {
        Sub::Tokens(TokensCmd {
            cmd: TokensSub::Ls(l),
        }) => check_format(&l.format, &["text", "json"])?,
        Sub::Nodes(NodesCmd {
            cmd: NodesSub::Ls(l),
        }) => check_format(&l.format, &["text", "json"])?,
        Sub::Proxies(ProxiesCmd {
            cmd: ProxiesSub::Ls(l),
        }) => check_format(&l.format, &["text", "json"])?,
        Sub::Auth(access::AuthCmd {
            cmd: access::AuthSub::Sign(a),
        }) => access::check_sign(a)?,
        _ => {}
    }
    // Access needs only an identity (a user's file on a workstation), never auth's config.
    match &cli.cmd {
        Sub::Nodes(NodesCmd {
            cmd: NodesSub::Dial(d),
        }) => {
            let (id, path) = access_identity(&cli)?;
            let node = if d.strip_cluster {
                access::strip_cluster(&d.node, &id.subject()?.cluster)?
            } else {
                d.node.as_str()
            };
            return access::dial(&id, &path, &d.proxy, node, &d.addr);
        }
        Sub::SshConfig(s) => {
            let (id, path) = access_identity(&cli)?;
            return access::ssh_config(&id, &path, &s.proxy);
        }
        _ => {}
    }
    let t = target(&cli)?;
    match cli.cmd {
        Sub::Tokens(TokensCmd { cmd }) => match cmd {
            TokensSub::Add(a) => add_token(&t, &a.kind, &a.ttl, a.labels.as_deref(), a.format),
            TokensSub::Ls(l) => list_tokens(&t, &l.format),
            TokensSub::Rm(r) => match call(
                &t,
                AdminCmd::TokensRemove {
                    token: crate::secret::Token::new(r.token),
                },
            )? {
                Response::TokenRemoved { masked } => {
                    println!("Token {masked} has been deleted");
                    Ok(())
                }
                other => Err(unexpected(other)),
            },
        },
        Sub::Nodes(NodesCmd { cmd }) => match cmd {
            NodesSub::Add(a) => add_token(&t, &a.roles, &a.ttl, None, a.format),
            NodesSub::Ls(l) => list_nodes(&t, &l.format),
            NodesSub::Dial(_) => Ok(()),
        },
        Sub::Proxies(ProxiesCmd {
            cmd: ProxiesSub::Ls(l),
        }) => list_proxies(&t, &l.format),
        Sub::Status(_) => status(&t),
        Sub::Auth(access::AuthCmd {
            cmd: access::AuthSub::Sign(a),
        }) => access::sign(|cmd| call(&t, cmd), &a),
        Sub::Version(_) | Sub::SshConfig(_) => Ok(()),
    }
}

/// The identity for access commands: `-i FILE` as given, else the admin identity of the
/// config's data_dir.
fn access_identity(cli: &Cli) -> Result<(Identity, PathBuf)> {
    match &cli.identity {
        Some(p) => Ok((Identity::load(p)?, p.clone())),
        None => {
            let t = target(cli)?;
            Ok((t.identity, t.id_path))
        }
    }
}

fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected answer from auth: {r:?}"))
}

fn add_token(
    t: &Target,
    kinds: &str,
    ttl: &str,
    labels: Option<&str>,
    format: Option<String>,
) -> Result<()> {
    if let Some(f) = &format {
        check_format(f, &["text", "json"])?;
    }
    let ttl = clock::parse_duration(ttl).map_err(|e| Error::Config(format!("--ttl: {e}")))?;
    if ttl.as_secs() == 0 {
        return Err(Error::Config("--ttl must be at least 1s".into()));
    }
    let roles: Vec<String> = kinds.split(',').map(|s| s.trim().to_string()).collect();
    for r in &roles {
        crate::auth::tokens::TokenRole::parse(r).map_err(Error::Config)?;
    }
    let labels = labels
        .map(config::parse_labels)
        .transpose()?
        .unwrap_or_default();
    let created = match call(
        t,
        AdminCmd::TokensAdd {
            roles,
            ttl_secs: ttl.as_secs(),
            labels,
        },
    )? {
        Response::TokenCreated(c) => c,
        other => return Err(unexpected(other)),
    };
    match format.as_deref() {
        Some("text") => println!("{}", created.token.expose()),
        Some(_) => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                token: &'a str,
                roles: &'a [String],
                expires: &'a str,
            }
            println!(
                "{}",
                json(&Out {
                    token: created.token.expose(),
                    roles: &created.roles,
                    expires: &created.expires,
                })
            );
        }
        None => print!("{}", super::instructions::join_instructions(&created)),
    }
    Ok(())
}

fn list_tokens(t: &Target, format: &str) -> Result<()> {
    let tokens = match call(t, AdminCmd::TokensList)? {
        Response::Tokens { tokens } => tokens,
        other => return Err(unexpected(other)),
    };
    if format == "json" {
        println!("{}", json(&tokens));
        return Ok(());
    }
    if tokens.is_empty() {
        println!("No active tokens found.");
        return Ok(());
    }
    let now = clock::now_unix();
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|tk: &TokenInfo| {
            let expiry = match tk.expires {
                Some(e) => format!("{} ({})", clock::rfc822(e), clock::compact(e - now)),
                None => "never".into(),
            };
            vec![
                tk.masked.clone(),
                tk.roles.join(","),
                labels_text(&tk.labels),
                expiry,
                tk.id.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::cli::table(
            &["Token", "Type", "Labels", "Expiry Time (UTC)", "ID"],
            &rows
        )
    );
    Ok(())
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn list_nodes(t: &Target, format: &str) -> Result<()> {
    let nodes = match call(t, AdminCmd::NodesList)? {
        Response::Nodes { nodes } => nodes,
        other => return Err(unexpected(other)),
    };
    if format == "json" {
        println!("{}", json(&nodes));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n: &NodeInfo| {
            vec![
                n.hostname.clone(),
                n.uuid.clone(),
                n.addr.clone(),
                labels_text(&n.labels),
                n.version.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::cli::table(
            &["Host", "UUID", "Public Address", "Labels", "Version"],
            &rows
        )
    );
    Ok(())
}

fn list_proxies(t: &Target, format: &str) -> Result<()> {
    let proxies = match call(t, AdminCmd::ProxiesList)? {
        Response::Proxies { proxies } => proxies,
        other => return Err(unexpected(other)),
    };
    if format == "json" {
        println!("{}", json(&proxies));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.uuid.clone(),
                p.addr.clone(),
                p.tunnels.to_string(),
                p.version.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::cli::table(
            &["Host", "UUID", "Public Address", "Tunnels", "Version"],
            &rows
        )
    );
    Ok(())
}

fn status(t: &Target) -> Result<()> {
    let s: ClusterStatus = match call(t, AdminCmd::Status)? {
        Response::Status(s) => s,
        other => return Err(unexpected(other)),
    };
    let mut rows = vec![
        ("Cluster", s.cluster_name.clone()),
        ("Version", s.version.clone()),
        ("host CA", s.host_ca_rotation.clone()),
        ("Nodes", s.nodes_online.to_string()),
    ];
    rows.extend(s.ca_pins.iter().map(|p| ("CA pin", p.clone())));
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!(
            "{k:<w$}  {}",
            crate::cli::printable(&v, crate::cli::MAX_CELL)
        );
    }
    Ok(())
}

/// Path helper for tests and docs.
pub fn default_identity(data_dir: &Path) -> PathBuf {
    admin_identity_path(data_dir)
}
