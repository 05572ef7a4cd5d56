//! Valid inputs produced by the code itself: every wire message, HTTP requests as the client
//! writes them, HTTP responses as the servers write them, CSRs, certificates and identities.
//! They are the seeds that mutations start from. Shared by `tests/fuzz` and
//! `tests/live_fuzz.rs`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use teleport_lite::http;
use teleport_lite::proto::names::{CREDENTIALS_PATH, EXPORT_PATH};
use teleport_lite::proto::{
    AdminCmd, ClusterStatus, Denial, ErrorCode, LockInfo, LockTarget, NodeInfo, ProxyHello,
    ProxyInfo, ProxyRef, RegisterRequest, RelayedBeat, Request, Response, RotateRequest,
    RotationInfo, StreamHello, TokenCreated, TokenInfo, TrustInfo, WebTrust, PROTOCOL_VERSION,
};

/// An in-memory connection: reads return `reply` in chunks of at most `chunk` bytes, writes
/// are kept.
pub struct MemIo {
    pub reply: Vec<u8>,
    pub pos: usize,
    pub chunk: usize,
    pub written: Vec<u8>,
}

impl MemIo {
    pub fn new(reply: &[u8], chunk: usize) -> MemIo {
        MemIo {
            reply: reply.to_vec(),
            pos: 0,
            chunk: chunk.max(1),
            written: Vec::new(),
        }
    }
}

impl AsyncRead for MemIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.chunk).min(self.reply.len() - self.pos);
        let pos = self.pos;
        buf[..n].copy_from_slice(&self.reply[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for MemIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const HOST_ID: &str = "6805dda3-779e-493b-8e9a-000000000001";
pub const PIN: &str = "sha256:7e1e9047f02220247e1e9047f02220247e1e9047f02220247e1e9047f0222024";

/// A fixed P-256 key for tests only (not a secret): the "attacker" that signs mutated CSRs in
/// tests/fuzz, fixed so that a replayed input takes the same path.
pub const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKy5Wlr7TjanLA3WB
cFcwws2pxRa6dqptgP6qBYx1eU2hRANCAAR+si5S59OOOmq0lni2/QLf34+I3K1x
yp7Zci9iNGmaMlHvL8SPrPBBUBSRzY+fbumRJBgO/+U4BC6CT7roOrgY
-----END PRIVATE KEY-----
";

/// A CSR of `TEST_KEY` (CN and DNS name node-1): a fixed one keeps seeds that carry a CSR as
/// a string the same from run to run, so a seed replays the same mutants.
pub const TEST_CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHwMIGXAgEAMBExDzANBgNVBAMMBm5vZGUtMTBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABH6yLlLn0446arSWeLb9At/fj4jcrXHKntlyL2I0aZoyUe8vxI+s8EFQ
FJHNj59u6ZEkGA7/5TgELoJPuug6uBigJDAiBgkqhkiG9w0BCQ4xFTATMBEGA1Ud
EQQKMAiCBm5vZGUtMTAKBggqhkjOPQQDAgNIADBFAiAF6lgp5vODHaYDWQNTlqlF
nK0l/uMlqehNcUygICZF4gIhAKjM4X/v5MzlL0ZlVWzHtHSZStpDCEGbwJU+SFVz
Vsfo
-----END CERTIFICATE REQUEST-----
";

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("env".to_string(), "prod".to_string()),
        ("hostname".to_string(), "node-1".to_string()),
    ])
}

pub fn register_request(csr: &str, role: &str) -> RegisterRequest {
    RegisterRequest {
        version: PROTOCOL_VERSION,
        token: TOKEN.into(),
        host_id: HOST_ID.into(),
        node_name: "node-1".into(),
        role: role.into(),
        csr: csr.into(),
        labels: labels(),
        remote_addr: "192.0.2.7".into(),
        dns_names: vec!["proxy.example.com".into(), "10.0.0.1".into()],
    }
}

pub fn stream_hello() -> StreamHello {
    StreamHello {
        version: PROTOCOL_VERSION,
        node_name: "node-1".into(),
        server_version: teleport_lite::VERSION.into(),
        labels: labels(),
        public_addr: "10.0.0.5:3022".into(),
    }
}

