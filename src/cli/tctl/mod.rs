//! `tctl`: the admin CLI. Talks to auth with the admin identity over mutual TLS.
//!
//! `args` is the command line, `client` finds auth and makes one call, `output` turns answers
//! into text (pure), `access` is the user-facing part (`auth sign`, `nodes dial`,
//! `ssh-config`), `refusal` tells why a server refused our certificate, `requests` checks the
//! lifecycle commands (audit, locks, removal, rotation) and builds their requests. This file
//! only validates and dispatches.

mod access;
mod args;
mod client;
mod output;
mod refusal;
mod requests;

use args::{
    AuditCmd, AuditSub, AuthCmd, AuthSub, Cli, LocksCmd, LocksSub, NodesCmd, NodesSub, ProxiesCmd,
    ProxiesLs, ProxiesSub, Sub, TokensCmd, TokensSub,
};
use client::{access_identity, call, target, unexpected, Target};
use output::{check_format, LIST_FORMATS};

pub use client::default_identity;

use crate::clock;
use crate::config;
use crate::error::{Error, Result};
use crate::proto::{AdminCmd, Response};
use requests::{audit_limit, audit_since};

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

/// Checks what can be checked locally, so a typo never costs a connection.
fn check_local(cmd: &Sub) -> Result<()> {
    match cmd {
        Sub::Tokens(TokensCmd {
            cmd: TokensSub::Ls(l),
        }) => check_format(&l.format, &LIST_FORMATS),
        Sub::Nodes(NodesCmd {
            cmd: NodesSub::Ls(l),
        }) => check_format(&l.format, &LIST_FORMATS),
        Sub::Proxies(ProxiesCmd {
            cmd: ProxiesSub::Ls(l),
        }) => check_format(&l.format, &LIST_FORMATS),
        Sub::Auth(AuthCmd {
            cmd: AuthSub::Sign(a),
        }) => access::check_sign(a),
        Sub::Auth(AuthCmd {
            cmd: AuthSub::Rotate(r),
        }) => requests::rotate(r).map(drop),
        Sub::Tokens(TokensCmd {
            cmd: TokensSub::Add(a),
        }) => requests::token_uses(a.uses).map(drop),
        Sub::Audit(AuditCmd {
            cmd: AuditSub::Ls(a),
        }) => {
            check_format(&a.format, &LIST_FORMATS)?;
            audit_limit(a.limit)?;
            audit_since(a.since.as_deref(), 0).map(drop)
        }
        Sub::Locks(LocksCmd {
            cmd: LocksSub::Ls(l),
        }) => check_format(&l.format, &LIST_FORMATS),
        Sub::Lock(l) => requests::lock(l).map(drop),
        Sub::Unlock(u) => {
            requests::lock_target(u.server_id.as_deref(), u.user.as_deref(), "unlock").map(drop)
        }
        Sub::Rm(r) => requests::rm(&r.resource).map(drop),
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> Result<()> {
    check_local(&cli.cmd)?;
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
            TokensSub::Add(a) => add_token(
                &t,
                &a.kind,
                &a.ttl,
                a.labels.as_deref(),
                requests::token_uses(a.uses)?,
                a.format,
            ),
            TokensSub::Ls(l) => match call(&t, AdminCmd::TokensList)? {
                Response::Tokens { tokens } => {
                    show(output::tokens(&tokens, &l.format, clock::now_unix()))
                }
                other => Err(unexpected(other)),
            },
            TokensSub::Rm(r) => {
                let token = crate::secret::Token::new(r.token);
                match call(&t, AdminCmd::TokensRemove { token })? {
                    Response::TokenRemoved { masked } => show(output::token_removed(&masked)),
                    other => Err(unexpected(other)),
                }
            }
        },
        Sub::Nodes(NodesCmd { cmd }) => match cmd {
            NodesSub::Add(a) => add_token(&t, &a.roles, &a.ttl, None, None, a.format),
            NodesSub::Ls(l) => match call(&t, AdminCmd::NodesList)? {
                Response::Nodes { nodes } => show(output::nodes(&nodes, &l.format)),
                other => Err(unexpected(other)),
            },
            NodesSub::Dial(_) => Ok(()),
            NodesSub::Rm(r) => removal(&t, AdminCmd::NodesRemove { node: r.node }),
        },
        Sub::Proxies(ProxiesCmd {
            cmd: ProxiesSub::Ls(ProxiesLs { format }),
        }) => match call(&t, AdminCmd::ProxiesList)? {
            Response::Proxies { proxies } => show(output::proxies(&proxies, &format)),
            other => Err(unexpected(other)),
        },
        Sub::Status(_) => match call(&t, AdminCmd::Status)? {
            Response::Status(s) => show(output::status(&s)),
            other => Err(unexpected(other)),
        },
        Sub::Auth(AuthCmd {
            cmd: AuthSub::Sign(a),
        }) => access::sign(|cmd| call(&t, cmd), &a),
        Sub::Auth(AuthCmd {
            cmd: AuthSub::Rotate(r),
        }) => match call(&t, AdminCmd::Rotate(requests::rotate(&r)?))? {
            Response::Rotation(info) => show(output::rotation(&info)),
            other => Err(unexpected(other)),
        },
        Sub::Audit(AuditCmd {
            cmd: AuditSub::Ls(a),
        }) => {
            let cmd = AdminCmd::AuditList {
                since: audit_since(a.since.as_deref(), clock::now_unix())?,
                limit: audit_limit(a.limit)?,
            };
            match call(&t, cmd)? {
                Response::Audit { events, truncated } => {
                    if truncated {
                        eprintln!("{}", output::AUDIT_TRUNCATED);
                    }
                    show(output::audit(&events, &a.format))
                }
                other => Err(unexpected(other)),
            }
        }
        Sub::Lock(l) => match call(&t, requests::lock(&l)?)? {
            Response::LockCreated(info) => show(output::lock_created(&info)),
            other => Err(unexpected(other)),
        },
        Sub::Locks(LocksCmd {
            cmd: LocksSub::Ls(l),
        }) => match call(&t, AdminCmd::LocksList)? {
            Response::Locks { locks } => show(output::locks(&locks, &l.format)),
            other => Err(unexpected(other)),
        },
        Sub::Unlock(u) => {
            let target =
                requests::lock_target(u.server_id.as_deref(), u.user.as_deref(), "unlock")?;
            removal(&t, AdminCmd::LockDelete { target })
        }
        Sub::Rm(r) => removal(&t, requests::rm(&r.resource)?),
        Sub::Version(_) | Sub::SshConfig(_) => Ok(()),
    }
}

