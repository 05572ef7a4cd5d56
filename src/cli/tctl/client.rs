//! The RPC client of `tctl`: where auth is, which identity speaks for us, one admin call over
//! mutual TLS; refusals of our certificate become an instruction (see `refusal`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::Cli;
use super::refusal::{refused_or, Refusal, Watched};
use crate::auth::server::admin_identity_path;
use crate::config::{self, FileConfig};
use crate::error::{Error, NetKind, Result};
use crate::net::dial_addr;
use crate::net::{self, Framed};
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::proto::{AdminCmd, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION};

/// How long auth may take to answer one admin command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where auth is and who we are.
pub struct Target {
    pub addr: String,
    pub identity: Identity,
    pub id_path: PathBuf,
}

/// Reads the config (if any) for auth's address and the data dir, then loads the identity.
pub fn target(cli: &Cli) -> Result<Target> {
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

/// The identity for access commands: `-i FILE` as given, else the admin identity of the
/// config's data_dir.
pub fn access_identity(cli: &Cli) -> Result<(Identity, PathBuf)> {
    match &cli.identity {
        Some(p) => Ok((Identity::load(p)?, p.clone())),
        None => {
            let t = target(cli)?;
            Ok((t.identity, t.id_path))
        }
    }
}

/// One admin command to auth, verified as the Auth role, and its answer.
pub fn call(t: &Target, cmd: AdminCmd) -> Result<Response> {
    smol::block_on(async {
        let config =
            verify::client_config(&t.identity.ca_ders()?, Some(&t.identity), ServerRole::Auth)?;
        let tls = net::connect_tls(&t.addr, config)
            .await
            .map_err(|e| match e {
                // Only where a running auth service is the likely fix.
                Error::Net(mut n) if n.is_transient() => {
                    n.hint = Some("is the auth service running?");
                    Error::Net(n)
                }
                other => other,
            })?;
        let mut conn = Framed::new(Watched::new(tls), MAX_RESPONSE_FRAME);
        conn.send(&Request::Admin {
            version: PROTOCOL_VERSION,
            cmd,
        })
        .await
        .map_err(|e| match Refusal::of(&e) {
            Some(r) => r.error(&t.id_path),
            None => Error::net(&t.addr, e),
        })?;
        match net::with_timeout(ANSWER_TIMEOUT, conn.recv::<Response>()).await {
            Some(Ok(Some(Response::Error { code, message }))) => Err(Error::remote(code, message)),
            Some(Ok(Some(r))) => Ok(r),
            Some(Ok(None)) => Err(Error::net(
                &t.addr,
                NetKind::Closed("auth closed the connection"),
            )),
            Some(Err(Error::Wire(w))) => {
                Err(refused_or(w.at(&t.addr).into(), conn.get_ref(), &t.id_path))
            }
            Some(Err(e)) => Err(refused_or(e, conn.get_ref(), &t.id_path)),
            None => Err(Error::net(
                &t.addr,
                NetKind::Timeout("timed out waiting for auth"),
            )),
        }
    })
}

/// An answer of the wrong kind for the command sent.
pub fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected answer from auth: {r:?}"))
}

/// Path helper for tests and docs.
pub fn default_identity(data_dir: &Path) -> PathBuf {
    admin_identity_path(data_dir)
}
