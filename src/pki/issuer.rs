//! The CA as rcgen's `Issuer`, rebuilt from the CA certificate: the subject with the same
//! attribute types, order and string types (so issued certificates name their issuer with
//! exactly the bytes of the CA's subject, which chain building compares), and the subject key
//! identifier as is (so an authority key identifier would match it).

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, Issuer, KeyIdMethod, KeyPair};

use crate::error::{Error, Result};
use crate::pki::der;
use crate::pki::x509::{Certificate, Name};

/// The issuer for the CA certificate `cert_der` and its key.
pub fn from_ca_cert(cert_der: &[u8], key: KeyPair) -> Result<Issuer<'static, KeyPair>> {
    let cert = Certificate::parse(cert_der)
        .map_err(|e| Error::Pki(format!("cannot parse CA certificate: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&cert.subject)?;
    let ski = cert
        .subject_key_id()
        .map_err(|e| Error::Pki(format!("cannot parse CA certificate: {e}")))?;
    // Without an identifier in the certificate, rcgen derives one from the key (as it did when
    // it read the certificate itself).
    params.key_identifier_method = match ski {
        Some(id) => KeyIdMethod::PreSpecified(id.to_vec()),
        None => KeyIdMethod::Sha256,
    };
    Ok(Issuer::new(params, key))
}

/// `name` as rcgen writes it back: one attribute per RDN, each type once. Anything else
/// (multi-valued RDNs, a repeated type) could not be written back as the same bytes.
fn distinguished_name(name: &Name<'_>) -> Result<DistinguishedName> {
    let unusable = |why: &str| Error::Pki(format!("unusable CA subject: {why}"));
    let mut dn = DistinguishedName::new();
    for (i, attr) in name.attributes.iter().enumerate() {
        if attr.rdn != i {
            return Err(unusable("a multi-valued RDN"));
        }
        let arcs = der::oid_arcs(attr.oid).map_err(|e| unusable(&e.to_string()))?;
        let ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            return Err(unusable("an attribute type twice"));
        }
        let v = &attr.value;
        let text = || der::string(v).map_err(|e| unusable(&e.to_string()));
        let value = match v.tag {
            der::UTF8_STRING => DnValue::Utf8String(text()?),
            der::PRINTABLE_STRING => DnValue::PrintableString(PrintableString::try_from(text()?)?),
            der::IA5_STRING => DnValue::Ia5String(Ia5String::try_from(text()?)?),
            der::TELETEX_STRING => DnValue::TeletexString(TeletexString::try_from(text()?)?),
            der::BMP_STRING => DnValue::BmpString(BmpString::from_utf16be(v.content.to_vec())?),
            der::UNIVERSAL_STRING => {
                DnValue::UniversalString(UniversalString::from_utf32be(v.content.to_vec())?)
            }
            _ => return Err(unusable("an attribute that is not a string")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rcgen::{BasicConstraints, IsCa};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use crate::pki::ca::{CertAuthority, Sans};
    use crate::pki::verify::{self, ServerRole};
    use crate::pki::{certs_from_pem, Subject};

    /// An auth server certificate of `ca`: (key PEM, certificate PEM).
    fn auth_cert(ca: &CertAuthority) -> (String, String) {
        let subject = Subject {
            host_id: "h1".into(),
            role: crate::proto::ROLE_AUTH.into(),
            cluster: "c.example".into(),
            node_name: String::new(),
        };
        let sans = Sans {
            dns: vec![crate::proto::AUTH_SERVER_NAME.into()],
            ips: Vec::new(),
        };
        ca.issue_local(&subject, &sans, std::time::Duration::from_secs(60))
            .unwrap()
    }

    /// A TLS handshake in memory: a client of `verify::client_config` trusting `ca_der`
    /// expects an auth server; the server presents `cert_pem`.
    fn handshake(ca_der: &CertificateDer<'static>, key_pem: &str, cert_pem: &str) -> bool {
        use rustls::pki_types::ServerName;
        let client =
            verify::client_config(std::slice::from_ref(ca_der), None, ServerRole::Auth).unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(crate::pki::provider::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs_from_pem(cert_pem).unwrap(), key)
            .unwrap();
        let name = ServerName::try_from(crate::proto::AUTH_SERVER_NAME).unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if s.read_tls(&mut &buf[..]).is_err() || s.process_new_packets().is_err() {
                return false;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if c.read_tls(&mut &buf[..]).is_err() || c.process_new_packets().is_err() {
                return false;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return true;
            }
        }
        false
    }

    /// A leaf of `ca` names the CA's subject byte for byte, verifies under it, and (when
    /// asked to carry one) has the CA's key identifier as its authority key identifier.
    fn check_chain(ca: &CertAuthority) {
        let ca_der = ca.cert_der().unwrap();
        let ca_cert = Certificate::parse(&ca_der).unwrap();
        let (key, pem) = auth_cert(ca);
        let leaf_der = certs_from_pem(&pem).unwrap().remove(0);
        let leaf = Certificate::parse(&leaf_der).unwrap();
        assert_eq!(leaf.issuer.raw, ca_cert.subject.raw, "issuer bytes");
        assert!(handshake(&ca_der, &key, &pem), "the auth server is trusted");
        let roots = std::slice::from_ref(&ca_der);
        assert!(crate::pki::live::verifies_with(roots, &leaf_der));
        let other = CertAuthority::generate("c.example").unwrap();
        let (key, pem) = auth_cert(&other);
        assert!(!handshake(&ca_der, &key, &pem), "another CA's server");

        let issuer = from_ca_cert(&ca_der, KeyPair::from_pem(&ca.key_pem).unwrap()).unwrap();
        let mut p = CertificateParams::default();
        p.use_authority_key_identifier_extension = true;
        let with_aki = p.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        let with_aki = Certificate::parse(with_aki.der()).unwrap();
        let aki = with_aki.extension(&[0x55, 0x1d, 0x23]).unwrap().value;
        let ski = ca_cert
            .subject_key_id()
            .unwrap()
            .expect("the CA has a key identifier");
        // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
        let aki = der::single(aki, der::SEQUENCE).unwrap();
        assert_eq!(der::single(aki.content, 0x80).unwrap().content, ski);
        assert_eq!(with_aki.issuer.raw, ca_cert.subject.raw);
    }

    #[test]
    fn issued_certificates_name_and_chain_to_a_fresh_ca() {
        check_chain(&CertAuthority::generate("example.com").unwrap());
        check_chain(&CertAuthority::generate_named("example.com", Some("gen-2")).unwrap());
    }

    #[test]
    fn a_ca_loaded_from_pem_with_other_string_types_is_named_exactly() {
        // A CA written elsewhere: PrintableString and IA5String values, a country first, and a
        // key identifier rcgen would not derive itself.
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("NL".try_into().unwrap()),
        );
        p.distinguished_name.push(
            DnType::CommonName,
            DnValue::PrintableString("Old CA".try_into().unwrap()),
        );
        p.distinguished_name.push(
            DnType::OrganizationName,
            DnValue::Ia5String("c.example".try_into().unwrap()),
        );
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 41]), "named");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_identifier_method = KeyIdMethod::PreSpecified(vec![7; 20]);
        let cert = p.self_signed(&key).unwrap();
        let ca = CertAuthority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        check_chain(&ca);
        let parsed = Certificate::parse(cert.der()).unwrap();
        assert_eq!(parsed.subject_key_id().unwrap(), Some(&[7u8; 20][..]));
    }

    #[test]
    fn a_subject_rcgen_cannot_write_back_is_refused() {
        // One RDN with two attributes (CN and O in one SET).
        let atv = |oid: u8, v: &[u8]| {
            let mut s = vec![0x30, (7 + v.len()) as u8, 0x06, 0x03, 0x55, 0x04, oid, 0x0c];
            s.push(v.len() as u8);
            s.extend_from_slice(v);
            s
        };
        let mut set = atv(3, b"a");
        set.extend(atv(10, b"b"));
        let mut rdn = vec![0x31, set.len() as u8];
        rdn.extend(set);
        let mut name = vec![0x30, rdn.len() as u8];
        name.extend(rdn);
        let parsed = Name::parse(der::single(&name, der::SEQUENCE).unwrap()).unwrap();
        let err = distinguished_name(&parsed).unwrap_err().to_string();
        assert!(err.contains("multi-valued"), "{err}");
    }
}
