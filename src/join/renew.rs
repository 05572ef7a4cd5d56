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
    let (tls, tls_ca_certs, ca_proof) = match answer {
        Response::Renewed {
            tls,
            tls_ca_certs,
            ca_proof,
            ..
        } => (tls, tls_ca_certs, ca_proof),
        Response::Error { code, message } => return Err(Error::Remote { code, message }),
        other => return Err(crate::net::rpc::unexpected(other)),
    };
    check_vouched(current, &key_pem, &tls, &tls_ca_certs, &ca_proof)?;
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

/// The answer may have been relayed by a proxy, so nothing in it is taken on trust: a CA this
/// host already trusts must have signed the new CA set, and the new certificate must chain to
/// that set and be for the key this host just made.
fn check_vouched(
    current: &Identity,
    key_pem: &str,
    cert_pem: &str,
    cas: &[String],
    ca_proof: &[String],
) -> Result<()> {
    let refused = |why: &str| {
        Err(Error::Pki(format!(
            "the renewed identity was refused: {why}"
        )))
    };
    if cas.is_empty() || cas.len() > 4 || ca_proof.len() > 4 {
        return refused("it came with no CA set, or too many CAs or signatures");
    }
    if cas.iter().any(|pem| pem.len() > 16 * 1024) {
        return refused("a CA certificate in it is far too large");
    }
    let trusted = current.ca_ders()?;
    let vouched = trusted.iter().any(|ca| {
        ca_proof
            .iter()
            .any(|sig| crate::pki::proof::verify_ca_list(ca, cas, cert_pem, sig))
    });
    if !vouched {
        return refused("no CA this host trusts signed the CA set it came with");
    }
    let mut roots = Vec::new();
    for pem in cas {
        roots.extend(crate::pki::certs_from_pem(pem)?);
    }
    let cert = crate::pki::certs_from_pem(cert_pem)?.remove(0);
    if !crate::pki::live::verifies_with(&roots, &cert) {
        return refused("its certificate is not issued by the CA set it came with");
    }
    let key = rcgen::KeyPair::from_pem(key_pem)?;
    if crate::pki::parse_cert(&cert)?.public_key != key.public_key_raw() {
        return refused("its certificate is not for the key this host made");
    }
    Ok(())
}

/// When `identity` is due for renewal (Unix seconds): two thirds into its life.
pub fn due_at(identity: &Identity) -> i64 {
    identity
        .cert_der()
        .and_then(|d| crate::pki::facts_of(&d))
        .map(|f| f.renew_at())
        .unwrap_or(0)
}
