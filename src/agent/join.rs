//! First join: verify the auth server (CA pin, or an explicit --insecure), send token and CSR,
//! store the returned identity. The private key is generated here and never leaves the host.

use std::time::Duration;

use log::{info, warn};
use rustls_pki_types::CertificateDer;

use crate::config::{self, Settings};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::net::{self, Framed};
use crate::pki::ca::new_key_and_csr;
use crate::pki::identity::Identity;
use crate::pki::pin::{self, Pin};
use crate::pki::{certs_from_pem, ROLE_NODE};
use crate::proto::{RegisterRequest, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION};
use crate::rt::{Backoff, Shutdown};
use crate::secret::new_uuid;

/// Joins the cluster; `Ok(None)` if shutdown came first.
pub async fn join(
    settings: &Settings,
    addr: &str,
    shutdown: &Shutdown,
) -> Result<Option<Identity>> {
    let token = settings.token.clone().ok_or_else(|| {
        Error::Config(format!(
            "this node has not joined yet and has no join token: pass --token=TOKEN (or a path \
             to a file holding it) or set teleport.join_params.token_name; create one on the \
             auth server with \"tctl tokens add --type=node\" (no identity found in {})",
            settings.data_dir.display()
        ))
    })?;
    if settings.ca_pins.is_empty() {
        if !settings.insecure {
            return Err(Error::Config(
                "refusing to join without verifying the auth server: set teleport.ca_pin (or \
                 --ca-pin) to the pin printed by \"tctl status\", or pass --insecure to skip \
                 the check (unsafe)"
                    .into(),
            ));
        }
        warn!(
            "INSECURE: joining {addr} without verifying the auth server's identity (--insecure); \
             anyone intercepting this connection can impersonate the cluster"
        );
    }
    let host_id = new_uuid();
    let (key_pem, csr) = new_key_and_csr(&host_id)?;
    let request = RegisterRequest {
        version: PROTOCOL_VERSION,
        token: token.expose().to_string(),
        host_id: host_id.clone(),
        node_name: settings.nodename.clone(),
        role: ROLE_NODE.to_string(),
        csr,
        labels: settings.labels.clone(),
        remote_addr: String::new(),
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let (cert_pem, ca_pems) = loop {
        match attempt(settings, addr, &request).await {
            Ok(x) => break x,
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                warn!(
                    "waiting for the auth server at {addr} to join the cluster: {e}; retrying in \
                     {:.1}s",
                    delay.as_secs_f64()
                );
                if !shutdown.sleep(delay).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    };
    let identity = Identity {
        key_pem,
        cert_pem,
        ca_pems,
    };
    identity.subject()?;
    fsutil::ensure_private_dir(&settings.data_dir)?;
    identity.save(&settings.identity_path())?;
    fsutil::write_atomic(
        &settings.data_dir.join(config::HOST_UUID_FILE),
        format!("{host_id}\n").as_bytes(),
        0o600,
    )?;
    info!(
        "joined the cluster as node {:?} ({host_id}); identity stored in {}",
        settings.nodename,
        settings.identity_path().display()
    );
    Ok(Some(identity))
}

/// Fetches the CA over an unverified connection and checks it against the pins.
async fn fetch_pinned_ca(addr: &str, pins: &[Pin]) -> Result<Vec<CertificateDer<'static>>> {
    let tls = net::connect_tls(addr, net::insecure_client_config()).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&Request::GetCa {
        version: PROTOCOL_VERSION,
    })
    .await
    .map_err(|e| Error::net(addr, e))?;
    let certs = match recv(&mut conn, addr).await? {
        Response::Ca { certs, .. } => certs,
        other => return Err(unexpected(other)),
    };
    let mut ders = Vec::new();
    for pem in &certs {
        ders.extend(certs_from_pem(pem)?);
    }
    let refs: Vec<&[u8]> = ders.iter().map(|d| d.as_ref()).collect();
    pin::check_all(pins, &refs)?;
    Ok(ders)
}

async fn attempt(
    settings: &Settings,
    addr: &str,
    request: &RegisterRequest,
) -> Result<(String, Vec<String>)> {
    let config = if settings.ca_pins.is_empty() {
        net::insecure_client_config()
    } else {
        let cas = fetch_pinned_ca(addr, &settings.ca_pins).await?;
        net::client_config(&cas, None)?
    };
    let tls = net::connect_tls(addr, config).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&Request::Register(request.clone()))
        .await
        .map_err(|e| Error::net(addr, e))?;
    match recv(&mut conn, addr).await? {
        Response::Registered {
            tls, tls_ca_certs, ..
        } => {
            if !settings.ca_pins.is_empty() {
                let mut ders = Vec::new();
                for pem in &tls_ca_certs {
                    ders.extend(certs_from_pem(pem)?);
                }
                let refs: Vec<&[u8]> = ders.iter().map(|d| d.as_ref()).collect();
                pin::check_all(&settings.ca_pins, &refs)?;
            }
            Ok((tls, tls_ca_certs))
        }
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn recv<S>(conn: &mut Framed<S>, addr: &str) -> Result<Response>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    match net::with_timeout(net::CONNECT_TIMEOUT * 2, conn.recv::<Response>()).await {
        Some(Ok(Some(r))) => Ok(r),
        Some(Ok(None)) => Err(Error::net(addr, "the server closed the connection")),
        Some(Err(Error::Protocol(e))) => Err(Error::net(addr, e)),
        Some(Err(e)) => Err(e),
        None => Err(Error::net(addr, "timed out waiting for an answer")),
    }
}

pub(crate) fn unexpected(r: Response) -> Error {
    match r {
        Response::Error { code, message } => Error::remote(code, message),
        other => Error::Protocol(format!("unexpected answer {other:?}")),
    }
}
