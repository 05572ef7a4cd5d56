//! First join: verify the cluster (CA pin, the system roots for a proxy, or an explicit
//! --insecure), send token and CSR, store the returned identity. The private key is generated
//! here and never leaves the host. Used by nodes and by proxies.

pub mod datadir;
pub mod renew;
pub mod servers;

// The framed-exchange helpers and the web paths, re-exported for older callers.
pub use crate::net::rpc::{recv, unexpected};
pub use crate::proto::names::{CREDENTIALS_PATH, EXPORT_PATH};
pub use renew::check_not_expired;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;

use crate::config::{self, Settings};
use crate::core::Backoff;
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::ca::new_key_and_csr;
use crate::pki::certs_from_pem;
use crate::pki::identity::Identity;
use crate::pki::pin::{self, Pin};
use crate::pki::verify::{self, ServerRole};
use crate::proto::PROXY_SERVER_NAME;
use crate::proto::{
    ErrorCode, RegisterRequest, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};
use crate::rt::Shutdown;
use crate::{fsutil, http};

/// Where the join request goes.
#[derive(Debug, Clone)]
pub enum Via {
    /// Straight to auth on 3025 (our framed protocol).
    Auth(String),
    /// Through a proxy's web API, `POST /v1/webapi/host/credentials`.
    Proxy(String),
}

impl Via {
    fn addr(&self) -> &str {
        match self {
            Via::Auth(a) | Via::Proxy(a) => a,
        }
    }
}

/// What is joining.
pub struct JoinSpec {
    /// Certificate role: "Node" or "Proxy".
    pub role: &'static str,
    pub identity_path: PathBuf,
    pub dns_names: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Joins the cluster; `Ok(None)` if shutdown came first.
pub async fn join(
    settings: &Settings,
    spec: &JoinSpec,
    via: &Via,
    shutdown: &Shutdown,
) -> Result<Option<Identity>> {
    let flag = spec.role.to_ascii_lowercase();
    let token = settings.token.clone().ok_or_else(|| {
        Error::Config(format!(
            "this host has not joined yet and has no join token: pass --token=TOKEN (or a path \
             to a file holding it) or set teleport.join_params.token_name; create one on the \
             auth server with \"tctl tokens add --type={flag}\" (no identity found at {})",
            spec.identity_path.display()
        ))
    })?;
    let addr = via.addr();
    if settings.ca_pins.is_empty() {
        match via {
            Via::Auth(_) if !settings.insecure => {
                return Err(Error::Config(
                    "refusing to join without verifying the auth server: set teleport.ca_pin \
                     (or --ca-pin) to the pin printed by \"tctl status\", or pass --insecure to \
                     skip the check (unsafe)"
                        .into(),
                ))
            }
            _ if settings.insecure => warn!(
                "INSECURE: joining {addr} without verifying the server's identity (--insecure); \
                 anyone intercepting this connection can impersonate the cluster"
            ),
            _ => {}
        }
    }
    // Before the token leaves this host: the identity must be storable.
    let data_dir = settings.data_dir.clone();
    smol::unblock(move || datadir::check_writable(&data_dir)).await?;
    // Auth assigns the host ID; the CSR only carries the public key.
    let (key_pem, csr) = new_key_and_csr("joining-host")?;
    let request = RegisterRequest {
        version: PROTOCOL_VERSION,
        token: token.expose().to_string(),
        host_id: String::new(),
        node_name: settings.nodename.clone(),
        role: spec.role.to_string(),
        csr,
        labels: spec.labels.clone(),
        remote_addr: String::new(),
        dns_names: spec.dns_names.clone(),
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let started = std::time::Instant::now();
    let (cert_pem, ca_pems) = loop {
        let result = match via {
            Via::Auth(a) => via_auth(settings, a, &request).await,
            Via::Proxy(p) => via_proxy(settings, p, &request).await,
        };
        match result {
            Ok(x) => break x,
            Err(e) if e.is_transient() => {
                crate::metrics::METRICS.join_failed(&e);
                let delay = backoff.next_delay();
                let what = match via {
                    Via::Auth(_) => "auth server",
                    Via::Proxy(_) => "proxy",
                };
                crate::diag::not_ready_because(format!("joining through {what} {addr}: {e}"));
                warn!(
                    "waiting for the {what} at {addr} to join the cluster: {e}; retrying in \
                     {:.1}s",
                    delay.as_secs_f64()
                );
                if !shutdown.sleep(delay).await {
                    return Ok(None);
                }
            }
            Err(e) => {
                crate::metrics::METRICS.join_failed(&e);
                return Err(e);
            }
        }
    };
    let identity = Identity {
        key_pem,
        cert_pem,
        ca_pems,
    };
    let subject = identity.subject()?;
    let host_id = subject.host_id;
    if !crate::secret::is_uuid(&host_id) || subject.role != spec.role {
        return Err(Error::Protocol(format!(
            "the join answer from {addr} holds a certificate for {:?} as {:?}, not a new {} \
             identity",
            host_id, subject.role, spec.role
        )));
    }
    crate::metrics::METRICS.join_duration_ms.store(
        started.elapsed().as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    // fsync waits on the disk: off the executor.
    let (data_dir, path, saved) = (
        settings.data_dir.clone(),
        spec.identity_path.clone(),
        identity.clone(),
    );
    let id = host_id.clone();
    smol::unblock(move || -> Result<()> {
        fsutil::ensure_private_dir(&data_dir)?;
        saved.save(&path)?;
        fsutil::write_atomic(
            &data_dir.join(config::HOST_UUID_FILE),
            format!("{id}\n").as_bytes(),
            0o600,
        )
    })
    .await?;
    info!(
        "joined the cluster as {} {:?} ({host_id}) through {addr}; identity stored in {}",
        spec.role,
        settings.nodename,
        spec.identity_path.display()
    );
    Ok(Some(identity))
}

fn check_pins(pins: &[Pin], pems: &[String]) -> Result<Vec<CertificateDer<'static>>> {
    let mut ders = Vec::new();
    for pem in pems {
        ders.extend(certs_from_pem(pem)?);
    }
    let refs: Vec<&[u8]> = ders.iter().map(|d| d.as_ref()).collect();
    pin::check_all(pins, &refs)?;
    Ok(ders)
}

/// Fetches auth's CA over an unverified connection and checks it against the pins.
async fn fetch_pinned_ca(addr: &str, pins: &[Pin]) -> Result<Vec<CertificateDer<'static>>> {
    let tls = net::connect_tls(addr, net::insecure_client_config()).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&Request::GetCa {
        version: PROTOCOL_VERSION,
    })
    .await
    .map_err(|e| Error::net(addr, e))?;
    match recv(&mut conn, addr).await? {
        Response::Ca { certs, .. } => check_pins(pins, &certs),
        other => Err(unexpected(other)),
    }
}

