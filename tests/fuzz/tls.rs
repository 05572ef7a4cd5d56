//! The server side of TLS (`net::lean_tls`, on auth's and the proxy's ports): whatever a
//! client sends, cut into reads of every size, through the handshake and after it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustls::pki_types::ServerName;
use teleport_lite::net::lean_tls;
use teleport_lite::pki::ca::Sans;
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::Subject;
use teleport_lite::proto::AUTH_SERVER_NAME;

use crate::harness::{fuzz, Target};
use crate::{class, fixtures};

/// The input as a peer's byte stream: reads of at most `cut` bytes, then the end.
struct Script {
    input: Vec<u8>,
    at: usize,
    cut: usize,
}

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(this.cut).min(this.input.len() - this.at);
        buf[..n].copy_from_slice(&this.input[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub fn server_config() -> Arc<rustls::ServerConfig> {
    static C: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let ca = &fixtures().ca;
        let subject = Subject {
            role: "Auth".into(),
            ..crate::subject()
        };
        let sans = Sans {
            dns: vec![AUTH_SERVER_NAME.into()],
            ips: Vec::new(),
        };
        let (key_pem, cert_pem) = ca
            .issue_local(&subject, &sans, std::time::Duration::from_secs(3600))
            .unwrap();
        let id = Identity {
            key_pem,
            cert_pem,
            ca_pems: vec![ca.cert_pem.clone()],
        };
        teleport_lite::net::server_config(&id).unwrap()
    })
    .clone()
}

/// What a real client sends: its hello alone, and a whole session (hello, its second flight
/// with a certificate, a message, close_notify) played against a buffered rustls server.
fn seeds() -> Vec<Vec<u8>> {
    let f = fixtures();
    let id = Identity::from_pem(&f.identity_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(f.ca.cert_der().unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(teleport_lite::net::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![id.cert_der().unwrap()], id.key_der().unwrap())
        .unwrap();
    let name = ServerName::try_from(AUTH_SERVER_NAME).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut server = rustls::ServerConnection::new(server_config()).unwrap();
    let mut sent = Vec::new();
    let mut hello = Vec::new();
    for round in 0..6 {
        let mut c2s = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut c2s).unwrap();
        }
        if round == 0 {
            hello = c2s.clone();
        }
        if round == 3 {
            use std::io::Write;
            client
                .writer()
                .write_all(b"{\"type\":\"heartbeat\",\"seq\":1}\n")
                .unwrap();
            client.send_close_notify();
            while client.wants_write() {
                client.write_tls(&mut c2s).unwrap();
            }
        }
        sent.extend_from_slice(&c2s);
        let _ = server.read_tls(&mut &c2s[..]);
        let _ = server.process_new_packets();
        let mut s2c = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut s2c).unwrap();
        }
        let _ = client.read_tls(&mut &s2c[..]);
        if let Err(e) = client.process_new_packets() {
            panic!("seed session: {e}");
        }
    }
    assert!(
        !client.is_handshaking(),
        "the seed session finished its handshake"
    );
    // The first byte of an input picks the read size.
    vec![
        [&[0u8][..], &hello].concat(),
        [&[7u8][..], &sent].concat(),
        [&[255u8][..], &sent].concat(),
    ]
}

fn run(data: &[u8]) -> String {
    let (cut, rest) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c) * 97 % 20000 + 1, rest),
        None => (1, data),
    };
    let io = Script {
        input: rest.to_vec(),
        at: 0,
        cut,
    };
    futures_lite::future::block_on(async {
        match lean_tls::accept(server_config(), io).await {
            Err(e) => class(&e.to_string()),
            Ok(mut s) => {
                let mut buf = [0u8; 1000];
                let end = loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break "ok".to_string(),
                        Ok(_) => {}
                        Err(e) => break class(&e.to_string()),
                    }
                };
                let _ = s.write_all(b"{}\n").await;
                let _ = s.close().await;
                assert_eq!(s.buffered(), 0, "a closed stream holds no buffer");
                end
            }
        }
    })
}

#[test]
fn tls_server() {
    fuzz(Target {
        name: "tls_server",
        weight: 1.0,
        seeds: seeds(),
        dict: &[
            "\x16\x03\x01",
            "\x17\x03\x03",
            "\x15\x03\x03\x00\x02",
            "\x14\x03\x03\x00\x01\x01",
        ],
        max_len: 70 * 1024,
        run,
    });
}
