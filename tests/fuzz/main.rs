//! Fuzzing on stable Rust: every parser that sees untrusted bytes, run on mutants of valid
//! inputs for a bounded time. No input may panic: release builds abort on panic, so a panic is
//! a dead service. See docs/fuzzing.md for running longer, replaying a seed or one input.
//!
//! Each target is one test, so one can be run alone: `cargo test --test fuzz -- pin`.

mod harness;
mod mutate;
mod pg;
mod samples;
mod tls;
mod tls_session;
mod x509;

use std::path::Path;
use std::sync::OnceLock;

use harness::{fuzz, Target};
use mutate::pem;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use teleport_lite::config::{self, ConfigureInput, FileConfig, Roles, StartFlags};
use teleport_lite::http::{self, ParseError};
use teleport_lite::pki::ca::{new_key_and_csr, CertAuthority, Sans};
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::pin::{check_all, Pin};
use teleport_lite::pki::{certs_from_pem, proof, subject_of, Subject};
use teleport_lite::proto::roles::{parse_roles, TokenRole};
use teleport_lite::proto::{
    self, AdminCmd, ClusterStatus, Decoder, NodeInfo, ProxyHello, ProxyInfo, ProxyRef,
    RegisterRequest, RelayedBeat, Request, Response, StreamHello, TokenCreated, TokenInfo,
    MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};

/// Sum of the weights below; each target gets `FUZZ_SECS * weight / TOTAL_WEIGHT` seconds.
pub const TOTAL_WEIGHT: f64 = 1.0 // http_request
    + 1.0 // http_response
    + 1.0 // frames
    + 1.0 // json_messages
    + 1.0 // csr_pem
    + 1.0 // csr_der
    + 1.0 // csr_signed
    + 0.5 // pin
    + 1.0 // cert_pem
    + 1.0 // cert_der
    + 1.0 // x509_der
    + 1.0 // config_yaml
    + 0.5 // config_strings
    + 0.5 // route
    + 1.0 // proxy_protocol
    + 1.0 // pg_messages
    + 0.5 // pg_conn_string
    + 1.0 // tls_server
    + 1.0; // tls_session

/// An outcome label for feedback: the letters and spaces of a message up to its first quoted
/// part (where the input shows up), so "invalid pin \"x\" at 3" and "invalid pin \"y\" at 4"
/// count as one outcome.
fn class(s: &str) -> String {
    s.chars()
        .take_while(|c| *c != '"' && *c != '`')
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .take(64)
        .collect()
}

fn outcome<T, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => class(&e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared fixtures: one CA, CSRs, certificates and identities, all made by the code itself.

struct Fixtures {
    ca: CertAuthority,
    other_ca: CertAuthority,
    csrs: Vec<String>,
    node_cert_pem: String,
    identity_pem: String,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let ca = CertAuthority::generate("example.com").unwrap();
        let other_ca = CertAuthority::generate("other.example").unwrap();
        let csrs = ["node-1", "", &"x".repeat(300), "proxy.example.com", "é"]
            .iter()
            .map(|h| new_key_and_csr(h).unwrap().1)
            .collect();
        let sans = Sans {
            dns: vec!["node-1".into(), "node-1.example.com".into()],
            ips: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        };
        let (key, node_cert_pem) = ca
            .issue_local(&subject(), &sans, std::time::Duration::from_secs(3600))
            .unwrap();
        let identity_pem = Identity {
            key_pem: key,
            cert_pem: node_cert_pem.clone(),
            ca_pems: vec![ca.cert_pem.clone(), other_ca.cert_pem.clone()],
        }
        .to_pem();
        Fixtures {
            ca,
            other_ca,
            csrs,
            node_cert_pem,
            identity_pem,
        }
    })
}

fn subject() -> Subject {
    Subject {
        host_id: samples::HOST_ID.into(),
        role: "Node".into(),
        cluster: "example.com".into(),
        node_name: "web-1".into(),
    }
}