async fn via_auth(
    settings: &Settings,
    addr: &str,
    request: &RegisterRequest,
) -> Result<(String, Vec<String>)> {
    let config = if settings.ca_pins.is_empty() {
        net::insecure_client_config()
    } else {
        let cas = fetch_pinned_ca(addr, &settings.ca_pins).await?;
        verify::client_config(&cas, None, ServerRole::Auth)?
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
                check_pins(&settings.ca_pins, &tls_ca_certs)?;
            }
            Ok((tls, tls_ca_certs))
        }
        other => Err(unexpected(other)),
    }
}

/// One HTTPS call to the proxy's web API.
async fn https(
    addr: &str,
    config: Arc<ClientConfig>,
    server_name: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<http::Response> {
    let config = net::with_alpn(&config, &[b"http/1.1"]);
    let host = net::host_of(addr);
    let mut tls = net::connect_tls_as(addr, config, server_name.unwrap_or(host))
        .await
        .map_err(|e| match e {
            Error::Net(n) if n.is_untrusted_server() => Error::Pki(format!(
            "the proxy's certificate at {addr} is not trusted: it chains neither to the system \
             roots ($SSL_CERT_FILE or the OS bundle) nor to the pinned cluster CA ({detail}); set \
             ca_pin to the pin printed by \"tctl status\", or give the proxy a certificate your \
             hosts trust",
            detail = match n.tls() {
                Some(rustls::Error::InvalidCertificate(c)) => format!("{c:?}"),
                _ => n.to_string(),
            }
        )),
            other => other,
        })?;
    let fut = http::roundtrip(&mut tls, method, host, path, body);
    match net::with_timeout(Duration::from_secs(30), fut).await {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(Error::net(addr, e)),
        None => Err(Error::net(
            addr,
            crate::error::NetKind::Timeout("timed out waiting for the proxy"),
        )),
    }
}

/// The JSON error body the proxy sends: `{"error": {"message": ...}, "code": ...}`.
fn http_error(addr: &str, r: &http::Response) -> Error {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {} from {addr}", r.status));
    let code = match r.status {
        403 => ErrorCode::AccessDenied,
        400 => ErrorCode::BadParameter,
        404 => ErrorCode::NotFound,
        429 => ErrorCode::RateLimited,
        502 | 503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    Error::remote(code, message)
}

async fn via_proxy(
    settings: &Settings,
    addr: &str,
    request: &RegisterRequest,
) -> Result<(String, Vec<String>)> {
    let config = if !settings.ca_pins.is_empty() {
        let r = https(
            addr,
            net::insecure_client_config(),
            Some(PROXY_SERVER_NAME),
            "GET",
            EXPORT_PATH,
            None,
        )
        .await?;
        if r.status != 200 {
            return Err(http_error(addr, &r));
        }
        let pem = String::from_utf8_lossy(&r.body).to_string();
        let cas = check_pins(&settings.ca_pins, &[pem])?;
        // Pinned: the relay must prove it is a proxy of the pinned cluster (its cluster
        // certificate, asked for by the proxy server name) before it sees the token.
        (
            verify::client_config(&cas, None, ServerRole::Proxy)?,
            Some(PROXY_SERVER_NAME),
        )
    } else if settings.insecure {
        (net::insecure_client_config(), None)
    } else {
        (net::client_config_lenient(&net::system_roots())?, None)
    };
    let (config, server_name) = config;
    let body = serde_json::to_vec(request).map_err(|e| Error::Protocol(e.to_string()))?;
    let r = https(
        addr,
        config,
        server_name,
        "POST",
        CREDENTIALS_PATH,
        Some(&body),
    )
    .await?;
    if r.status != 200 {
        return Err(http_error(addr, &r));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| Error::Protocol(format!("bad join answer from {addr}: {e}")))?;
    let tls = v["tls"].as_str().unwrap_or_default().to_string();
    let cas: Vec<String> = v["tls_ca_certs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if tls.is_empty() || cas.is_empty() {
        return Err(Error::Protocol(format!(
            "the join answer from {addr} holds no certificate"
        )));
    }
    if !settings.ca_pins.is_empty() {
        check_pins(&settings.ca_pins, &cas)?;
    }
    Ok((tls, cas))
}
