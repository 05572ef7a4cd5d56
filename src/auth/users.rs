//! User identities (`tctl auth sign --user=NAME`): short-lived certificates with the `User`
//! role, which a proxy accepts for dials to nodes and everything else refuses. Auth decides
//! every field of the certificate; the requester's CSR contributes only its public key.

use std::time::Duration;

use log::info;

use super::state::AuthState;
use crate::clock;
use crate::error::{Error, Result};
use crate::pki::ca::CertAuthority;
use crate::pki::Subject;
use crate::proto::{ErrorCode, Response};

/// `--ttl` when none is given: Teleport's default for `tctl auth sign` (12h).
pub const DEFAULT_USER_TTL: Duration = Duration::from_secs(12 * 3600);
/// The longest user identity auth signs: Teleport's longest certificate (30h). Access is
/// revoked only by expiry, so it is kept short; people sign a new one each day.
pub const MAX_USER_TTL: Duration = Duration::from_secs(30 * 3600);
/// Longest user name.
const MAX_USER_LEN: usize = 64;

/// A user name: 1 to 64 characters of `[A-Za-z0-9._@-]`, starting with a letter or digit, not
/// a reserved cluster name and not shaped like a host UUID (logs and dials name hosts by UUID).
pub fn check_user_name(name: &str) -> std::result::Result<(), String> {
    let chars_ok = name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'@' | b'-'));
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_USER_LEN || !chars_ok || !first_ok {
        return Err(format!(
            "invalid user name {:?}: use 1 to {MAX_USER_LEN} letters, digits, '.', '_', '@' or \
             '-', starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        ));
    }
    if crate::proto::limits::is_reserved(name) || crate::proto::limits::is_uuid_shaped(name) {
        return Err(format!(
            "invalid user name {name:?}: names of the cluster's servers and UUIDs are reserved"
        ));
    }
    Ok(())
}

/// A user identity's lifetime: at least 1 s, at most `MAX_USER_TTL`.
pub fn check_ttl(ttl: Duration) -> std::result::Result<(), String> {
    if ttl.as_secs() == 0 || ttl > MAX_USER_TTL {
        return Err(format!(
            "--ttl must be between 1s and {}h for a user identity",
            MAX_USER_TTL.as_secs() / 3600
        ));
    }
    Ok(())
}

/// Signs a user's CSR: role `User`, CN the user name, no SANs, client usage only.
pub fn sign(state: &AuthState, user: &str, ttl_secs: u64, csr: &str) -> Result<Response> {
    let bad = |m: String| Error::remote(ErrorCode::BadParameter, m);
    check_user_name(user).map_err(bad)?;
    let ttl = Duration::from_secs(ttl_secs);
    check_ttl(ttl).map_err(bad)?;
    let csr = CertAuthority::parse_csr(csr).map_err(|e| bad(e.to_string()))?;
    let subject = Subject {
        host_id: user.to_string(),
        role: crate::proto::ROLE_USER.to_string(),
        cluster: state.cluster_name.clone(),
        node_name: String::new(),
    };
    let cas = state.ca.get();
    let cert = cas
        .signer(&subject.role)
        .sign_parsed_for(&csr, &subject, ttl)?;
    let expires = clock::now_unix() + ttl_secs as i64;
    info!(
        "issued a user identity for {user:?}, valid until {}",
        clock::rfc3339(expires)
    );
    Ok(Response::UserCert {
        cert,
        ca_certs: cas.trusted_pems(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        for ok in ["alice", "bob.smith", "ops@example.com", "a_1-b"] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        let uuid = "6805dda3-779e-493b-0000-000000000000";
        let long = "a".repeat(65);
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "al\nice",
            "x.teleport.cluster.local",
            uuid,
            long.as_str(),
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttl_is_bounded() {
        assert!(check_ttl(Duration::from_secs(1)).is_ok());
        assert!(check_ttl(MAX_USER_TTL).is_ok());
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(MAX_USER_TTL + Duration::from_secs(1)).is_err());
    }
}
