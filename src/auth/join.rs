//! Joins on auth: the per-source limit, token checks for the install script, and `register`.
//! Auth alone chooses every name and ID in a certificate it signs: the host UUID is new for
//! every join, the node name goes into the subject (never a SAN), and only auth and proxies
//! get the server usage.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use log::{info, warn};

use super::state::AuthState;
use super::tokens::TokenRole;
use crate::clock::now_unix;
use crate::core::tokens::Refusal;
use crate::diag::METRICS;
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::Subject;
use crate::proto::limits::{self, check_host_name, check_labels};
use crate::proto::{self, ErrorCode, RegisterRequest, Response, PROTOCOL_VERSION};
use crate::secret::{new_uuid, Token};

/// Most extra names a proxy may ask for.
const MAX_DNS_NAMES: usize = 16;

/// Where an unauthenticated request really comes from: the TCP peer, or for a request relayed
/// by a proxy (a verified `Proxy` certificate) the address the proxy reports.
pub fn real_source(peer: IpAddr, relayed_by_proxy: bool, remote_addr: &str) -> IpAddr {
    if relayed_by_proxy {
        remote_addr.parse().unwrap_or(peer)
    } else {
        peer
    }
}

/// Takes one request from `source`'s bucket; the refusal to send if it is empty.
pub fn rate_limit(state: &AuthState, source: IpAddr) -> Option<Response> {
    let mut limiter = state.limiter.lock().unwrap_or_else(|p| p.into_inner());
    if limiter.allow(source, state.now_ms()) {
        return None;
    }
    warn!("rate limit exceeded for unauthenticated requests from {source}");
    METRICS.joins_refused_rate.fetch_add(1, Relaxed);
    Some(Response::error(
        ErrorCode::RateLimited,
        "too many join requests from this address: wait a minute and retry",
    ))
}

/// For the install script: is the token valid for `role`? An anonymous caller learns only
/// "valid" or "not valid", never the token's type or expiry.
pub async fn check_token(state: &Arc<AuthState>, token: Token, role: &str) -> Response {
    let not_valid = || {
        Response::error(
            ErrorCode::AccessDenied,
            "the join token is not valid: it is unknown, expired or not a node token; create \
             a new one with \"tctl tokens add --type=node\"",
        )
    };
    let Ok(role) = TokenRole::parse(role) else {
        return not_valid();
    };
    let st = state.clone();
    match smol::unblock(move || st.tokens.check(&token, role, now_unix(), false)).await {
        Ok(Ok(_)) => Response::TokenOk,
        Ok(Err(_)) => not_valid(),
        Err(e) => {
            warn!("token check failed: {e}");
            Response::error(
                ErrorCode::Internal,
                "the auth server could not check the token",
            )
        }
    }
}

fn refused(refusal: Refusal, req: &RegisterRequest, source: &str) -> Response {
    warn!(
        "join refused for {:?} from {source}: {}",
        req.node_name, refusal.message
    );
    let counter = match refusal.reason {
        "expired_token" => &METRICS.joins_refused_expired,
        "wrong_role" => &METRICS.joins_refused_role,
        _ => &METRICS.joins_refused_invalid,
    };
    counter.fetch_add(1, Relaxed);
    Response::error(ErrorCode::AccessDenied, refusal.message)
}

/// The names a proxy's certificate carries besides the proxy server name.
fn proxy_sans(names: &[String]) -> Result<Sans, String> {
    if names.len() > MAX_DNS_NAMES {
        return Err(format!("at most {MAX_DNS_NAMES} dns_names are allowed"));
    }
    let mut sans = Sans {
        dns: vec![crate::proto::PROXY_SERVER_NAME.to_string()],
        ips: Vec::new(),
    };
    for name in names {
        match name.parse::<IpAddr>() {
            Ok(ip) => sans.ips.push(ip),
            Err(_) => {
                limits::check_name(name, "dns_names entry").map_err(|e| e.to_string())?;
                if limits::is_reserved(name) {
                    return Err(format!(
                        "{name:?} is reserved for the cluster's own servers"
                    ));
                }
                sans.dns.push(name.clone());
            }
        }
    }
    Ok(sans)
}

