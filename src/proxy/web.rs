//! The proxy's web API on ALPN `http/1.1`: `/webapi/find`, the join relay
//! `/webapi/host/credentials`, and the CA export used by agents that pin the cluster CA. Every
//! path is also served under `/v1`.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_rustls::server::TlsStream;
use log::{debug, info, warn};
use serde_json::json;
use smol::net::TcpStream;

use super::ProxyState;
use crate::http::{self, ParseError};
use crate::net::{self, Framed};
use crate::proto::{ErrorCode, RegisterRequest, Request, Response, MAX_RESPONSE_FRAME};
use crate::VERSION;

pub async fn serve(mut tls: TlsStream<TcpStream>, peer: SocketAddr, state: Arc<ProxyState>) {
    let req = match net::with_timeout(
        std::time::Duration::from_secs(10),
        http::read_request(&mut tls),
    )
    .await
    {
        Some(Ok(r)) => r,
        Some(Err(ParseError::Bad(why))) => {
            warn!("rejected a request from {peer}: {why}");
            let body = error_body(why);
            let _ = http::write_response(&mut tls, 400, "application/json", &body).await;
            return;
        }
        Some(Err(ParseError::Incomplete)) | None => return,
    };
    let path = req
        .path
        .strip_prefix("/v1")
        .unwrap_or(&req.path)
        .to_string();
    let (status, ctype, body) = match (req.method.as_str(), path.as_str()) {
        ("GET", "/webapi/find") | ("GET", "/webapi/ping") => {
            (200, "application/json", find(&state))
        }
        ("GET", "/webapi/auth/export") => export(&state, &req.query),
        ("POST", "/webapi/host/credentials") => credentials(&state, peer, &req.body).await,
        ("GET", "/scripts/install.sh") => install_script(&state, "").await,
        ("GET", p) if p.starts_with("/scripts/") && p.ends_with("/install-node.sh") => {
            let token = &p["/scripts/".len()..p.len() - "/install-node.sh".len()];
            install_script(&state, token).await
        }
        ("GET", "/webapi/systemd/teleport.service") => {
            (200, "text/plain", SYSTEMD_UNIT.as_bytes().to_vec())
        }
        ("GET", p) if p == format!("/webapi/binary/teleport-linux-{}", arch()) => {
            match own_binary() {
                Some((bytes, _)) => (200, "application/octet-stream", bytes.clone()),
                None => (
                    500,
                    "application/json",
                    error_body("the proxy cannot read its own executable"),
                ),
            }
        }
        (_, "/webapi/find") | (_, "/webapi/host/credentials") | (_, "/webapi/auth/export") => {
            (405, "application/json", error_body("method not allowed"))
        }
        _ => (404, "application/json", error_body("not found")),
    };
    debug!("{} {} from {peer}: {status}", req.method, req.path);
    let _ = http::write_response(&mut tls, status, ctype, &body).await;
}

const INSTALL_TEMPLATE: &str = include_str!("../../packaging/install.sh");
const SYSTEMD_UNIT: &str = include_str!("../../systemd/teleport.service");

/// The architecture name of this executable as the install script spells it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// This executable's bytes and SHA-256, read once: the proxy installs its own agent.
fn own_binary() -> Option<&'static (Vec<u8>, String)> {
    static BIN: std::sync::OnceLock<Option<(Vec<u8>, String)>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let bytes = std::fs::read("/proc/self/exe").ok()?;
        let sum = crate::secret::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        Some((bytes, sum))
    })
    .as_ref()
}

/// A script that only prints an error: `curl ... | sudo bash` shows it and fails.
fn failing_script(message: &str) -> Vec<u8> {
    let safe: String = message
        .chars()
        .map(|c| if c == '\'' { ' ' } else { c })
        .collect();
    format!("#!/bin/sh\necho 'ERROR: {safe}' >&2\nexit 1\n").into_bytes()
}

