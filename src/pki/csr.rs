//! PKCS#10 certificate signing requests (RFC 2986): the one thing auth takes from a CSR is its
//! public key, after the CSR's signature proves the requester holds the private key. Subject,
//! attributes and requested extensions are read for structure only and never used.

use ring::signature::{self as sig, VerificationAlgorithm};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;

use crate::pki::der::{self, DerError, DerResult};

/// Largest CSR accepted: an RSA-8192 CSR with a few names is far below it.
const MAX_CSR_LEN: usize = 16 * 1024;

/// The CSR's public key, as rcgen puts it into a certificate: the subjectPublicKey bits and
/// the algorithm (which also gives the SPKI's algorithm identifier).
#[derive(Debug, Clone)]
pub struct CsrKey {
    raw: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrError {
    Pem,
    TooLong,
    Der(DerError),
    UnsupportedAlgorithm,
    BadSignature,
}

impl std::fmt::Display for CsrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsrError::Pem => f.write_str("no PEM CERTIFICATE REQUEST block"),
            CsrError::TooLong => write!(f, "longer than {MAX_CSR_LEN} bytes"),
            CsrError::Der(e) => write!(f, "malformed: {e}"),
            CsrError::UnsupportedAlgorithm => f.write_str("unsupported key or signature algorithm"),
            CsrError::BadSignature => f.write_str("its signature does not verify"),
        }
    }
}

impl From<DerError> for CsrError {
    fn from(e: DerError) -> Self {
        CsrError::Der(e)
    }
}

// Algorithm identifier OIDs (contents).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

/// A signature algorithm we verify, with the key type it needs: the key algorithm OID and its
/// parameter (a curve OID, NULL for RSA, none for Ed25519).
struct Alg {
    sig_oid: &'static [u8],
    key_oid: &'static [u8],
    key_param: Option<(u8, &'static [u8])>,
    verify: &'static dyn VerificationAlgorithm,
    rcgen: &'static rcgen::SignatureAlgorithm,
}

/// What rcgen can put in a certificate and ring can verify (as rcgen's own CSR reader did).
static ALGS: &[Alg] = &[
    Alg {
        sig_oid: ECDSA_SHA256,
        key_oid: EC_PUBLIC_KEY,
        key_param: Some((der::OID, P256)),
        verify: &sig::ECDSA_P256_SHA256_ASN1,
        rcgen: &rcgen::PKCS_ECDSA_P256_SHA256,
    },
    Alg {
        sig_oid: ECDSA_SHA384,
        key_oid: EC_PUBLIC_KEY,
        key_param: Some((der::OID, P384)),
        verify: &sig::ECDSA_P384_SHA384_ASN1,
        rcgen: &rcgen::PKCS_ECDSA_P384_SHA384,
    },
    Alg {
        sig_oid: ED25519,
        key_oid: ED25519,
        key_param: None,
        verify: &sig::ED25519,
        rcgen: &rcgen::PKCS_ED25519,
    },
    Alg {
        sig_oid: RSA_SHA256,
        key_oid: RSA_ENCRYPTION,
        key_param: Some((der::NULL, &[])),
        verify: &sig::RSA_PKCS1_2048_8192_SHA256,
        rcgen: &rcgen::PKCS_RSA_SHA256,
    },
    Alg {
        sig_oid: RSA_SHA384,
        key_oid: RSA_ENCRYPTION,
        key_param: Some((der::NULL, &[])),
        verify: &sig::RSA_PKCS1_2048_8192_SHA384,
        rcgen: &rcgen::PKCS_RSA_SHA384,
    },
    Alg {
        sig_oid: RSA_SHA512,
        key_oid: RSA_ENCRYPTION,
        key_param: Some((der::NULL, &[])),
        verify: &sig::RSA_PKCS1_2048_8192_SHA512,
        rcgen: &rcgen::PKCS_RSA_SHA512,
    },
];

/// An AlgorithmIdentifier: the OID's content and the parameter element, if any.
fn algorithm_id<'a>(tlv: &der::Tlv<'a>) -> DerResult<(&'a [u8], Option<der::Tlv<'a>>)> {
    let mut r = tlv.reader();
    let oid = r.expect(der::OID)?.content;
    let param = if r.is_empty() { None } else { Some(r.any()?) };
    r.finish()?;
    Ok((oid, param))
}

/// Reads a PEM CSR and checks its signature; returns its public key.
pub fn parse_pem(pem: &str) -> Result<CsrKey, CsrError> {
    let der =
        CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).map_err(|_| CsrError::Pem)?;
    parse_der(der.as_ref())
}

