//! Joins on auth: the per-source limit, token checks for the install script, and `register`.
//! Auth alone chooses every name and ID in a certificate it signs: the host UUID is new for
//! every join, the node name goes into the subject (never a SAN), and only auth and proxies
//! get the server usage.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use log::{info, warn};
use serde_json::Value;

use super::state::AuthState;
use super::tokens::TokenRole;
use crate::clock::{self, now_unix};
use crate::core::tokens::{Grant, Refusal};
use crate::diag::METRICS;
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::Subject;
use crate::proto::limits::{self, check_host_name, check_labels};
use crate::proto::{self, ErrorCode, RegisterRequest, Response, PROTOCOL_VERSION};
use crate::secret::{new_uuid, public_id, Token};

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

/// Which of a source's buckets a request draws on (see `core::limiter`).
#[derive(Debug, Clone, Copy)]
pub enum Charge {
    /// A CA fetch: the CA bucket, which joins do not spend.
    Ca,
    /// An install-token check: one attempt, never given back.
    Check,
    /// A join: one attempt and one join; `joined` gives the attempt back.
    Join,
}

/// Charges `source` for a request; the refusal to send if the bucket is empty.
pub fn rate_limit(state: &AuthState, source: IpAddr, charge: Charge) -> Option<Response> {
    let now = state.now_ms();
    let mut limiter = state.limiter.lock().unwrap_or_else(|p| p.into_inner());
    let allowed = match charge {
        Charge::Ca => limiter.allow_ca(source, now),
        Charge::Check => limiter.allow(source, now),
        Charge::Join => limiter.begin_join(source, now),
    };
    drop(limiter);
    if allowed {
        return None;
    }
    warn!("rate limit exceeded for unauthenticated requests from {source}");
    METRICS.joins_refused_rate.fetch_add(1, Relaxed);
    Some(Response::error(
        ErrorCode::RateLimited,
        "too many join requests from this address: wait a minute and retry",
    ))
}

/// A join charged with `Charge::Join` succeeded: its attempt goes back to `source`.
pub fn joined(state: &AuthState, source: IpAddr) {
    let mut limiter = state.limiter.lock().unwrap_or_else(|p| p.into_inner());
    limiter.join_succeeded(source);
}

