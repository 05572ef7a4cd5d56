//! Renewals: a host connected over an authenticated stream asks for a certificate for a new
//! key. Auth takes only the key from the CSR; the subject is the one of the stream's verified
//! certificate (a direct node, a proxy for itself) or, for a node behind a proxy, the host
//! the proxy relays beats for, with the name auth has on record for it, always as a Node.
//! Locked and removed hosts are refused.

use log::info;

use super::state::AuthState;
use crate::clock::now_unix;
use crate::core::rotation::{self, CertFacts};
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::Subject;
use crate::proto::{ErrorCode, LockTarget, Response, ROLE_NODE};

/// The answer to a host that may not connect: removal is final (the host must join again),
/// a lock may be lifted.
pub fn refusal(state: &AuthState, host_id: &str) -> Option<Response> {
    let target = LockTarget::ServerId(host_id.to_string());
    let message = state.revoke.denial(&target, now_unix())?;
    let code = if state.revoke.is_removed(host_id) {
        ErrorCode::NotFound
    } else {
        ErrorCode::AccessDenied
    };
    Some(Response::error(code, message))
}

/// Signs a renewal for `subject` with `sans`, asked for over path `via` (the relaying proxy's
/// host ID, or empty for the host's own connection). Blocking (signing, audit fsync).
pub fn sign(state: &AuthState, subject: &Subject, sans: &Sans, csr: &str, via: &str) -> Response {
    if let Some(refused) = refusal(state, &subject.host_id) {
        return refused;
    }
    let csr = match CertAuthority::parse_csr(csr) {
        Ok(c) => c,
        Err(e) => return Response::error(ErrorCode::BadParameter, e.to_string()),
    };
    // Only a request that would be signed takes a slot; a request auth already answered (a
    // proxy replaying one it kept) takes none and gets nothing.
    match paced(
        state,
        &subject.host_id,
        via,
        csr.key_fingerprint(),
        now_unix(),
    ) {
        Paced::Go => {}
        Paced::TooSoon => return Response::error(ErrorCode::RateLimited, rotation::TOO_SOON),
        Paced::Replayed => {
            return Response::error(
                ErrorCode::BadParameter,
                "this renewal was already answered: a new one needs a new key",
            )
        }
    }
    let (tls, tls_ca_certs, ca_proof) = match state.sign_vouched(&csr, subject, sans) {
        Ok(signed) => signed,
        Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
    };
    let expires = now_unix() + state.host_ttl_secs() as i64;
    state.audit.record(
        "cert.issued",
        &[
            ("host_id", subject.host_id.as_str().into()),
            ("role", subject.role.as_str().into()),
            ("via", "renewal".into()),
            ("expires", crate::clock::rfc3339(expires).into()),
        ],
    );
    info!(
        "renewed the certificate of {} {:?} ({}) until {}",
        subject.role,
        subject.node_name,
        subject.host_id,
        crate::clock::rfc3339(expires)
    );
    Response::Renewed {
        tls,
        tls_ca_certs,
        expires,
        ca_proof,
    }
}

enum Paced {
    Go,
    TooSoon,
    Replayed,
}

/// Takes the renewal slot of `host_id` over path `via` if its pacing allows one now. Slots are
/// per path, so a proxy that burns its own (replaying, or asking in a loop) leaves the host's
/// other paths free; and a relayed request for a key auth already certified is a replay.
fn paced(state: &AuthState, host_id: &str, via: &str, key: [u8; 32], now: i64) -> Paced {
    let changed = state.ca.get().rotation.changed;
    let ttl = state.host_ttl_secs();
    let mut renewed = state.renewed.lock().unwrap_or_else(|p| p.into_inner());
    // Only a relayed request can be a replay: on the host's own connection TLS proved the key
    // (and a proxy renewing itself keeps its key on purpose).
    if !via.is_empty() && renewed.keys.get(host_id) == Some(&key) {
        return Paced::Replayed;
    }
    let slot = format!("{host_id}/{via}");
    if !rotation::host_may_renew(renewed.at.get(&slot).copied(), now, changed, ttl) {
        return Paced::TooSoon;
    }
    // Forget slots whose gap has passed before the maps grow past any real fleet.
    if renewed.at.len() >= MAX_PACED {
        renewed.at.retain(|_, at| now.saturating_sub(*at) < 10);
    }
    if renewed.keys.len() >= MAX_PACED {
        renewed.keys.clear();
    }
    renewed.at.insert(slot, now);
    renewed.keys.insert(host_id.to_string(), key);
    Paced::Go
}

/// What auth remembers of recent renewals: when each (host, path) last renewed, and the key it
/// last certified for each host.
#[derive(Default)]
pub struct Renewals {
    at: std::collections::HashMap<String, i64>,
    keys: std::collections::HashMap<String, [u8; 32]>,
}

/// Hosts whose last renewal auth remembers at most.
const MAX_PACED: usize = 200_000;

/// A node's renewal relayed by a proxy. The proxy is trusted for nothing: the node's current
/// certificate must chain to a CA auth trusts, name `host_id` as a Node of this cluster, and
/// its key must have signed the CSR (`proof`); the new certificate keeps that subject.
/// Blocking.
pub fn sign_relayed(
    state: &AuthState,
    proxy_id: &str,
    host_id: &str,
    csr: &str,
    cert_pem: &str,
    proof: &str,
) -> Response {
    let denied = |why: &str| {
        Response::error(
            ErrorCode::AccessDenied,
            format!("the renewal of host {host_id:?} was refused: {why}"),
        )
    };
    let Some(der) = crate::pki::certs_from_pem(cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        return denied("no certificate came with it");
    };
    if !state.verifies_renewing(&der, now_unix()) {
        return denied("its certificate is not one this cluster issued and trusts");
    }
    let subject = match crate::pki::subject_of(&der) {
        Ok(s) if s.host_id == host_id && s.role == ROLE_NODE && s.cluster == state.cluster_name => {
            s
        }
        _ => return denied("its certificate is not a node certificate of this host"),
    };
    if !crate::pki::proof::verify(&der, csr, proof) {
        return denied("it was not signed with the key of the host's certificate");
    }
    let sans = state.host_sans(host_id, ROLE_NODE, &[]);
    sign(state, &subject, &sans, csr, proxy_id)
}

/// Whether a connection whose certificate is `cert` may go on: not expired, from a trusted CA.
/// `Err` says why not.
pub fn still_valid(state: &AuthState, cert: &CertFacts, now: i64) -> Result<(), String> {
    if cert.not_after <= now {
        return Err(format!(
            "its certificate expired at {}",
            crate::clock::rfc3339(cert.not_after)
        ));
    }
    let cas = state.ca.get();
    if !cas.trusts_issuer(&cert.issuer) && !rotation::may_renew_late(cas.retired_at, now) {
        return Err("its certificate is from a CA the cluster no longer trusts".into());
    }
    Ok(())
}

/// Whether the holder of `cert` (a certificate for `role`) must renew now.
pub fn must_renew(state: &AuthState, cert: &CertFacts, role: &str, now: i64) -> bool {
    let cas = state.ca.get();
    rotation::must_renew(
        cert,
        cas.signer_name(role),
        cas.rotation.changed,
        state.host_ttl_secs(),
        now,
    )
}
