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
        (_, "/webapi/find") | (_, "/webapi/host/credentials") | (_, "/webapi/auth/export") => {
            (405, "application/json", error_body("method not allowed"))
        }
        _ => (404, "application/json", error_body("not found")),
    };
    debug!("{} {} from {peer}: {status}", req.method, req.path);
    let _ = http::write_response(&mut tls, status, ctype, &body).await;
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
    match ask_auth(state, req).await {
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

async fn ask_auth(state: &ProxyState, req: RegisterRequest) -> crate::error::Result<Response> {
    let config = net::client_config(&state.identity.ca_ders()?, Some(&state.identity))?;
    let tls = net::connect_tls(&state.auth_addr, config).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&Request::Register(req))
        .await
        .map_err(|e| crate::error::Error::net(&state.auth_addr, e))?;
    crate::agent::join::recv(&mut conn, &state.auth_addr).await
}