fn der_of(pem_text: &str) -> Vec<u8> {
    certs_from_pem(pem_text).unwrap().remove(0).to_vec()
}

fn register_body() -> Vec<u8> {
    serde_json::to_vec(&samples::register_request(samples::TEST_CSR, "Node")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The proxy's and the diagnostics server's request parser, on the whole input and on a
/// prefix (the read loop calls it after every read).
fn http_request(data: &[u8]) -> String {
    let half = http::parse_request(&data[..data.len() / 2]);
    let r = http::parse_request(data);
    if let Ok(req) = &r {
        assert!(req.body.len() <= http::MAX_BODY, "body beyond MAX_BODY");
        assert!(!req.path.contains('?'), "query left in the path");
        assert!(
            req.body.len() <= data.len(),
            "body longer than the bytes received"
        );
    }
    let label = |r: &Result<http::Request, ParseError>| match r {
        Ok(_) => "ok".to_string(),
        Err(ParseError::Incomplete) => "incomplete".into(),
        Err(ParseError::Bad(why)) => class(why),
    };
    format!("{} / {}", label(&r), label(&half))
}

#[test]
fn http_request_parser() {
    fuzz(Target {
        name: "http_request",
        weight: 1.0,
        seeds: samples::http_requests(&register_body()),
        dict: samples::HTTP_DICT,
        max_len: 2 * http::MAX_HEAD,
        run: http_request,
    });
}

/// The client's response parser (`parse_response` is private; `http::roundtrip` reaches it),
/// fed in chunks of a size taken from the first byte, then the agent's reading of the body.
fn http_response(data: &[u8]) -> String {
    let chunk = 1 + usize::from(*data.first().unwrap_or(&0)) * 37;
    let mut io = samples::MemIo::new(data, chunk);
    let r = futures_lite::future::block_on(http::roundtrip(
        &mut io,
        "POST",
        "proxy.example.com:3080",
        teleport_lite::proto::names::CREDENTIALS_PATH,
        Some(b"{}"),
    ));
    match r {
        Ok(resp) => {
            // As agent::join reads a join answer or an error body.
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
            let _ = v["error"]["message"].as_str();
            let _ = v["tls"].as_str();
            let _ = v["tls_ca_certs"].as_array().map(|a| a.len());
            let _ = String::from_utf8_lossy(&resp.body);
            format!("ok {}", resp.status / 100)
        }
        Err(e) => class(&e.to_string()),
    }
}

#[test]
fn http_response_parser() {
    let answer = serde_json::json!({
        "tls": samples::TEST_CSR.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
        "tls_ca_certs": [samples::TEST_CSR.replace("CERTIFICATE REQUEST", "CERTIFICATE")],
    })
    .to_string();
    fuzz(Target {
        name: "http_response",
        weight: 1.0,
        seeds: samples::http_responses(answer.as_bytes()),
        dict: samples::HTTP_DICT,
        max_len: 64 * 1024,
        run: http_response,
    });
}

fn route(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let (method, path) = text.split_once(' ').unwrap_or((&text, ""));
    let r = teleport_lite::proxy::web::route(method, path);
    class(&format!("{r:?}"))
}

#[test]
fn web_route() {
    let mut seeds = Vec::new();
    for p in samples::WEB_PATHS {
        for m in ["GET", "POST", "PUT", "DELETE", ""] {
            seeds.push(format!("{m} {p}").into_bytes());
        }
    }
    // The path that once sliced out of bounds (start after end) in web.rs.
    seeds.push(b"GET /scripts/install-node.sh".to_vec());
    seeds.push(b"GET /v1/scripts//install-node.sh".to_vec());
    fuzz(Target {
        name: "route",
        weight: 0.5,
        seeds,
        dict: samples::HTTP_DICT,
        max_len: 4096,
        run: route,
    });
}

// ---------------------------------------------------------------------------------------------
// Frames and JSON messages

/// Checks that a decoded message is sent back as the same message (what we accept we can say).
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msg: &T) {
    let mut d = Decoder::new(usize::MAX);
    d.feed(&proto::encode(msg));
    match d.next_frame::<T>() {
        Ok(Some(back)) => assert_eq!(&back, msg, "message changed in a round trip"),
        other => panic!("cannot decode our own encoding of {msg:?}: {other:?}"),
    }
}

/// Feeds the input in chunks (sizes from a generator seeded by the input) and takes frames
/// until the decoder needs more or fails, as `Framed::recv` does, for both directions.
fn decode_all<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    data: &[u8],
    max: usize,
) -> String {
    let mut rng = mutate::Rng::new(mutate::fnv(data));
    let mut d = Decoder::new(max);
    let mut frames = 0;
    let mut pos = 0;
    while pos < data.len() {
        let n = rng.small(data.len() - pos);
        d.feed(&data[pos..pos + n]);
        pos += n;
        loop {
            match d.next_frame::<T>() {
                Ok(Some(msg)) => {
                    round_trips(&msg);
                    frames += 1;
                }
                Ok(None) => break,
                Err(e) => return format!("{} {}", frames.min(3), class(&e.to_string())),
            }
        }
    }
    format!(
        "{} frames, {} left",
        frames.min(3),
        d.into_rest().len().min(4)
    )
}

