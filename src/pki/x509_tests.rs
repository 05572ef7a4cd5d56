use super::*;
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::{certs_from_pem, Subject};

/// A public root (Let's Encrypt's ISRG Root X2, P-384): a certificate made by another
/// implementation than ours, as a web server's chain may hold.
const ISRG_ROOT_X2: &str = "-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----
";

fn leaf() -> (CertAuthority, Vec<u8>, std::time::SystemTime) {
    let ca = CertAuthority::generate("example.com").unwrap();
    let subject = Subject {
        host_id: "h1".into(),
        role: "Proxy".into(),
        cluster: "example.com".into(),
        node_name: "web-1".into(),
    };
    let sans = Sans {
        dns: vec!["proxy.example.com".into(), "localhost".into()],
        ips: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
    };
    let now = std::time::SystemTime::now();
    let (_key, pem) = ca
        .issue_local(&subject, &sans, std::time::Duration::from_secs(3600))
        .unwrap();
    (ca, certs_from_pem(&pem).unwrap().remove(0).to_vec(), now)
}

#[test]
fn reads_what_our_ca_issues() {
    let (ca, der, issued) = leaf();
    let cert = Certificate::parse(&der).unwrap();
    let now = issued
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((cert.not_after - now - 3600).abs() <= 2, "not_after");
    assert!(
        (cert.not_before - (now - 3600)).abs() <= 2,
        "backdated an hour"
    );
    let text = |oid| cert.subject.first(oid).unwrap().unwrap();
    assert_eq!(text(oid::COMMON_NAME), "h1");
    assert_eq!(text(oid::ORGANIZATION), "Proxy");
    assert_eq!(text(oid::ORGANIZATIONAL_UNIT), "example.com");
    assert_eq!(text(oid::NAME), "web-1");
    assert_eq!(cert.subject.first(&[0x55, 0x04, 0x06]).unwrap(), None);
    assert_eq!(
        cert.subject_alt_names().unwrap(),
        vec![
            GeneralName::Dns("proxy.example.com".into()),
            GeneralName::Dns("localhost".into()),
            GeneralName::Ip("10.0.0.1".parse().unwrap()),
            GeneralName::Ip("::1".parse().unwrap()),
        ]
    );
    assert_eq!(
        cert.extended_key_usages().unwrap(),
        vec![oid::SERVER_AUTH, oid::CLIENT_AUTH]
    );
    assert_eq!(cert.subject_key_id().unwrap(), None);
    let ca_der = ca.cert_der().unwrap();
    let ca_cert = Certificate::parse(&ca_der).unwrap();
    assert_eq!(cert.issuer.raw, ca_cert.subject.raw);
    assert!(ca_cert.subject_key_id().unwrap().is_some());
    // The SPKI and the key: as rcgen wrote them for the CA's key pair.
    let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
    assert_eq!(
        ca_cert.spki_raw,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    assert_eq!(ca_cert.public_key, key.public_key_raw());
}

#[test]
fn reads_a_public_root() {
    let der = certs_from_pem(ISRG_ROOT_X2).unwrap().remove(0);
    let cert = Certificate::parse(&der).unwrap();
    // Values as `openssl x509 -noout -dates -subject -ext subjectKeyIdentifier` prints them.
    assert_eq!(
        (cert.not_before, cert.not_after),
        (1_599_177_600, 2_231_510_400)
    );
    assert_eq!(
        cert.subject.first(oid::COMMON_NAME).unwrap().as_deref(),
        Some("ISRG Root X2")
    );
    assert_eq!(cert.issuer.raw, cert.subject.raw);
    assert_eq!(
        crate::secret::hex(cert.subject_key_id().unwrap().unwrap()),
        "7c4296aede4b483bfa92f89e8ccf6d8ba9723795"
    );
    // The SPKI pin of this root, as `openssl pkey -pubin -outform der | sha256sum` gives it.
    let pin = crate::pki::pin::Pin::of_cert(&der).unwrap();
    assert_eq!(
        pin.to_string(),
        "sha256:762195c225586ee6c0237456e2107dc54f1efc21f61a792ebd515913cce68332"
    );
    assert!(cert.extension(oid::SUBJECT_ALT_NAME).is_none());
    assert!(cert.extensions.iter().filter(|e| e.critical).count() == 2);
}

#[test]
fn every_truncation_and_trailing_bytes_are_errors() {
    let (_, der, _) = leaf();
    for n in 0..der.len() {
        assert!(Certificate::parse(&der[..n]).is_err(), "truncated to {n}");
    }
    let mut longer = der.clone();
    longer.push(0);
    assert_eq!(Certificate::parse(&longer), Err(DerError::TrailingData));
}

#[test]
fn corrupted_bytes_give_errors_or_certificates_never_panics() {
    let (_, der, _) = leaf();
    for i in 0..der.len() {
        for v in [0x00, 0x80, 0xff, der[i] ^ 0x01] {
            let mut bad = der.clone();
            bad[i] = v;
            if let Ok(c) = Certificate::parse(&bad) {
                let _ = (c.subject.first(oid::COMMON_NAME), c.subject_alt_names());
                let _ = (c.extended_key_usages(), c.subject_key_id());
            }
        }
    }
}

/// Replaces the first occurrence of `from` in `der` with `to` (same length).
fn patched(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = der.windows(from.len()).position(|w| w == from).unwrap();
    let mut out = der.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn invalid_strings_and_values_are_errors() {
    let (_, der, _) = leaf();
    // The CN "h1" as UTF8String (0x0c 0x02) turned into invalid UTF-8.
    let bad_cn = patched(&der, &[0x0c, 0x02, b'h', b'1'], &[0x0c, 0x02, 0xff, 0xfe]);
    let cert = Certificate::parse(&bad_cn).unwrap();
    assert!(cert.subject.first(oid::COMMON_NAME).is_err());
    assert!(crate::pki::subject_of(&bad_cn).is_err());
    // A DNS name with a non-ASCII byte.
    let bad_dns = patched(&der, b"localhost", b"localhos\xff");
    assert!(Certificate::parse(&bad_dns)
        .unwrap()
        .subject_alt_names()
        .is_err());
    // The UTCTime not_before (tag 0x17, 13 bytes) with a month 13.
    let at = der.windows(2).position(|w| w == [0x17, 0x0d]).unwrap();
    let mut bad_time = der.clone();
    bad_time[at + 4..at + 6].copy_from_slice(b"13");
    assert!(Certificate::parse(&bad_time).is_err());
}