/// One of every request, with every admin command.
pub fn requests(csr: &str) -> Vec<Request> {
    let v = PROTOCOL_VERSION;
    let mut out = vec![
        Request::GetCa { version: v },
        Request::Register(register_request(csr, "Node")),
        Request::Register(register_request(csr, "proxy")),
        Request::Hello(stream_hello()),
        Request::Heartbeat { seq: 7 },
        Request::Goodbye,
        Request::ProxyHello(ProxyHello {
            version: v,
            name: "proxy-1".into(),
            public_addr: "proxy.example.com:443".into(),
            server_version: teleport_lite::VERSION.into(),
            web: web_trust(),
        }),
        Request::Relay(RelayedBeat {
            host_id: HOST_ID.into(),
            node_name: "node-1".into(),
            server_version: teleport_lite::VERSION.into(),
            labels: labels(),
        }),
        Request::RelayGoodbye {
            host_id: HOST_ID.into(),
        },
        Request::TunnelHello(stream_hello()),
        Request::CheckToken {
            version: v,
            token: TOKEN.into(),
            role: "node".into(),
            remote_addr: "192.0.2.7".into(),
        },
        Request::Dial {
            version: v,
            node: "node-1".into(),
            addr: "127.0.0.1:22".into(),
        },
        Request::Renew {
            csr: csr.into(),
            proof: "30440220".into(),
        },
        // The shape of a refresh; its certificate is checked, not parsed, by the decoder.
        Request::Refresh { cert: csr.into() },
        Request::RelayRenew {
            id: 9,
            host_id: HOST_ID.into(),
            csr: csr.into(),
            cert: String::new(),
            proof: "30440220".into(),
        },
    ];
    for cmd in admin_cmds() {
        out.push(Request::Admin { version: v, cmd });
    }
    out
}

pub fn admin_cmds() -> Vec<AdminCmd> {
    vec![
        AdminCmd::TokensAdd {
            roles: vec!["node".into(), "proxy".into()],
            ttl_secs: 300,
            labels: labels(),
            uses: Some(3),
        },
        AdminCmd::TokensList,
        AdminCmd::TokensRemove {
            token: TOKEN.into(),
        },
        AdminCmd::NodesList,
        AdminCmd::ProxiesList,
        AdminCmd::Status,
        AdminCmd::UserSign {
            user: "alice".into(),
            ttl_secs: 8 * 3600,
            csr: TEST_CSR.into(),
        },
        AdminCmd::NodesRemove {
            node: "node-1".into(),
        },
        AdminCmd::LockCreate {
            target: LockTarget::ServerId(HOST_ID.into()),
            message: "compromised".into(),
            ttl_secs: Some(3600),
        },
        AdminCmd::LockCreate {
            target: LockTarget::User("alice".into()),
            message: String::new(),
            ttl_secs: None,
        },
        AdminCmd::LocksList,
        AdminCmd::LockDelete {
            target: LockTarget::ServerId(HOST_ID.into()),
        },
        AdminCmd::Rotate(RotateRequest {
            ca_type: "host".into(),
            manual: true,
            phase: Some("init".into()),
            grace_secs: None,
        }),
        AdminCmd::Rotate(RotateRequest {
            ca_type: "host".into(),
            manual: false,
            phase: None,
            grace_secs: Some(8 * 3600),
        }),
        AdminCmd::AuditList {
            since: Some(1_800_000_000),
            limit: 100,
        },
    ]
}

pub fn lock_info() -> LockInfo {
    LockInfo {
        target: LockTarget::ServerId(HOST_ID.into()),
        message: "compromised".into(),
        created: 1_800_000_000,
        expires: Some(1_800_003_600),
    }
}

pub fn rotation_info() -> RotationInfo {
    RotationInfo {
        state: "in_progress".into(),
        phase: "update_clients".into(),
        mode: "auto".into(),
        started: 1_800_000_000,
        grace_secs: 30 * 3600,
        last_rotated: 0,
        next_phase_at: 1_800_036_000,
    }
}

pub fn proxy_ref() -> ProxyRef {
    ProxyRef {
        id: HOST_ID.into(),
        name: "proxy-1".into(),
    }
}