fn frames(data: &[u8]) -> String {
    let a = decode_all::<Request>(data, MAX_REQUEST_FRAME);
    let b = decode_all::<Response>(data, MAX_RESPONSE_FRAME);
    format!("{a} / {b}")
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let reqs = samples::requests(samples::TEST_CSR);
    let resps = samples::responses(samples::TEST_CSR);
    let mut seeds: Vec<Vec<u8>> = reqs.iter().map(proto::encode).collect();
    seeds.extend(resps.iter().map(proto::encode));
    // A stream: hello, beats, goodbye in one buffer; and a heartbeat stream's replies.
    let mut stream = proto::encode(&Request::Hello(samples::stream_hello()));
    for seq in 0..3 {
        stream.extend(proto::encode(&Request::Heartbeat { seq }));
    }
    stream.extend(proto::encode(&Request::Goodbye));
    seeds.push(stream);
    seeds.push(resps.iter().flat_map(proto::encode).collect());
    seeds
}

#[test]
fn frame_decoder() {
    fuzz(Target {
        name: "frames",
        weight: 1.0,
        seeds: frame_seeds(),
        dict: samples::JSON_DICT,
        max_len: 64 * 1024,
        run: frames,
    });
}

fn parse_as<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> bool {
    match serde_json::from_slice::<T>(data) {
        Ok(v) => {
            round_trips(&v);
            true
        }
        Err(_) => false,
    }
}

/// Every JSON message the services accept (frames' bodies, the join relay's POST body) and
/// every answer the clients read, as each type.
fn json_messages(data: &[u8]) -> String {
    let parsed = [
        parse_as::<Request>(data),
        parse_as::<Response>(data),
        parse_as::<RegisterRequest>(data),
        parse_as::<StreamHello>(data),
        parse_as::<ProxyHello>(data),
        parse_as::<RelayedBeat>(data),
        parse_as::<AdminCmd>(data),
        parse_as::<ProxyRef>(data),
        parse_as::<ProxyInfo>(data),
        parse_as::<TokenCreated>(data),
        parse_as::<TokenInfo>(data),
        parse_as::<NodeInfo>(data),
        parse_as::<ClusterStatus>(data),
        serde_json::from_slice::<serde_json::Value>(data).is_ok(),
    ];
    // The relay's rewrite of a POSTed join request, as web.rs does it.
    if let Ok(mut req) = serde_json::from_slice::<RegisterRequest>(data) {
        req.remote_addr = "192.0.2.1".into();
        let _ = format!("{req:?}");
        round_trips(&Request::Register(req));
    }
    parsed.iter().map(|p| if *p { '1' } else { '0' }).collect()
}