/// `/scripts/install.sh` (no token) or `/scripts/TOKEN/install-node.sh`. The token is checked
/// with auth first, so an unknown or expired one fails before anything is installed.
async fn install_script(state: &Arc<ProxyState>, token: &str) -> (u16, &'static str, Vec<u8>) {
    const SH: &str = "text/x-shellscript";
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || token.len() > 128
    {
        return (400, SH, failing_script("malformed token in the URL"));
    }
    let Some((_, sha256)) = own_binary() else {
        return (
            500,
            SH,
            failing_script("the proxy cannot read its own executable"),
        );
    };
    let proxy = &state.public_addr;
    if !proxy
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
    {
        return (
            500,
            SH,
            failing_script("the proxy's public_addr cannot be used in a script"),
        );
    }
    let mut pins = String::new();
    if !token.is_empty() {
        let check = Request::CheckToken {
            version: crate::proto::PROTOCOL_VERSION,
            token: token.to_string(),
            role: "node".into(),
            remote_addr: String::new(),
        };
        match ask_auth(state, check).await {
            Ok(Response::TokenOk) => {}
            Ok(Response::Error { message, .. }) => {
                return (
                    200,
                    SH,
                    failing_script(&format!("{message}; nothing was installed")),
                )
            }
            Ok(other) => {
                return (
                    502,
                    SH,
                    failing_script(&format!("unexpected answer from auth: {other:?}")),
                )
            }
            Err(e) => {
                return (
                    502,
                    SH,
                    failing_script(&format!("the proxy cannot reach auth: {e}")),
                )
            }
        }
        let ders = state.identity.ca_ders().unwrap_or_default();
        pins = ders
            .iter()
            .filter_map(|d| crate::pki::pin::Pin::of_cert(d).ok())
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
    }
    let script = INSTALL_TEMPLATE
        .replace("{{PROXY}}", proxy)
        .replace("{{VERSION}}", VERSION)
        .replace("{{SHA256}}", sha256)
        .replace("{{ARCH}}", arch())
        .replace("{{TOKEN}}", token)
        .replace("{{CA_PINS}}", &pins);
    (200, SH, script.into_bytes())
}

fn error_body(message: &str) -> Vec<u8> {
    json!({ "error": { "message": message } })
        .to_string()
        .into_bytes()
}

/// Field names as in Teleport's `PingResponse`.
fn find(state: &ProxyState) -> Vec<u8> {
    json!({
        "auth": { "type": "local", "signature_algorithm_suite": "" },
        "proxy": {
            "tls_routing_enabled": true,
            "ssh": {
                "listen_addr": state.web_listen_addr.to_string(),
                "tunnel_listen_addr": state.web_listen_addr.to_string(),
                "web_listen_addr": state.web_listen_addr.to_string(),
                "public_addr": state.public_addr,
                "tunnel_public_addr": state.public_addr,
            },
        },
        "server_version": VERSION,
        "min_client_version": VERSION,
        "cluster_name": state.cluster_name,
        "automatic_upgrades": false,
        "edition": "community",
        "fips": false,
    })
    .to_string()
    .into_bytes()
}

fn export(state: &ProxyState, query: &str) -> (u16, &'static str, Vec<u8>) {
    if !query.split('&').any(|kv| kv == "type=tls-host") {
        return (
            400,
            "application/json",
            error_body("only type=tls-host is exported"),
        );
    }
    let pem: String = state.identity.ca_pems.concat();
    (200, "application/x-pem-file", pem.into_bytes())
}

fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::AccessDenied => 403,
        ErrorCode::BadParameter | ErrorCode::VersionMismatch => 400,
        ErrorCode::NotFound => 404,
        ErrorCode::RateLimited => 429,
        ErrorCode::Unavailable => 502,
        ErrorCode::Internal => 500,
    }
}

/// The join relay: checks the per-source limit, adds the caller's address, asks auth.
async fn credentials(
    state: &Arc<ProxyState>,
    peer: SocketAddr,
    body: &[u8],
) -> (u16, &'static str, Vec<u8>) {
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(peer.ip(), state.now_ms());
    if !allowed {
        warn!("rate limit exceeded for join requests from {peer}");
        return (
            429,
            "application/json",
            error_body("too many join requests from this address: wait a minute and retry"),
        );
    }
    let mut req: RegisterRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                400,
                "application/json",
                error_body(&format!("malformed join request: {e}")),
            )
        }
    };
    req.remote_addr = peer.ip().to_string();
    let node_name = req.node_name.clone();
    match ask_auth(state, Request::Register(req)).await {
        Ok(Response::Registered {
            tls, tls_ca_certs, ..
        }) => {
            info!("relayed the join of {node_name:?} from {peer}");
            let body = json!({ "tls": tls, "tls_ca_certs": tls_ca_certs }).to_string();
            (200, "application/json", body.into_bytes())
        }
        Ok(Response::Error { code, message }) => {
            (status_of(code), "application/json", error_body(&message))
        }
        Ok(other) => (
            502,
            "application/json",
            error_body(&format!("unexpected answer from auth: {other:?}")),
        ),
        Err(e) => (
            502,
            "application/json",
            error_body(&format!("the proxy cannot reach auth: {e}")),
        ),
    }
}

async fn ask_auth(state: &ProxyState, req: Request) -> crate::error::Result<Response> {
    let config = net::client_config(&state.identity.ca_ders()?, Some(&state.identity))?;
    let tls = net::connect_tls(&state.auth_addr, config).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&req)
        .await
        .map_err(|e| crate::error::Error::net(&state.auth_addr, e))?;
    crate::agent::join::recv(&mut conn, &state.auth_addr).await
}
