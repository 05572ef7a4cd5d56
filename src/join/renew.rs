//! The client half of renewals, shared by the node agent and the proxy: a CSR for the renewal,
//! the identity a `Renewed` answer makes (checked before it replaces the stored one, written
//! atomically), and the check that a stored identity has not expired while the host was off.

use std::path::{Path, PathBuf};

use crate::clock::{now_unix, rfc3339};
use crate::error::{Error, Result};
use crate::pki::ca::{csr_for_key, new_key_and_csr};
use crate::pki::identity::Identity;
use crate::proto::Response;

/// Refuses an identity whose certificate has expired, naming the fix: a host offline longer
/// than `host_cert_ttl` needs a new token.
pub fn check_not_expired(identity: &Identity, path: &Path) -> Result<()> {
    let not_after = identity.not_after()?;
    if not_after <= now_unix() {
        return Err(Error::IdentityRevoked {
            files: identity_files(path),
            detail: format!(
                "its certificate expired at {} (host certificates live auth_service.host_cert_ttl \
                 and are renewed while the host is online; this host was offline longer)",
                rfc3339(not_after)
            ),
        });
    }
    Ok(())
}

/// The identity file and the host UUID file next to it.
pub fn identity_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let Some(dir) = path.parent() {
        files.push(dir.join(crate::config::HOST_UUID_FILE));
    }
    files
}

/// A key and CSR for a renewal: a new key (`fresh`), or the current one. Blocking.
pub fn csr(identity: &Identity, fresh: bool) -> Result<(String, String)> {
    let host_id = identity.subject()?.host_id;
    if fresh {
        new_key_and_csr(&host_id)
    } else {
        Ok((
            identity.key_pem.clone(),
            csr_for_key(&identity.key_pem, &host_id)?,
        ))
    }
}

/// The identity an answer to a renewal makes, stored at `path`. Blocking (fsync).
pub fn apply(
    current: &Identity,
    key_pem: String,
    answer: Response,
    path: &Path,
) -> Result<Identity> {
    let (tls, tls_ca_certs) = match answer {
        Response::Renewed {
            tls, tls_ca_certs, ..
        } => (tls, tls_ca_certs),
        Response::Error { code, message } => return Err(Error::Remote { code, message }),
        other => return Err(crate::net::rpc::unexpected(other)),
    };
    let renewed = Identity {
        key_pem,
        cert_pem: tls,
        ca_pems: tls_ca_certs,
    };
    // Parse it back, as it will be loaded at the next start, and keep who we are.
    let checked = Identity::from_pem(&renewed.to_pem())?;
    let (was, now) = (current.subject()?, checked.subject()?);
    if (&was.host_id, &was.role, &was.cluster) != (&now.host_id, &now.role, &now.cluster) {
        return Err(Error::Protocol(format!(
            "auth renewed the certificate for {:?} as {}, but this host is {:?} as {}",
            now.host_id, now.role, was.host_id, was.role
        )));
    }
    checked.save(path)?;
    Ok(checked)
}

/// When `identity` is due for renewal (Unix seconds): two thirds into its life.
pub fn due_at(identity: &Identity) -> i64 {
    identity
        .cert_der()
        .and_then(|d| crate::pki::facts_of(&d))
        .map(|f| f.renew_at())
        .unwrap_or(0)
}