#[test]
fn json_message_types() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let reqs = samples::requests(samples::TEST_CSR);
    let resps = samples::responses(samples::TEST_CSR);
    seeds.extend(reqs.iter().map(|m| serde_json::to_vec(m).unwrap()));
    seeds.extend(resps.iter().map(|m| serde_json::to_vec(m).unwrap()));
    seeds.push(register_body());
    seeds.push(serde_json::to_vec(&samples::stream_hello()).unwrap());
    seeds.extend(
        samples::admin_cmds()
            .iter()
            .map(|c| serde_json::to_vec(c).unwrap()),
    );
    seeds.push(serde_json::to_vec(&samples::proxy_info()).unwrap());
    seeds.push(serde_json::to_vec(&samples::token_created()).unwrap());
    seeds.push(serde_json::to_vec(&samples::token_info()).unwrap());
    seeds.push(serde_json::to_vec(&samples::node_info()).unwrap());
    seeds.push(serde_json::to_vec(&samples::cluster_status()).unwrap());
    fuzz(Target {
        name: "json_messages",
        weight: 1.0,
        seeds,
        dict: samples::JSON_DICT,
        max_len: 64 * 1024,
        run: json_messages,
    });
}

// ---------------------------------------------------------------------------------------------
// CSRs, pins, certificates, identities

/// Signs whatever CSR the input is; the issued certificate must carry the subject auth chose.
fn sign(csr_pem: &str) -> String {
    let f = fixtures();
    let r = f.ca.sign_csr(csr_pem, &subject(), &Sans::default());
    if let Ok(cert) = &r {
        let der = der_of(cert);
        assert_eq!(
            subject_of(&der).unwrap(),
            subject(),
            "the requester chose the subject"
        );
    }
    outcome(&r)
}

fn csr_pem(data: &[u8]) -> String {
    sign(&String::from_utf8_lossy(data))
}

fn csr_der(data: &[u8]) -> String {
    sign(&pem("CERTIFICATE REQUEST", data))
}

const PEM_DICT: &[&str] = &[
    "-----BEGIN CERTIFICATE REQUEST-----\n",
    "-----END CERTIFICATE REQUEST-----\n",
    "-----BEGIN CERTIFICATE-----\n",
    "-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\n",
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN ",
    "-----END ",
    "=",
    "==",
    "\n",
    "AAAA",
    "////",
    "MII",
];

const DER_DICT: &[&str] = &[
    "\u{30}\u{0}",
    "\u{6}\u{3}\u{55}\u{4}\u{3}",
    "\u{5}\u{0}",
    "\u{2}\u{1}\u{0}",
    "\u{13}\u{1}a",
    "\u{c}\u{1}a",
    "\u{a0}\u{0}",
    "\u{3}\u{1}\u{0}",
];

#[test]
fn csr_pem_signing() {
    fuzz(Target {
        name: "csr_pem",
        weight: 1.0,
        seeds: std::iter::once(samples::TEST_CSR)
            .chain(fixtures().csrs.iter().map(String::as_str))
            .map(|c| c.as_bytes().to_vec())
            .collect(),
        dict: PEM_DICT,
        max_len: 16 * 1024,
        run: csr_pem,
    });
}

#[test]
fn csr_der_signing() {
    let seeds = std::iter::once(samples::TEST_CSR)
        .chain(fixtures().csrs.iter().map(String::as_str))
        .map(|c| {
            CertificateSigningRequestDer::from_pem_slice(c.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        })
        .collect();
    fuzz(Target {
        name: "csr_der",
        weight: 1.0,
        seeds,
        dict: DER_DICT,
        max_len: 8 * 1024,
        run: csr_der,
    });
}

/// The element at the start of `d`: (header length, total length).
fn der_element(d: &[u8]) -> Option<(usize, usize)> {
    let first = usize::from(*d.get(1)?);
    let (header, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*d.get(2 + i)?);
        }
        (2 + n, len)
    };
    Some((header, header.checked_add(len)?))
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A key pair an attacker holds: CSRs whose content is mutated but whose signature is valid.
struct Signer {
    key: ring::signature::EcdsaKeyPair,
    /// The CertificationRequestInfo of CSRs made by rcgen with this key (several shapes).
    infos: Vec<Vec<u8>>,
}