/// A join: check the request, then the token (without using it), sign, and only then use the
/// token, so that a request that fails for any other reason never burns a single-use token.
pub async fn register(state: &Arc<AuthState>, req: RegisterRequest, source: &str) -> Response {
    if req.version != PROTOCOL_VERSION {
        return proto::version_mismatch(req.version);
    }
    let bad = |msg: String| Response::error(ErrorCode::BadParameter, msg);
    let role = match TokenRole::parse(&req.role) {
        Ok(r @ (TokenRole::Node | TokenRole::Proxy)) => r,
        Ok(r) => {
            return bad(format!(
                "joining as {} is not available in this build: nodes and proxies can join",
                r.name()
            ))
        }
        Err(e) => return bad(e),
    };
    if let Err(e) = check_host_name(&req.node_name) {
        return bad(e.to_string());
    }
    if let Err(e) = check_labels(&req.labels) {
        return bad(e.to_string());
    }
    let host_id = new_uuid();
    let mut sans = match role {
        TokenRole::Proxy => match proxy_sans(&req.dns_names) {
            Ok(s) => s,
            Err(e) => return bad(e),
        },
        _ => Sans::default(),
    };
    sans.dns.insert(0, host_id.clone());
    sans.dns
        .insert(1, format!("{host_id}.{}", state.cluster_name));
    let subject = Subject {
        host_id: host_id.clone(),
        role: role.name().to_string(),
        cluster: state.cluster_name.clone(),
        node_name: req.node_name.clone(),
    };

    let token = Token::new(req.token.clone());
    let st = state.clone();
    let csr = req.csr.clone();
    let signed = smol::unblock(move || -> crate::error::Result<_> {
        // The request first, so that its answer never depends on whether the token is valid.
        let csr = match CertAuthority::parse_csr(&csr) {
            Ok(c) => c,
            Err(e) => return Ok(Ok(Err(e.to_string()))),
        };
        if let Err(refusal) = st.tokens.check(&token, role, now_unix(), false)? {
            return Ok(Err(refusal));
        }
        let cert = match st.sign_host(&csr, &subject, &sans) {
            Ok((c, _)) => c,
            Err(e) => return Ok(Ok(Err(e.to_string()))),
        };
        // Uses the token (atomically for single-use ones) only now that the join succeeds.
        Ok(st
            .tokens
            .check_join(&token, role, now_unix())?
            .map(|grant| Ok((cert, grant))))
    })
    .await;
    match signed {
        Ok(Ok(Ok((cert, grant)))) => {
            METRICS.joins_accepted.fetch_add(1, Relaxed);
            info!(
                "join accepted: {} {:?} ({host_id}) from {source} with token id {}",
                role.name(),
                req.node_name,
                grant.token_id
            );
            Response::Registered {
                tls: cert,
                tls_ca_certs: state.trusted_pems(),
                cluster_name: state.cluster_name.clone(),
            }
        }
        Ok(Ok(Err(csr_error))) => bad(csr_error),
        Ok(Err(refusal)) => refused(refusal, &req, source),
        Err(e) => {
            warn!("join check failed: {e}");
            Response::error(
                ErrorCode::Internal,
                "the auth server could not check the token",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_sources_are_the_reported_address_only_from_proxies() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(real_source(peer, false, "192.0.2.7"), peer);
        assert_eq!(
            real_source(peer, true, "192.0.2.7"),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(real_source(peer, true, "garbage"), peer);
    }

    #[test]
    fn proxies_cannot_ask_for_reserved_names() {
        assert!(proxy_sans(&["teleport.cluster.local".into()]).is_err());
        assert!(proxy_sans(&["a\nb".into()]).is_err());
        assert!(proxy_sans(&vec!["a".to_string(); 17]).is_err());
        let s = proxy_sans(&["proxy.example.com".into(), "10.0.0.9".into()]).unwrap();
        assert_eq!(
            s.dns,
            vec![
                crate::proto::PROXY_SERVER_NAME.to_string(),
                "proxy.example.com".into()
            ]
        );
        assert_eq!(s.ips.len(), 1);
    }
}
