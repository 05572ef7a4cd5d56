//! Install endpoints: `/scripts/install.sh`, `/scripts/TOKEN/install-node.sh`, the systemd unit
//! and this executable itself, which is read and hashed once and then served to every
//! download from that one copy.

use std::net::SocketAddr;
use std::sync::Arc;

use log::{debug, warn};

use super::{ask_auth, Reply};
use crate::proto::{ErrorCode, Request, Response};
use crate::proxy::ProxyState;
use crate::VERSION;

const INSTALL_TEMPLATE: &str = include_str!("../../../packaging/install.sh");
pub const SYSTEMD_UNIT: &str = include_str!("../../../systemd/teleport.service");
const SH: &str = "text/x-shellscript";

/// The one answer for a token that cannot join as a node, whatever the reason: an anonymous
/// caller learns neither whether it exists nor its type or expiry.
pub const NOT_VALID: &str = "the token is not valid (unknown, expired, or not a node token): \
                             create a new one with tctl tokens add --type=node; nothing was \
                             installed";
pub const TOO_MANY: &str = "too many install requests with a token from this address: wait a \
                            minute and retry; nothing was installed";

/// This executable and its SHA-256 (hex).
pub struct Executable {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

static EXECUTABLE: smol::lock::OnceCell<Option<Executable>> = smol::lock::OnceCell::new();

/// This executable, read from `/proc/self/exe` and hashed on first use off the executor;
/// every later caller shares that copy. `None` if it cannot be read.
pub async fn executable() -> Option<&'static Executable> {
    EXECUTABLE
        .get_or_init(|| smol::unblock(read_executable))
        .await
        .as_ref()
}

fn read_executable() -> Option<Executable> {
    let bytes = match std::fs::read("/proc/self/exe") {
        Ok(b) => b,
        Err(e) => {
            warn!("cannot read this executable to serve it to installers: {e}");
            return None;
        }
    };
    let sha256 = crate::secret::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    Some(Executable { bytes, sha256 })
}

/// A script that only prints an error: `curl ... | sudo bash` shows it and fails.
pub fn failing_script(message: &str) -> Vec<u8> {
    let safe: String = message
        .chars()
        .map(|c| if c == '\'' { ' ' } else { c })
        .collect();
    format!("#!/bin/sh\necho 'ERROR: {safe}' >&2\nexit 1\n").into_bytes()
}

fn failing(status: u16, message: &str) -> Reply {
    Reply::new(status, SH, failing_script(message))
}

/// `/scripts/install.sh` (`token` None) or `/scripts/TOKEN/install-node.sh`. A token is
/// checked with auth first, so one that cannot join fails before anything is installed. The
/// caller has charged the per-source limiter already.
pub async fn script(state: &Arc<ProxyState>, token: Option<&str>, peer: SocketAddr) -> Reply {
    if let Some(t) = token {
        if t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return failing(400, "malformed token in the URL; nothing was installed");
        }
    }
    let Some(exe) = executable().await else {
        return failing(500, "the proxy cannot read its own executable");
    };
    let proxy = &state.public_addr;
    if !proxy
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
    {
        return failing(500, "the proxy's public_addr cannot be used in a script");
    }
    let mut pins = String::new();
    if let Some(token) = token {
        if let Some(refusal) = check_token(state, token, peer).await {
            return refusal;
        }
        let ders = state.identity().ca_ders().unwrap_or_default();
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
        .replace("{{SHA256}}", &exe.sha256)
        .replace("{{ARCH}}", super::route::arch())
        .replace("{{TOKEN}}", token.unwrap_or_default())
        .replace("{{CA_PINS}}", &pins)
        .replace("{{WEB_PINS}}", &state.curl_pins());
    Reply::new(200, SH, script.into_bytes())
}

/// Asks auth whether `token` may join a node, passing the caller's address for auth's own
/// per-source limit. `None` if it may; otherwise the script to send.
async fn check_token(state: &Arc<ProxyState>, token: &str, peer: SocketAddr) -> Option<Reply> {
    let token = crate::secret::Token::new(token);
    let check = Request::CheckToken {
        version: crate::proto::PROTOCOL_VERSION,
        token: token.clone(),
        role: "node".into(),
        remote_addr: peer.ip().to_canonical().to_string(),
    };
    let trouble = match ask_auth(state, check).await {
        Ok(Response::TokenOk) => return None,
        // Status 200, so that `curl -f ... | bash` runs the script and shows the message.
        Ok(Response::Error {
            code: ErrorCode::AccessDenied | ErrorCode::NotFound | ErrorCode::BadParameter,
            message,
        }) => {
            // For the operator only: the token masked (as `tctl tokens ls` shows it) and
            // auth's reason, quoted, since it came over the network.
            debug!("refused install token {token} from {peer}: {message:?}");
            return Some(failing(200, NOT_VALID));
        }
        Ok(Response::Error {
            code: ErrorCode::RateLimited,
            ..
        }) => {
            warn!("auth refused install token checks from {peer}: rate limit");
            return Some(failing(429, TOO_MANY));
        }
        Ok(Response::Error { code, message }) => format!("{code}: {message}"),
        Ok(_) => "an unexpected answer".to_string(),
        Err(e) => e.to_string(),
    };
    warn!("could not check an install token for {peer} with auth: {trouble}");
    Some(failing(
        502,
        "the proxy could not check the token with the auth service; try again later; nothing \
         was installed",
    ))
}