fn signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| {
        let key = rcgen::KeyPair::from_pem(samples::TEST_KEY).unwrap();
        let mut infos = Vec::new();
        let mut shapes = vec![rcgen::CertificateParams::default()];
        let mut p = rcgen::CertificateParams::new(vec![
            "node-1".to_string(),
            "auth.example.com".to_string(),
        ])
        .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "node-1");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Admin");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "example.com");
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        shapes.push(p);
        for params in shapes {
            let der = params.serialize_request(&key).unwrap().der().to_vec();
            let (outer, _) = der_element(&der).unwrap();
            let (_, info_len) = der_element(&der[outer..]).unwrap();
            infos.push(der[outer..outer + info_len].to_vec());
        }
        let pkcs8 = key.serialize_der();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Signer { key, infos }
    })
}

/// Signs a (mutated) CertificationRequestInfo with the attacker's key and submits the CSR:
/// this reaches everything after the signature check.
fn csr_signed(info: &[u8]) -> String {
    let s = signer();
    let Ok(sig) = s.key.sign(&ring::rand::SystemRandom::new(), info) else {
        return "cannot sign".into();
    };
    // ecdsa-with-SHA256
    let alg = der_wrap(
        0x30,
        &der_wrap(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.as_ref());
    let mut body = info.to_vec();
    body.extend(alg);
    body.extend(der_wrap(0x03, &bits));
    sign(&pem("CERTIFICATE REQUEST", &der_wrap(0x30, &body)))
}

#[test]
fn csr_signed_signing() {
    fuzz(Target {
        name: "csr_signed",
        weight: 1.0,
        seeds: signer().infos.clone(),
        dict: DER_DICT,
        max_len: 8 * 1024,
        run: csr_signed,
    });
}

/// `Pin::parse` (flags, config, `tctl` output pasted by people) and its printed form.
fn pin(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    let r = Pin::parse(&s);
    if let Ok(p) = &r {
        let shown = p.to_string();
        assert_eq!(Pin::parse(&shown).ok().as_ref(), Some(p), "pin round trip");
        assert_eq!(
            shown,
            s.trim().to_ascii_lowercase(),
            "a pin prints as it was given"
        );
        let ca_der = der_of(&fixtures().ca.cert_pem);
        let own = Pin::of_cert(&ca_der).unwrap();
        assert_eq!(
            check_all(std::slice::from_ref(p), &[&ca_der]).is_ok(),
            *p == own
        );
    }
    outcome(&r)
}

#[test]
fn pin_parser() {
    let mut seeds = vec![
        samples::PIN.as_bytes().to_vec(),
        format!("sha256:{}", "0f".repeat(32)).into_bytes(),
    ];
    seeds.push(
        format!(
            "  {}\n",
            samples::PIN
                .to_ascii_uppercase()
                .replace("SHA256", "sha256")
        )
        .into_bytes(),
    );
    fuzz(Target {
        name: "pin",
        weight: 0.5,
        seeds,
        dict: &["sha256:", "sha1:", "SHA256:", "é", "0", "f", "F", "g"],
        max_len: 256,
        run: pin,
    });
}

/// PEM bundles: CA bundles from servers (`certs_from_pem`), identity files on disk.
fn cert_pem(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    let certs = certs_from_pem(&s);
    if let Ok(certs) = &certs {
        for c in certs {
            let _ = subject_of(c);
            let _ = Pin::of_cert(c);
        }
    }
    let id = Identity::from_pem(&s);
    if let Ok(id) = &id {
        let subject = id.subject().expect("from_pem checked the subject");
        let _ = id.ca_ders();
        let back = Identity::from_pem(&id.to_pem()).expect("an identity we read we can re-read");
        assert_eq!(back.subject().ok(), Some(subject));
    }
    format!("{} / {}", outcome(&certs), outcome(&id))
}

#[test]
fn cert_pem_bundles() {
    let f = fixtures();
    let seeds = vec![
        f.ca.cert_pem.clone().into_bytes(),
        f.node_cert_pem.clone().into_bytes(),
        format!("{}{}", f.ca.cert_pem, f.other_ca.cert_pem).into_bytes(),
        f.identity_pem.clone().into_bytes(),
        f.identity_pem.replace('\n', "\r\n").into_bytes(),
    ];
    fuzz(Target {
        name: "cert_pem",
        weight: 1.0,
        seeds,
        dict: PEM_DICT,
        max_len: 32 * 1024,
        run: cert_pem,
    });
}

/// DER certificates as servers and peers present them: subject (role, host ID, cluster) and
/// the pin check of a CA fetched without verification.
fn cert_der(data: &[u8]) -> String {
    let s = subject_of(data);
    let p = Pin::of_cert(data);
    // What renewals read of a certificate a tunnel or a relayed renewal presents.
    let facts = teleport_lite::pki::facts_of(data);
    let _ = teleport_lite::pki::sans_of(data);
    let _ = proof::verify(data, &fixtures().csrs[0], "3045022100");
    if let (Ok(facts), Ok(_)) = (&facts, &s) {
        let _ = facts.renew_at();
    }
    if let Ok(pin) = &p {
        assert!(check_all(std::slice::from_ref(pin), &[data]).is_ok());
        let ca_pin = Pin::of_cert(&der_of(&fixtures().ca.cert_pem)).unwrap();
        let _ = check_all(&[ca_pin], &[data, data]);
    }
    format!("{} / {}", outcome(&s), outcome(&p))
}

#[test]
fn cert_der_parsing() {
    let f = fixtures();
    let seeds = vec![
        der_of(&f.ca.cert_pem),
        der_of(&f.other_ca.cert_pem),
        der_of(&f.node_cert_pem),
    ];
    fuzz(Target {
        name: "cert_der",
        weight: 1.0,
        seeds,
        dict: DER_DICT,
        max_len: 16 * 1024,
        run: cert_der,
    });
}

/// Renewal proofs as a proxy relays them: hex of a signature over a CSR, checked against the
/// node's certificate. Only the real signature of that CSR verifies.
fn renewal_proof(data: &[u8]) -> String {
    let f = fixtures();
    let der = der_of(&f.node_cert_pem);
    let text = String::from_utf8_lossy(data);
    let ok = proof::verify(&der, &f.csrs[0], &text);
    if ok {
        // Hex is read in either case: the same bytes.
        assert!(
            text.eq_ignore_ascii_case(valid_proof()),
            "only the signature we made verifies: {text}"
        );
    }
    format!("verified={ok}")
}

/// A proof by the node's key of the first fixture CSR (ECDSA signatures differ each time, so
/// it is made once).
fn valid_proof() -> &'static String {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| {
        let id = Identity::from_pem(&fixtures().identity_pem).unwrap();
        proof::sign(&id.key_pem, &fixtures().csrs[0]).unwrap()
    })
}