/// Reads a DER CSR and checks its signature; returns its public key.
pub fn parse_der(der: &[u8]) -> Result<CsrKey, CsrError> {
    if der.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLong);
    }
    let mut csr = der::single(der, der::SEQUENCE)?.reader();
    let info = csr.expect(der::SEQUENCE)?;
    let (sig_oid, sig_param) = algorithm_id(&csr.expect(der::SEQUENCE)?)?;
    let signature = der::bit_string_bytes(&csr.expect(der::BIT_STRING)?)?;
    csr.finish()?;

    let mut r = info.reader();
    if r.expect(der::INTEGER)?.content != [0] {
        return Err(DerError::BadValue("CSR version").into());
    }
    crate::pki::x509::Name::parse(r.expect(der::SEQUENCE)?)?;
    let mut spki = r.expect(der::SEQUENCE)?.reader();
    let (key_oid, key_param) = algorithm_id(&spki.expect(der::SEQUENCE)?)?;
    let key = der::bit_string_bytes(&spki.expect(der::BIT_STRING)?)?;
    spki.finish()?;
    // attributes [0] IMPLICIT SET OF Attribute: checked for structure, then ignored.
    let mut attrs = r.expect(0xa0)?.reader();
    while !attrs.is_empty() {
        let mut attr = attrs.expect(der::SEQUENCE)?.reader();
        attr.expect(der::OID)?;
        attr.expect(der::SET)?;
        attr.finish()?;
    }
    r.finish()?;

    // RSA signature algorithms carry a NULL parameter (or, rarely, none); the others none.
    let sig_param_ok = |alg: &Alg| match &sig_param {
        None => true,
        Some(p) => alg.key_oid == RSA_ENCRYPTION && p.tag == der::NULL && p.content.is_empty(),
    };
    let alg = ALGS
        .iter()
        .find(|a| {
            a.sig_oid == sig_oid
                && a.key_oid == key_oid
                && key_param.map(|p| (p.tag, p.content)) == a.key_param
                && sig_param_ok(a)
        })
        .ok_or(CsrError::UnsupportedAlgorithm)?;
    sig::UnparsedPublicKey::new(alg.verify, key)
        .verify(info.raw, signature)
        .map_err(|_| CsrError::BadSignature)?;
    Ok(CsrKey {
        raw: key.to_vec(),
        alg: alg.rcgen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};

    fn csr_der(key: &KeyPair) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["node-1".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "x");
        p.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn takes_the_key_of_a_csr_signed_with_it_for_each_algorithm() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let got = parse_der(&csr_der(&key)).unwrap();
            assert_eq!(got.der_bytes(), key.public_key_raw());
            assert_eq!(got.algorithm(), alg);
            assert_eq!(got.subject_public_key_info(), key.subject_public_key_info());
        }
        let key = KeyPair::generate().unwrap();
        let pem = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        assert_eq!(parse_pem(&pem).unwrap().der_bytes(), key.public_key_raw());
    }

    #[test]
    fn a_signature_by_another_key_or_over_other_bytes_is_refused() {
        let key = KeyPair::generate().unwrap();
        let der = csr_der(&key);
        // The CN "x" changed to "y" after signing.
        let at = der
            .windows(3)
            .position(|w| w == [0x0c, 0x01, b'x'])
            .unwrap();
        let mut changed = der.clone();
        changed[at + 2] = b'y';
        assert_eq!(parse_der(&changed).unwrap_err(), CsrError::BadSignature);
        // Another key's SPKI in place of the signer's (same length for P-256).
        let other = KeyPair::generate().unwrap();
        let (mine, theirs) = (key.public_key_raw(), other.public_key_raw());
        let at = der.windows(mine.len()).position(|w| w == mine).unwrap();
        let mut swapped = der.clone();
        swapped[at..at + theirs.len()].copy_from_slice(theirs);
        assert_eq!(parse_der(&swapped).unwrap_err(), CsrError::BadSignature);
    }

    #[test]
    fn malformed_and_unsupported_csrs_are_errors() {
        let der = csr_der(&KeyPair::generate().unwrap());
        for n in 0..der.len() {
            assert!(parse_der(&der[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(
            parse_der(&longer).unwrap_err(),
            CsrError::Der(DerError::TrailingData)
        );
        // ecdsa-with-SHA384 over a P-256 key: a pair we do not take.
        let at = der
            .windows(ECDSA_SHA256.len())
            .position(|w| w == ECDSA_SHA256)
            .unwrap();
        let mut sha384 = der.clone();
        sha384[at..at + ECDSA_SHA384.len()].copy_from_slice(ECDSA_SHA384);
        assert_eq!(
            parse_der(&sha384).unwrap_err(),
            CsrError::UnsupportedAlgorithm
        );
        assert_eq!(parse_pem("not a csr").unwrap_err(), CsrError::Pem);
        assert_eq!(
            parse_der(&vec![0x30; MAX_CSR_LEN + 1]).unwrap_err(),
            CsrError::TooLong
        );
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0x80;
            assert!(parse_der(&bad).is_err(), "byte {i} changed");
        }
    }
}
