//! The proxy's web API on ALPN `http/1.1`: `/webapi/find`, the join relay
//! `/webapi/host/credentials`, the CA export used by agents that pin the cluster CA, and the
//! install endpoints. Every path is also served under `/v1`. One request per connection, read
//! within 10 s; responses are written in chunks with deadlines (see `http`).

pub mod install;
pub mod route;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use serde_json::json;

use super::ProxyState;
use crate::http::{self, ParseError};
use crate::net::{self, Framed};
use crate::proto::{ErrorCode, RegisterRequest, Request, Response, MAX_RESPONSE_FRAME};
use crate::VERSION;
pub use route::{loggable_path, route, Route};

/// Time allowed to receive a whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a download of the executable may take (at least ~5 KiB/s for a 4 MB executable);
/// a reader that stops reading is dropped after `http::WRITE_STALL` already.
const DOWNLOAD_TOTAL: Duration = Duration::from_secs(15 * 60);
/// Encrypted bytes a connection may hold unsent (rustls' default is 64 KiB): with stalled
/// readers, this is most of what each one costs.
const TLS_SEND_BUFFER: usize = 32 * 1024;

/// An answer: status, content type, body, and how long writing it may take.
pub struct Reply {
    pub status: u16,
    pub ctype: &'static str,
    pub body: Cow<'static, [u8]>,
    pub total: Duration,
}

impl Reply {
    pub fn new(status: u16, ctype: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            ctype,
            body: Cow::Owned(body),
            total: http::WRITE_TOTAL,
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::new(status, "application/json", error_body(message))
    }
}

pub async fn serve(mut tls: crate::net::ServerTls, peer: SocketAddr, state: Arc<ProxyState>) {
    tls.set_send_limit(TLS_SEND_BUFFER);
    let req = match net::with_timeout(READ_TIMEOUT, http::read_request(&mut tls)).await {
        Some(Ok(r)) => r,
        Some(Err(ParseError::Bad(why))) => {
            warn!("rejected a request from {peer}: {why}");
            let _ = http::write_response(&mut tls, 400, "application/json", &error_body(why)).await;
            return;
        }
        Some(Err(ParseError::Incomplete)) | None => return,
    };
    let reply = answer(&state, peer, &req).await;
    let method = match req.method.as_str() {
        m @ ("GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "PATCH") => m,
        _ => "(other method)",
    };
    debug!(
        "{method} {} from {peer}: {}",
        loggable_path(&req.path),
        reply.status
    );
    let written = http::write_response_within(
        &mut tls,
        reply.status,
        reply.ctype,
        &reply.body,
        http::WRITE_STALL,
        reply.total,
    )
    .await;
    if let Err(e) = written {
        debug!("response to {peer} not completed: {e}");
    }
}

async fn answer(state: &Arc<ProxyState>, peer: SocketAddr, req: &http::Request) -> Reply {
    match route(&req.method, &req.path) {
        Route::Find => Reply::new(200, "application/json", find(state)),
        Route::Export => export(state, &req.query),
        Route::Credentials => credentials(state, peer, &req.body).await,
        Route::InstallScript => install::script(state, None, peer).await,
        Route::InstallNode(token) => {
            if allowed(state, peer) {
                install::script(state, Some(token), peer).await
            } else {
                warn!("rate limit exceeded for install requests with a token from {peer}");
                Reply::new(
                    429,
                    "text/x-shellscript",
                    install::failing_script(install::TOO_MANY),
                )
            }
        }
        Route::SystemdUnit => Reply {
            body: Cow::Borrowed(install::SYSTEMD_UNIT.as_bytes()),
            ..Reply::new(200, "text/plain", Vec::new())
        },
        Route::Binary => match install::executable().await {
            Some(exe) => Reply {
                status: 200,
                ctype: "application/octet-stream",
                body: Cow::Borrowed(exe.bytes.as_slice()),
                total: DOWNLOAD_TOTAL,
            },
            None => Reply::error(500, "the proxy cannot read its own executable"),
        },
        Route::MethodNotAllowed => Reply::error(405, "method not allowed"),
        Route::NotFound => Reply::error(404, "not found"),
    }
}

/// Takes one attempt from the caller's bucket of the per-source limiter (install token
/// checks; joins use `begin_join`, see `core::limiter`).
fn allowed(state: &ProxyState, peer: SocketAddr) -> bool {
    limiter(state).allow(peer.ip(), state.now_ms())
}

fn limiter(state: &ProxyState) -> std::sync::MutexGuard<'_, crate::core::limiter::Limiter> {
    state.limiter.lock().unwrap_or_else(|p| p.into_inner())
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

fn export(state: &ProxyState, query: &str) -> Reply {
    if !query.split('&').any(|kv| kv == "type=tls-host") {
        return Reply::error(400, "only type=tls-host is exported");
    }
    let pem: String = state.identity().ca_pems.concat();
    Reply::new(200, "application/x-pem-file", pem.into_bytes())
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

/// The join relay: checks the per-source limit (a join attempt, given back when it
/// succeeds), adds the caller's address, asks auth.
async fn credentials(state: &Arc<ProxyState>, peer: SocketAddr, body: &[u8]) -> Reply {
    if !limiter(state).begin_join(peer.ip(), state.now_ms()) {
        warn!("rate limit exceeded for join requests from {peer}");
        return Reply::error(
            429,
            "too many join requests from this address: wait a minute and retry",
        );
    }
    let mut req: RegisterRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(400, &format!("malformed join request: {e}")),
    };
    req.remote_addr = peer.ip().to_canonical().to_string();
    let node_name = req.node_name.clone();
    match ask_auth(state, Request::Register(req)).await {
        Ok(Response::Registered {
            tls, tls_ca_certs, ..
        }) => {
            limiter(state).join_succeeded(peer.ip());
            info!("relayed the join of {node_name:?} from {peer}");
            let body = json!({ "tls": tls, "tls_ca_certs": tls_ca_certs }).to_string();
            Reply::new(200, "application/json", body.into_bytes())
        }
        Ok(Response::Error { code, message }) => Reply::error(status_of(code), &message),
        Ok(_) => Reply::error(502, "unexpected answer from auth"),
        Err(e) => Reply::error(502, &format!("the proxy cannot reach auth: {e}")),
    }
}

async fn ask_auth(state: &ProxyState, req: Request) -> crate::error::Result<Response> {
    let identity = state.identity();
    let config = crate::pki::verify::client_config(
        &identity.ca_ders()?,
        Some(&identity),
        crate::pki::verify::ServerRole::Auth,
    )?;
    let addr = state.auth.current().to_owned();
    let tls = net::connect_tls(&addr, config).await?;
    let mut conn = Framed::new(tls, MAX_RESPONSE_FRAME);
    conn.send(&req)
        .await
        .map_err(|e| crate::error::Error::net(&addr, e))?;
    crate::net::rpc::recv(&mut conn, &addr).await
}