/// One of every response.
pub fn responses(cert_pem: &str) -> Vec<Response> {
    vec![
        Response::Ca {
            cluster_name: "example.com".into(),
            certs: vec![cert_pem.into()],
        },
        Response::Registered {
            tls: cert_pem.into(),
            tls_ca_certs: vec![cert_pem.into()],
            cluster_name: "example.com".into(),
        },
        Response::HelloAck {
            cluster_name: "example.com".into(),
            server_version: teleport_lite::VERSION.into(),
            heartbeat_interval_ms: 5000,
            proxies: vec![proxy_ref()],
        },
        Response::HeartbeatAck {
            seq: 7,
            proxies: vec![proxy_ref()],
            relayed: false,
            renew: true,
            quiet: false,
        },
        Response::HeartbeatAck {
            seq: 8,
            proxies: vec![],
            relayed: true,
            renew: false,
            quiet: false,
        },
        Response::TunnelWelcome {
            proxy: proxy_ref(),
            cluster_name: "example.com".into(),
            heartbeat_interval_ms: 5000,
            proxies: vec![proxy_ref()],
        },
        Response::DialOk,
        Response::TokenOk,
        Response::GoodbyeAck,
        Response::TokenCreated(token_created()),
        Response::ProxyWeb(web_trust()),
        Response::Tokens {
            tokens: vec![token_info()],
        },
        Response::TokenRemoved {
            masked: "****cdef".into(),
        },
        Response::Nodes {
            nodes: vec![node_info()],
        },
        Response::Proxies {
            proxies: vec![proxy_info()],
        },
        Response::Status(cluster_status()),
        Response::UserCert {
            cert: cert_pem.into(),
            ca_certs: vec![cert_pem.into()],
            expires: 1_900_000_000,
        },
        Response::Renewed {
            tls: cert_pem.into(),
            tls_ca_certs: vec![cert_pem.into(), cert_pem.into()],
            expires: 1_900_000_000,
            ca_proof: vec!["3045022100".into()],
        },
        Response::Refreshed {
            expires: 1_900_000_000,
        },
        Response::RelayAnswer {
            id: 9,
            answer: Box::new(Response::error(ErrorCode::AccessDenied, "locked")),
        },
        Response::Trust(TrustInfo {
            ca_certs: vec![cert_pem.into(), cert_pem.into()],
            client_signer: 1,
            server_signer: 0,
            changed: 1_800_000_000,
            retired_at: 1_799_000_000,
            host_cert_ttl_secs: 24 * 3600,
        }),
        Response::Denied {
            denials: vec![Denial {
                target: LockTarget::ServerId(HOST_ID.into()),
                message: "compromised".into(),
            }],
        },
        Response::NodeRemoved {
            hostname: "node-1".into(),
            uuid: HOST_ID.into(),
        },
        Response::Locks {
            locks: vec![lock_info()],
        },
        Response::LockCreated(lock_info()),
        Response::LockDeleted {
            target: LockTarget::User("alice".into()),
        },
        Response::Rotation(rotation_info()),
        Response::Audit {
            events: vec![serde_json::from_str(
                r#"{"time":"2027-01-01T00:00:00Z","event":"lock.created","server_id":"x"}"#,
            )
            .expect("json")],
            truncated: false,
        },
        Response::error(ErrorCode::AccessDenied, "the token is not valid"),
        Response::error(ErrorCode::RateLimited, "too many"),
        teleport_lite::proto::version_mismatch(PROTOCOL_VERSION + 1),
    ]
}

pub fn token_created() -> TokenCreated {
    TokenCreated {
        token: TOKEN.into(),
        roles: vec!["Node".into()],
        expires: "2030-01-01T00:00:00Z".into(),
        ttl_secs: 300,
        ca_pins: vec![PIN.into()],
        auth_addr: "10.0.0.1:3025".into(),
        proxy_addr: "proxy.example.com:443".into(),
        proxy_web: web_trust(),
    }
}

pub fn web_trust() -> WebTrust {
    WebTrust {
        pins: vec!["sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()],
        public: false,
    }
}

pub fn token_info() -> TokenInfo {
    TokenInfo {
        id: "0123abcd".into(),
        masked: "****cdef".into(),
        roles: vec!["Node".into()],
        labels: labels(),
        expires: Some(1_900_000_000),
        is_static: false,
        uses_left: Some(2),
    }
}

pub fn node_info() -> NodeInfo {
    NodeInfo {
        hostname: "node-1".into(),
        uuid: HOST_ID.into(),
        addr: "10.0.0.5:3022".into(),
        labels: labels(),
        version: teleport_lite::VERSION.into(),
        tunnels: vec!["proxy-1".into()],
    }
}

pub fn proxy_info() -> ProxyInfo {
    ProxyInfo {
        name: "proxy-1".into(),
        uuid: HOST_ID.into(),
        addr: "proxy.example.com:443".into(),
        version: teleport_lite::VERSION.into(),
        tunnels: 3,
    }
}

pub fn cluster_status() -> ClusterStatus {
    ClusterStatus {
        cluster_name: "example.com".into(),
        version: teleport_lite::VERSION.into(),
        host_ca_rotation: "standby".into(),
        ca_pins: vec![PIN.into()],
        nodes_online: 2,
        rotation: Box::new(rotation_info()),
        host_cert_ttl_secs: 24 * 3600,
        storage: "postgresql://teleport@db.example.com:5432/teleport?sslmode=verify-full".into(),
    }
}

/// The request bytes `http::roundtrip` writes for a call.
pub fn client_request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut io = MemIo::new(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4096);
    let _ = futures_lite::future::block_on(http::roundtrip(
        &mut io,
        method,
        "proxy.example.com:3080",
        path,
        body,
    ));
    io.written
}