/// For the install script: is the token valid for `role`? An anonymous caller learns only
/// "valid" or "not valid", never the token's type or expiry. A refusal is audited
/// (`token.refused`) with `source`, the caller's address.
pub async fn check_token(
    state: &Arc<AuthState>,
    token: Token,
    role: &str,
    source: &str,
) -> Response {
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
    let (st, source) = (state.clone(), source.to_string());
    let checked = smol::unblock(move || {
        let verdict = st.tokens.check(&token, role, now_unix());
        if let Ok(Err(refusal)) = &verdict {
            audit_token_refused(&st, &token, refusal, &source);
        }
        verdict
    })
    .await;
    match checked {
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

/// Longest text from a request the audit log keeps of one field: the log holds what happened,
/// never an attacker's megabytes.
const AUDIT_FIELD_MAX: usize = 256;

fn clip(s: &str) -> Value {
    Value::from(s.chars().take(AUDIT_FIELD_MAX).collect::<String>())
}

/// `token.refused`: the token by its public ID only (the hash of what was presented).
fn audit_token_refused(state: &AuthState, token: &Token, refusal: &Refusal, source: &str) {
    state.audit.record(
        "token.refused",
        &[
            ("token_id", public_id(&token.hash_hex()).into()),
            ("reason", refusal.reason.into()),
            ("source", clip(source)),
        ],
    );
}

/// `join.refused`; `reason` is a code (bad_request, invalid_token, used_up...), `detail` the
/// message the host was given.
fn audit_join_refused(
    state: &AuthState,
    req: &RegisterRequest,
    source: &str,
    reason: &str,
    detail: &str,
) {
    state.audit.record(
        "join.refused",
        &[
            ("node_name", clip(&req.node_name)),
            ("role", clip(&req.role)),
            ("source", clip(source)),
            ("reason", reason.into()),
            ("detail", clip(detail)),
        ],
    );
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

/// What the request alone decides: the role, and the subject and names a certificate would
/// get. Auth chooses the host UUID here.
fn prepare(state: &AuthState, req: &RegisterRequest) -> Result<(TokenRole, Subject, Sans), String> {
    let role = match TokenRole::parse(&req.role)? {
        r @ (TokenRole::Node | TokenRole::Proxy) => r,
        r => {
            return Err(format!(
                "joining as {} is not available in this build: nodes and proxies can join",
                r.name()
            ))
        }
    };
    check_host_name(&req.node_name).map_err(|e| e.to_string())?;
    check_labels(&req.labels).map_err(|e| e.to_string())?;
    let host_id = new_uuid();
    let mut sans = match role {
        TokenRole::Proxy => proxy_sans(&req.dns_names)?,
        _ => Sans::default(),
    };
    sans.dns.insert(0, host_id.clone());
    sans.dns
        .insert(1, format!("{host_id}.{}", state.cluster_name));
    let subject = Subject {
        host_id,
        role: role.name().to_string(),
        cluster: state.cluster_name.clone(),
        node_name: req.node_name.clone(),
    };
    Ok((role, subject, sans))
}

/// How a join ended, decided on the blocking pool (which also wrote its audit events).
enum Outcome {
    Joined {
        cert: String,
        grant: Grant,
        subject: Subject,
    },
    Bad(String),
    Refused(Refusal),
}

/// The blocking half of a join: the CSR, the token (without using it), signing, then using
/// the token, each outcome audited before it is answered.
fn decide(
    st: &AuthState,
    req: &RegisterRequest,
    source: &str,
    role: TokenRole,
    subject: &Subject,
    sans: &Sans,
) -> crate::error::Result<Outcome> {
    let bad = |msg: String| {
        audit_join_refused(st, req, source, "bad_request", &msg);
        Ok(Outcome::Bad(msg))
    };
    let token = Token::new(req.token.clone());
    let refused = |refusal: Refusal| {
        audit_token_refused(st, &token, &refusal, source);
        audit_join_refused(st, req, source, refusal.reason, &refusal.message);
        Ok(Outcome::Refused(refusal))
    };
    // The request first, so that its answer never depends on whether the token is valid.
    let csr = match CertAuthority::parse_csr(&req.csr) {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
    };
    if let Err(refusal) = st.tokens.check(&token, role, now_unix())? {
        return refused(refusal);
    }
    let cert = match st.sign_host(&csr, subject, sans) {
        Ok((c, _)) => c,
        Err(e) => return bad(e.to_string()),
    };
    // Uses the token (counting a limited one down atomically) only now that the join succeeds.
    let grant = match st.tokens.consume(&token, role, now_unix())? {
        Ok(g) => g,
        Err(refusal) => return refused(refusal),
    };
    let uses_left = grant.uses_left.map_or(Value::Null, Value::from);
    st.audit.record(
        "token.used",
        &[
            ("token_id", grant.token_id.as_str().into()),
            ("uses_left", uses_left),
        ],
    );
    let expires = cert_expiry(&cert).map_or(Value::Null, |t| clock::rfc3339(t).into());
    st.audit.record(
        "cert.issued",
        &[
            ("host_id", subject.host_id.as_str().into()),
            ("role", subject.role.as_str().into()),
            ("via", "join".into()),
            ("expires", expires),
        ],
    );
    st.audit.record(
        "join.accepted",
        &[
            ("host_id", subject.host_id.as_str().into()),
            ("node_name", subject.node_name.as_str().into()),
            ("role", subject.role.as_str().into()),
            ("token_id", grant.token_id.as_str().into()),
            ("source", clip(source)),
        ],
    );
    Ok(Outcome::Joined {
        cert,
        grant,
        subject: subject.clone(),
    })
}

/// The expiry (Unix seconds) of a certificate we just signed.
fn cert_expiry(pem: &str) -> Option<i64> {
    let der = crate::pki::certs_from_pem(pem).ok()?.into_iter().next()?;
    Some(crate::pki::parse_cert(&der).ok()?.not_after)
}

/// A join: check the request, then the token (without using it), sign, and only then use the
/// token, so that a request that fails for any other reason never uses up a limited token.
/// `source` is where it came from (with the relaying proxy), for logs and the audit log.
pub async fn register(state: &Arc<AuthState>, req: RegisterRequest, source: &str) -> Response {
    if req.version != PROTOCOL_VERSION {
        return proto::version_mismatch(req.version);
    }
    let bad = |msg: String| Response::error(ErrorCode::BadParameter, msg);
    let (st, src) = (state.clone(), source.to_string());
    let (req, outcome) = smol::unblock(move || {
        let outcome = match prepare(&st, &req) {
            Ok((role, subject, sans)) => decide(&st, &req, &src, role, &subject, &sans),
            Err(msg) => {
                audit_join_refused(&st, &req, &src, "bad_request", &msg);
                Ok(Outcome::Bad(msg))
            }
        };
        (req, outcome)
    })
    .await;
    match outcome {
        Ok(Outcome::Joined {
            cert,
            grant,
            subject,
        }) => {
            METRICS.joins_accepted.fetch_add(1, Relaxed);
            let left = match grant.uses_left {
                Some(n) => format!(" ({n} uses left)"),
                None => String::new(),
            };
            info!(
                "join accepted: {} {:?} ({}) from {source} with token id {}{left}",
                subject.role, subject.node_name, subject.host_id, grant.token_id
            );
            Response::Registered {
                tls: cert,
                tls_ca_certs: state.trusted_pems(),
                cluster_name: state.cluster_name.clone(),
            }
        }
        Ok(Outcome::Bad(msg)) => bad(msg),
        Ok(Outcome::Refused(refusal)) => refused(refusal, &req, source),
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
