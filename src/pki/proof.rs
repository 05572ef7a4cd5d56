//! Proof that a renewal comes from the host itself: the node signs its renewal CSR with the key
//! of its current certificate. A proxy relays node renewals; with the proof, auth needs to
//! trust the proxy for nothing, as a proxy cannot sign with a node's key.

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::error::{Error, Result};
use crate::secret::{hex, unhex};

/// Domain separation: a proof signs nothing but a renewal CSR.
const CONTEXT: &[u8] = b"teleport-lite renewal proof v1\n";
/// Domain separation of a CA's signature over the CA set it hands out with a renewal.
const CA_LIST_CONTEXT: &[u8] = b"teleport-lite ca list v1\n";
/// Longest proof accepted (an ECDSA P-256 signature is at most 72 bytes).
pub const MAX_PROOF_HEX: usize = 2 * 80;

fn message(csr_pem: &str) -> Vec<u8> {
    [CONTEXT, csr_pem.as_bytes()].concat()
}

/// Signs `csr_pem` with the private key `key_pem` (PKCS#8 P-256, as rcgen writes it).
pub fn sign(key_pem: &str, csr_pem: &str) -> Result<String> {
    sign_bytes(key_pem, &message(csr_pem))
}

fn ca_list_message(pems: &[String], cert_pem: &str) -> Vec<u8> {
    let mut m = CA_LIST_CONTEXT.to_vec();
    for pem in pems {
        m.extend_from_slice(pem.as_bytes());
        m.push(0);
    }
    m.push(0);
    m.extend_from_slice(cert_pem.as_bytes());
    m
}

/// A CA's signature (with its key `ca_key_pem`) over the CA set `pems` it hands to a host with
/// the certificate `cert_pem`: a host accepts a new CA set only when a CA it already trusts
/// vouches for it, so whoever relays a renewal (a proxy) cannot slip in a CA of its own. The
/// certificate is signed too, so an older set (with its valid signature) cannot be replayed
/// with a fresh certificate to keep a host trusting a CA the cluster has dropped.
pub fn sign_ca_list(ca_key_pem: &str, pems: &[String], cert_pem: &str) -> Result<String> {
    sign_bytes(ca_key_pem, &ca_list_message(pems, cert_pem))
}

/// Whether `sig` is the signature of the CA certificate `ca_der` over `pems` and `cert_pem`.
pub fn verify_ca_list(ca_der: &[u8], pems: &[String], cert_pem: &str, sig: &str) -> bool {
    verify_bytes(ca_der, &ca_list_message(pems, cert_pem), sig)
}

fn sign_bytes(key_pem: &str, msg: &[u8]) -> Result<String> {
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Pki(format!("cannot parse private key: {e}")))?;
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_der(), &rng)
        .map_err(|e| Error::Pki(format!("unusable private key: {e}")))?;
    let sig = key
        .sign(&rng, msg)
        .map_err(|_| Error::Pki("signing failed".into()))?;
    Ok(hex(sig.as_ref()))
}

/// Whether `proof` is a signature of `csr_pem` by the key of the certificate `cert_der`.
pub fn verify(cert_der: &[u8], csr_pem: &str, proof: &str) -> bool {
    verify_bytes(cert_der, &message(csr_pem), proof)
}

fn verify_bytes(cert_der: &[u8], msg: &[u8], proof: &str) -> bool {
    if proof.len() > MAX_PROOF_HEX {
        return false;
    }
    let Some(sig) = unhex(proof) else {
        return false;
    };
    let Ok(cert) = crate::pki::x509::Certificate::parse(cert_der) else {
        return false;
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, cert.public_key)
        .verify(msg, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::{new_key_and_csr, CertAuthority, Sans};
    use crate::pki::Subject;

    #[test]
    fn only_the_certificate_key_proves_a_renewal_and_only_of_that_csr() {
        let ca = CertAuthority::generate("c").unwrap();
        let subject = Subject {
            host_id: "h".into(),
            role: "Node".into(),
            cluster: "c".into(),
            node_name: "n".into(),
        };
        let ttl = std::time::Duration::from_secs(60);
        let (key, cert) = ca.issue_local(&subject, &Sans::default(), ttl).unwrap();
        let der = crate::pki::certs_from_pem(&cert).unwrap().remove(0);
        let (_, csr) = new_key_and_csr("h").unwrap();
        let proof = sign(&key, &csr).unwrap();
        assert!(verify(&der, &csr, &proof));
        let (_, other_csr) = new_key_and_csr("h").unwrap();
        assert!(!verify(&der, &other_csr, &proof), "another CSR");
        let (other_key, _) = new_key_and_csr("h").unwrap();
        assert!(
            !verify(&der, &csr, &sign(&other_key, &csr).unwrap()),
            "another key"
        );
        assert!(!verify(&der, &csr, "zz"));
        assert!(!verify(&der, &csr, &"00".repeat(200)));
        assert!(!verify(b"garbage", &csr, &proof));
    }

    #[test]
    fn a_ca_list_is_vouched_for_only_by_the_ca_that_signed_it_and_only_as_signed() {
        let ca = CertAuthority::generate("c").unwrap();
        let other = CertAuthority::generate("c").unwrap();
        let list = vec![ca.cert_pem.clone(), other.cert_pem.clone()];
        let sig = sign_ca_list(&ca.key_pem, &list, "cert-1").unwrap();
        let der = ca.cert_der().unwrap();
        assert!(verify_ca_list(&der, &list, "cert-1", &sig));
        assert!(!verify_ca_list(
            &other.cert_der().unwrap(),
            &list,
            "cert-1",
            &sig
        ));
        let mut grown = list.clone();
        grown.push("evil".into());
        assert!(
            !verify_ca_list(&der, &grown, "cert-1", &sig),
            "a CA added after signing"
        );
        assert!(
            !verify_ca_list(&der, &list[..1], "cert-1", &sig),
            "a CA removed"
        );
        assert!(
            !verify_ca_list(&der, &list, "cert-2", &sig),
            "an older set replayed with another certificate"
        );
        // A renewal proof is not a CA-list signature, nor the other way round.
        assert!(!verify(&der, &list.concat(), &sig));
    }
}