#[test]
fn renewal_proofs() {
    let seeds = vec![
        valid_proof().clone().into_bytes(),
        b"".to_vec(),
        b"00".repeat(72),
    ];
    fuzz(Target {
        name: "renewal_proof",
        weight: 0.5,
        seeds,
        dict: &["30", "02", "21", "00", "ff"],
        max_len: 1024,
        run: renewal_proof,
    });
}

// ---------------------------------------------------------------------------------------------
// Config

/// Values that would make `Settings::merge` read a file: a fuzzer must not read /dev/zero.
fn no_file_reads(cfg: &mut FileConfig) {
    let file_like = |v: &str| v.starts_with('/') || v.starts_with("./");
    if let Some(j) = cfg.teleport.join_params.as_mut() {
        if j.token_name.as_deref().is_some_and(file_like) {
            j.token_name = Some("token".into());
        }
    }
    if cfg.teleport.auth_token.as_deref().is_some_and(file_like) {
        cfg.teleport.auth_token = Some("token".into());
    }
    for t in &mut cfg.auth_service.tokens {
        if let Some((roles, value)) = t.split_once(':') {
            if value.starts_with('/') {
                *t = format!("{roles}:token");
            }
        }
    }
}

/// The config file, then the merge into settings as `teleport start -c` does.
fn config_yaml(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let origin = Path::new("fuzz.yaml");
    match config::parse_file_config(&text, origin) {
        Ok(mut cfg) => {
            no_file_reads(&mut cfg);
            let s = config::Settings::merge(cfg, Some(origin.into()), &StartFlags::default());
            format!("parsed / {}", outcome(&s))
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("fuzz.yaml"),
                "config error without the file: {e}"
            );
            class(&e)
        }
    }
}

fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        seeds.push(std::fs::read(e.path()).unwrap());
    }
    let pin = samples::PIN.to_string();
    let inputs = [
        ConfigureInput {
            roles: Roles {
                node: true,
                ..Roles::default()
            },
            token: Some(samples::TOKEN.into()),
            proxy: Some("proxy.example.com:443".into()),
            ca_pins: vec![pin.clone()],
            node_name: Some("node-1".into()),
            labels: [("env".to_string(), "prod".to_string())].into(),
            ..ConfigureInput::default()
        },
        ConfigureInput {
            roles: Roles {
                auth: true,
                node: true,
                proxy: true,
            },
            node_name: Some("aio".into()),
            cluster_name: Some("example.com".into()),
            ca_pins: vec![pin.clone(), pin.replace('7', "8")],
            ..ConfigureInput::default()
        },
        ConfigureInput {
            roles: Roles {
                node: true,
                ..Roles::default()
            },
            token: Some("/var/lib/token".into()),
            auth_server: Some("10.0.0.1".into()),
            node_name: Some("n".into()),
            ..ConfigureInput::default()
        },
    ];
    for i in &inputs {
        seeds.push(config::render_config(i).unwrap().into_bytes());
    }
    // Keys the renderer does not write.
    seeds.push(
        b"version: v3\nteleport:\n  nodename: p1\n  data_dir: /tmp/x\n  auth_server: a:3025\n  \
          ca_pin: [\"sha256:00\"]\n  diag_addr: 127.0.0.1:3000\n  advertise_ip: 10.0.0.1\n  \
          log:\n    output: /var/log/t.log\n    severity: debug\n    format:\n      output: json\n\
          \x20     extra_fields: [level]\nauth_service:\n  enabled: no\n  tokens:\n  - \
          'proxy,node:secret'\n  - 'auth:/path'\n  heartbeat_interval: 1h30m\n  \
          proxy_listener_mode: multiplex\nssh_service:\n  enabled: no\n  public_addr: [a:1]\n\
          proxy_service:\n  enabled: on\n  web_listen_addr: 0.0.0.0:3080\n  public_addr: \
          p.example.com\n  https_keypairs:\n  - cert_file: /c\n    key_file: /k\n  \
          https_keypairs_reload_interval: 1h\n  acme: {enabled: no}\n"
            .to_vec(),
    );
    seeds
}

#[test]
fn config_file() {
    fuzz(Target {
        name: "config_yaml",
        weight: 1.0,
        seeds: config_seeds(),
        dict: &[
            ": ",
            "- ",
            "\n  ",
            "&a ",
            "*a",
            "<<: *a",
            "!!binary ",
            "!!str ",
            "? ",
            "|\n",
            ">-\n",
            "---\n",
            "...\n",
            "{",
            "[",
            "'",
            "~",
            "yes",
            "no",
            "version: v3\n",
            "enabled: ",
            "ca_pin: ",
            "sha256:",
            "heartbeat_interval: ",
            "listen_addr: ",
            "0.0.0.0:",
            "[::1]:",
            "tokens: ",
            "%YAML 1.2\n",
            "\t",
        ],
        max_len: 16 * 1024,
        run: config_yaml,
    });
}

