//! Our certificate and CSR readers (`pki::der`, `pki::x509`, `pki::csr`) called directly, so
//! every accessor runs on every input that parses, and the DER reader walks whatever the bytes
//! are (the `cert_der` and `csr_*` targets reach the readers through their callers only).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use teleport_lite::pki::der::{self, Reader};
use teleport_lite::pki::x509::Certificate;
use teleport_lite::pki::{csr, subject_of};

use crate::harness::{fuzz, Target};
use crate::{der_of, fixtures, outcome, DER_DICT};

/// Walks the elements of `data` down to `depth` levels (constructed elements are read as
/// nested DER), reading each primitive as a string, time and OID: every reader of `der` sees
/// every kind of bytes. Returns the number of elements read, or the first framing error.
fn walk(data: &[u8], depth: usize) -> Result<usize, der::DerError> {
    let mut r = Reader::new(data);
    let mut n = 0;
    while !r.is_empty() {
        let t = r.any()?;
        assert!(
            t.raw.len() > t.content.len() && t.raw.ends_with(t.content),
            "content outside its element"
        );
        n += 1;
        if t.tag & 0x20 != 0 && depth > 0 {
            n += walk(t.content, depth - 1)?;
        } else {
            let _ = (der::string(&t), der::time(&t), der::oid_arcs(t.content));
            let _ = der::bit_string_bytes(&t);
        }
    }
    Ok(n)
}

/// Whether `part` lies inside `whole` (the parser only ever borrows from its input).
fn inside(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fn x509_der(data: &[u8]) -> String {
    let walked = walk(data, 8).map(|n| n.min(3));
    let cert = Certificate::parse(data);
    if let Ok(c) = &cert {
        for raw in [c.issuer.raw, c.subject.raw, c.spki_raw, c.public_key] {
            assert!(inside(raw, data), "a field not borrowed from the input");
        }
        assert!(
            c.spki_raw.ends_with(c.public_key),
            "the key outside its SPKI"
        );
        let _ = (
            c.subject_alt_names(),
            c.extended_key_usages(),
            c.subject_key_id(),
        );
        for oid in [&[0x55, 0x04, 0x03][..], &[0x55, 0x04, 0x29]] {
            let _ = (c.subject.first(oid), c.issuer.first(oid));
        }
        // The callers' view agrees with the reader's.
        if let Ok(s) = subject_of(data) {
            let cn = c.subject.first(&[0x55, 0x04, 0x03]).unwrap();
            assert_eq!(s.host_id, cn.unwrap_or_default());
        }
    }
    let key = csr::parse_der(data);
    format!(
        "{} / {} / {}",
        outcome(&walked),
        outcome(&cert),
        outcome(&key)
    )
}

#[test]
fn x509_der_reading() {
    let f = fixtures();
    let mut seeds = vec![
        der_of(&f.ca.cert_pem),
        der_of(&f.other_ca.cert_pem),
        der_of(&f.node_cert_pem),
    ];
    seeds.extend(f.csrs.iter().take(2).map(|c| {
        CertificateSigningRequestDer::from_pem_slice(c.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }));
    fuzz(Target {
        name: "x509_der",
        weight: 1.0,
        seeds,
        dict: DER_DICT,
        max_len: 16 * 1024,
        run: x509_der,
    });
}