/// Paths of the proxy's web API and the diagnostics endpoints.
pub const WEB_PATHS: &[&str] = &[
    "/v1/webapi/find",
    "/webapi/find",
    "/v1/webapi/ping",
    EXPORT_PATH,
    "/webapi/auth/export?type=tls-host&x=1",
    CREDENTIALS_PATH,
    "/scripts/install.sh",
    "/v1/scripts/0123456789abcdef0123456789abcdef/install-node.sh",
    "/scripts/a/install-node.sh",
    "/webapi/systemd/teleport.service",
    "/v1/webapi/binary/teleport-linux-amd64",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "*",
];

/// Requests as the client writes them, for every path; the join relay with its real body.
pub fn http_requests(register_body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in WEB_PATHS {
        out.push(client_request("GET", p, None));
    }
    out.push(client_request(
        "POST",
        CREDENTIALS_PATH,
        Some(register_body),
    ));
    out.push(client_request("PUT", "/v1/webapi/find", Some(b"{}")));
    out.push(b"GET /webapi/find HTTP/1.0\r\n\r\n".to_vec());
    out.push(
        b"POST /webapi/host/credentials HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            .to_vec(),
    );
    out.push(
        b"POST /v1/webapi/host/credentials HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"
            .to_vec(),
    );
    out
}

/// Responses as the servers write them.
pub fn http_responses(join_answer: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (status, ctype, body) in [
        (200u16, "application/json", join_answer.to_vec()),
        (
            400,
            "application/json",
            br#"{"error":{"message":"malformed join request"}}"#.to_vec(),
        ),
        (403, "application/json", b"{}".to_vec()),
        (429, "application/json", b"".to_vec()),
        (
            200,
            "text/plain; version=0.0.4",
            b"teleport_ready 1\n".to_vec(),
        ),
        (502, "text/x-shellscript", b"#!/bin/sh\nexit 1\n".to_vec()),
    ] {
        let mut w: Vec<u8> = Vec::new();
        let _ = futures_lite::future::block_on(http::write_response(&mut w, status, ctype, &body));
        out.push(w);
    }
    out
}

/// A yamux frame header (version 0): type, flags, stream id, length.
pub fn yamux_header(kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0, kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A yamux data frame on `stream`, opening it with SYN when `open`.
pub fn yamux_data(stream: u32, open: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = yamux_header(0, if open { 1 } else { 0 }, stream, payload.len() as u32);
    f.extend_from_slice(payload);
    f
}

pub const HTTP_DICT: &[&str] = &[
    "GET ",
    "POST ",
    "HEAD ",
    " HTTP/1.1",
    " HTTP/1.0",
    " HTTP/2",
    "Content-Length: ",
    "content-length:",
    "Transfer-Encoding: chunked",
    "Connection: keep-alive",
    "Host: ",
    "Expect: 100-continue",
    "/v1",
    "/webapi/",
    "/scripts/",
    "/install-node.sh",
    "/install.sh",
    "?type=tls-host",
    "%2e%2e/",
    "../",
    "//",
    ": ",
    " \t",
    "\n\n",
    "\r\r",
    "HTTP/1.1 200 OK\r\n",
    "HTTP/1.1 ",
    "{\"tls\":\"",
    "{\"error\":{\"message\":",
];

pub const JSON_DICT: &[&str] = &[
    "\"type\":",
    "\"version\":",
    "\"op\":",
    "\"get_ca\"",
    "\"register\"",
    "\"admin\"",
    "\"hello\"",
    "\"heartbeat\"",
    "\"goodbye\"",
    "\"proxy_hello\"",
    "\"relay\"",
    "\"relay_goodbye\"",
    "\"tunnel_hello\"",
    "\"check_token\"",
    "\"dial\"",
    "\"tokens_add\"",
    "\"status\"",
    "\"error\"",
    "\"hostID\":",
    "\"csr\":",
    "\"labels\":{",
    "\"dns_names\":[",
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "\\u0000",
    "\\ud800",
    "\\\"",
    "1e400",
    "-0",
    "[[[[[[[[[[[[[[[[",
];