/// `nodes rm`, `unlock` and `rm`: sends the removal, prints what auth removed.
fn removal(t: &Target, cmd: AdminCmd) -> Result<()> {
    match call(t, cmd)? {
        Response::NodeRemoved { hostname, uuid } => show(output::node_removed(&hostname, &uuid)),
        Response::LockDeleted { target } => show(output::lock_deleted(&target)),
        other => Err(unexpected(other)),
    }
}

/// `tokens add` and `nodes add`: checks the flags, asks auth, prints the result.
fn add_token(
    t: &Target,
    kinds: &str,
    ttl: &str,
    labels: Option<&str>,
    uses: Option<u32>,
    format: Option<String>,
) -> Result<()> {
    if let Some(f) = &format {
        check_format(f, &LIST_FORMATS)?;
    }
    let ttl = clock::parse_duration(ttl).map_err(|e| Error::Config(format!("--ttl: {e}")))?;
    if ttl.as_secs() == 0 {
        return Err(Error::Config("--ttl must be at least 1s".into()));
    }
    let roles: Vec<String> = kinds.split(',').map(|s| s.trim().to_string()).collect();
    crate::proto::roles::parse_supported_roles(&roles).map_err(Error::Config)?;
    let labels = labels
        .map(config::parse_labels)
        .transpose()?
        .unwrap_or_default();
    let cmd = AdminCmd::TokensAdd {
        roles,
        ttl_secs: ttl.as_secs(),
        labels,
        uses,
    };
    match call(t, cmd)? {
        Response::TokenCreated(c) => show(output::token_created(&c, format.as_deref())),
        other => Err(unexpected(other)),
    }
}

/// Prints a command's whole output at once.
fn show(text: String) -> Result<()> {
    print!("{text}");
    Ok(())
}