/// The small parsers of flags and config values.
fn config_strings(data: &[u8]) -> String {
    let (which, rest) = data.split_first().unwrap_or((&0, &[]));
    let s = String::from_utf8_lossy(rest).into_owned();
    let r = match which % 9 {
        0 => teleport_lite::clock::parse_duration(&s).map(|_| ()),
        1 => Roles::parse(&s).map(|_| ()).map_err(|e| e.to_string()),
        2 => config::parse_labels(&s)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        3 => config::normalize_addr(&s, 3025, "addr")
            .map(|_| ())
            .map_err(|e| e.to_string()),
        4 => config::parse_output(&s)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        5 => config::validate_name(&s, "name").map_err(|e| e.to_string()),
        6 => {
            let entries: Vec<String> = s
                .split('\n')
                .filter(|e| !e.split_once(':').is_some_and(|(_, v)| v.starts_with('/')))
                .map(str::to_string)
                .collect();
            config::parse_static_tokens(&entries)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        7 => TokenRole::parse(&s).map(|_| ()),
        _ => parse_roles(&s.split(' ').map(str::to_string).collect::<Vec<_>>()).map(|_| ()),
    };
    format!("{} {}", which % 9, outcome(&r))
}

#[test]
fn config_value_strings() {
    let seeds = [
        (0u8, "1h30m"),
        (0, "250ms"),
        (0, "90"),
        (1, "auth,node,proxy"),
        (2, "env=prod, team = a"),
        (3, "[::1]:3025"),
        (3, "auth.example.com"),
        (4, "file:///etc/teleport.yaml"),
        (5, "node-1.example_com"),
        (6, "proxy,node:secret\nauth:xyz"),
        (7, "WindowsDesktop"),
        (8, "node,proxy bot"),
    ]
    .iter()
    .map(|(w, s)| {
        let mut v = vec![*w];
        v.extend_from_slice(s.as_bytes());
        v
    })
    .collect();
    fuzz(Target {
        name: "config_strings",
        weight: 0.5,
        seeds,
        dict: &["ms", "h", "m", "s", ":", "=", ",", "[", "]", "file://", "é"],
        max_len: 512,
        run: config_strings,
    });
}

// ---------------------------------------------------------------------------------------------
// The PROXY protocol v2 header parser. Seeds are valid v2 headers (TCP4, TCP6, UNIX, LOCAL)
// and a v1 line, each followed by the start of a TLS ClientHello.
fn proxy_v2_header(fam: u8, cmd: u8, addrs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(addrs);
    h.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05]);
    h
}

fn proxy_protocol(data: &[u8]) -> String {
    let r = teleport_lite::net::proxy_protocol::parse(data);
    class(&format!("{r:?}"))
}

#[test]
fn proxy_protocol_header() {
    let tcp4 = [192, 0, 2, 1, 10, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb];
    let mut tcp6 = vec![0u8; 32];
    tcp6[15] = 1;
    tcp6[31] = 2;
    tcp6.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
    let mut unix = vec![0u8; 216];
    unix[..5].copy_from_slice(b"/tmp/");
    let mut tlv = tcp4.to_vec();
    tlv.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_NOOP
    let seeds = vec![
        proxy_v2_header(0x11, 1, &tcp4),
        proxy_v2_header(0x21, 1, &tcp6),
        proxy_v2_header(0x31, 1, &unix),
        proxy_v2_header(0x00, 0, &[]),
        proxy_v2_header(0x11, 1, &tlv),
        b"PROXY TCP4 192.0.2.1 10.0.0.1 12345 443\r\n\x16\x03\x01".to_vec(),
    ];
    fuzz(Target {
        name: "proxy_protocol",
        weight: 1.0,
        seeds,
        dict: &["\r\n\r\n\0\r\nQUIT\n", "PROXY ", "TCP4 ", "UNKNOWN"],
        max_len: 1024,
        run: proxy_protocol,
    });
}
