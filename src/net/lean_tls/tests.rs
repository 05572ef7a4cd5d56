use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use smol::net::{TcpListener, TcpStream};

use super::*;
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::identity::Identity;
use crate::pki::Subject;

fn identity(ca: &CertAuthority, role: &str) -> Identity {
    let subject = Subject {
        host_id: format!("{role}-id"),
        role: role.into(),
        cluster: "c".into(),
        node_name: String::new(),
    };
    let sans = Sans {
        dns: vec![crate::proto::AUTH_SERVER_NAME.into()],
        ..Sans::default()
    };
    let (key_pem, cert_pem) = ca
        .issue_local(&subject, &sans, std::time::Duration::from_secs(600))
        .unwrap();
    Identity {
        key_pem,
        cert_pem,
        ca_pems: vec![ca.cert_pem.clone()],
    }
}

/// A client of the cluster `ca`, presenting `cert` (from any CA) when given.
fn client(ca: &CertAuthority, cert: Option<&Identity>) -> futures_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().unwrap()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(crate::net::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(id) => {
            let chain: Vec<CertificateDer<'static>> = vec![id.cert_der().unwrap()];
            let key: PrivateKeyDer<'static> = id.key_der().unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    futures_rustls::TlsConnector::from(Arc::new(config))
}

struct Pair {
    ca: CertAuthority,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
}

fn pair() -> Pair {
    let ca = CertAuthority::generate("c").unwrap();
    let server = identity(&ca, "Auth");
    let config = crate::net::server_config(&server).unwrap();
    let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    Pair {
        ca,
        listener,
        config,
    }
}

async fn connect(
    p: &Pair,
    cert: Option<&Identity>,
) -> std::io::Result<futures_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(p.listener.local_addr().unwrap()).await?;
    let name = ServerName::try_from(crate::proto::AUTH_SERVER_NAME).unwrap();
    client(&p.ca, cert).connect(name, tcp).await
}

async fn accepted(p: &Pair) -> std::io::Result<ServerStream<TcpStream>> {
    let (tcp, _) = p.listener.accept().await?;
    accept(p.config.clone(), tcp).await
}

/// Bytes that differ from position to position, so a lost or repeated chunk shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_megabyte_echoes_back_whole_in_writes_of_every_size_and_the_end_is_clean() {
    let p = pair();
    smol::block_on(async {
        let server = async {
            let mut s = accepted(&p).await.unwrap();
            let mut buf = vec![0u8; 3000]; // smaller than a record: plaintext waits in `plain`
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.flush().await.unwrap();
            s.close().await.unwrap();
            s.buffered()
        };
        let client = async {
            let mut c = connect(&p, None).await.unwrap();
            let data = pattern(1 << 20);
            let (mut r, mut w) = futures_lite::io::split(&mut c);
            let writer = async {
                let mut at = 0;
                for size in [1usize, 7, 100, 4096, 16384, 16385, 70000].iter().cycle() {
                    if at == data.len() {
                        break;
                    }
                    let end = (at + size).min(data.len());
                    w.write_all(&data[at..end]).await.unwrap();
                    at = end;
                }
                w.close().await.unwrap();
            };
            let reader = async {
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.unwrap();
                back
            };
            let ((), back) = futures_lite::future::zip(writer, reader).await;
            assert_eq!(back.len(), data.len());
            assert!(back == data, "the echoed bytes differ");
        };
        let (held, ()) = futures_lite::future::zip(server, client).await;
        assert_eq!(held, 0, "a closed stream holds no buffer");
    });
}

#[test]
fn an_idle_stream_holds_no_buffer_and_wakes_for_the_next_message() {
    let p = pair();
    smol::block_on(async {
        let (mut s, mut c) = futures_lite::future::zip(accepted(&p), connect(&p, None)).await;
        let (s, c) = (s.as_mut().unwrap(), c.as_mut().unwrap());
        for round in 0..3u8 {
            c.write_all(&[round; 200]).await.unwrap();
            c.flush().await.unwrap();
            let mut got = [0u8; 200];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [round; 200]);
            s.write_all(b"ack").await.unwrap();
            s.flush().await.unwrap();
            let mut ack = [0u8; 3];
            c.read_exact(&mut ack).await.unwrap();
            // The server waits for more: the read is pending, and nothing is kept.
            let mut one = [0u8; 1];
            let pending = futures_lite::future::poll_once(s.read(&mut one)).await;
            assert!(pending.is_none(), "nothing was sent");
            assert_eq!(s.buffered(), 0, "round {round}");
        }
    });
}

#[test]
fn a_stream_cut_without_close_notify_reads_as_an_error_not_as_its_end() {
    let p = pair();
    smol::block_on(async {
        let (mut s, c) = futures_lite::future::zip(accepted(&p), connect(&p, None)).await;
        let mut c = c.unwrap();
        c.write_all(b"partial").await.unwrap();
        c.flush().await.unwrap();
        c.get_ref().0.shutdown(std::net::Shutdown::Both).unwrap();
        let s = s.as_mut().unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).await.unwrap(), 7);
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    });
}

#[test]
fn a_client_certificate_of_another_ca_is_refused_with_an_alert_the_client_sees() {
    let p = pair();
    let foreign = identity(&CertAuthority::generate("c").unwrap(), "Node");
    smol::block_on(async {
        let (s, c) = futures_lite::future::zip(accepted(&p), async {
            let mut c = connect(&p, Some(&foreign)).await?;
            // TLS 1.3: the client learns of the refusal on its first read.
            let mut buf = [0u8; 1];
            c.read(&mut buf).await
        })
        .await;
        let server_err = s.err().expect("the server refuses the certificate");
        assert!(
            crate::error::net::tls_in(&server_err).is_some(),
            "{server_err}"
        );
        let client_err = c.expect_err("the client is told");
        let tls = crate::error::net::tls_in(&client_err).expect("a TLS error, not a cut stream");
        assert!(
            matches!(tls, rustls::Error::AlertReceived(_)),
            "the client got an alert: {tls:?}"
        );
    });
}

#[test]
fn a_client_certificate_of_the_cluster_is_seen_by_the_server() {
    let p = pair();
    let node = identity(&p.ca, "Node");
    smol::block_on(async {
        let (s, c) = futures_lite::future::zip(accepted(&p), connect(&p, Some(&node))).await;
        let (s, _c) = (s.unwrap(), c.unwrap());
        let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(crate::pki::subject_of(&der).unwrap().role, "Node");
        assert_eq!(s.get_ref().1.alpn_protocol(), None);
    });
}

#[test]
fn bytes_that_are_not_tls_fail_the_handshake_without_a_panic() {
    let p = pair();
    smol::block_on(async {
        let junk = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            vec![0x16, 0x03, 0x01, 0xff, 0xff], // a record header announcing 64 KiB, then EOF
            vec![0x16; 70 * 1024],              // more than any handshake message may be
            Vec::new(),
        ];
        for bytes in junk {
            let client = async {
                let mut tcp = TcpStream::connect(p.listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let _ = tcp.write_all(&bytes).await;
                let _ = tcp.shutdown(std::net::Shutdown::Write);
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
            };
            let (s, ()) = futures_lite::future::zip(accepted(&p), client).await;
            assert!(s.is_err(), "{} junk bytes were accepted", bytes.len());
        }
    });
}

#[test]
fn bytes_after_close_notify_are_not_kept_once_the_stream_is_closed() {
    let p = pair();
    smol::block_on(async {
        let (s, c) = futures_lite::future::zip(accepted(&p), connect(&p, None)).await;
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        c.write_all(b"last").await.unwrap();
        c.get_mut().1.send_close_notify();
        c.flush().await.unwrap();
        // Whatever follows close_notify in the same segment: rustls never looks at it.
        c.get_mut().0.write_all(&[0x17; 100]).await.unwrap();
        c.get_mut().0.flush().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last");
        s.close().await.unwrap();
        assert_eq!(s.buffered(), 0, "a closed stream holds no buffer");
    });
}

#[test]
fn a_key_update_the_client_asks_for_is_answered_and_data_flows_both_ways_after_it() {
    let p = pair();
    smol::block_on(async {
        let (s, c) = futures_lite::future::zip(accepted(&p), connect(&p, None)).await;
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        for round in 0..40u8 {
            c.get_mut().1.refresh_traffic_keys().unwrap();
            c.write_all(&[round; 300]).await.unwrap();
            c.flush().await.unwrap();
            let mut got = [0u8; 300];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [round; 300]);
            s.write_all(&[round; 10]).await.unwrap();
            s.flush().await.unwrap();
            let mut back = [0u8; 10];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round; 10]);
        }
    });
}

#[test]
fn a_stream_cut_inside_a_record_is_an_error_and_the_closed_stream_holds_no_buffer() {
    let p = pair();
    smol::block_on(async {
        let (s, c) = futures_lite::future::zip(accepted(&p), connect(&p, None)).await;
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        // One record's ciphertext, of which only the first half ever arrives.
        std::io::Write::write_all(&mut c.get_mut().1.writer(), &[7u8; 500]).unwrap();
        let mut record = Vec::new();
        c.get_mut().1.write_tls(&mut record).unwrap();
        let tcp = c.get_mut().0;
        tcp.write_all(&record[..record.len() / 2]).await.unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 64];
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let _ = s.write_all(b"bye").await;
        let _ = s.close().await;
        // Only the cut record's bytes may stay (not a 4 KiB or larger receive buffer).
        assert!(
            s.buffered() <= record.len() / 2,
            "{} bytes held",
            s.buffered()
        );
    });
}

/// A connected pair after the client sent one record whose tag no longer matches.
async fn corrupted_record(
    p: &Pair,
) -> (
    ServerStream<TcpStream>,
    futures_rustls::client::TlsStream<TcpStream>,
) {
    let (s, c) = futures_lite::future::zip(accepted(p), connect(p, None)).await;
    let (s, mut c) = (s.unwrap(), c.unwrap());
    std::io::Write::write_all(&mut c.get_mut().1.writer(), b"hello").unwrap();
    let mut record = Vec::new();
    c.get_mut().1.write_tls(&mut record).unwrap();
    *record.last_mut().unwrap() ^= 1;
    c.get_mut().0.write_all(&record).await.unwrap();
    (s, c)
}

#[test]
fn after_a_corrupted_record_the_error_stays_and_writing_or_closing_does_not_panic() {
    let p = pair();
    smol::block_on(async {
        let (mut s, mut c) = corrupted_record(&p).await;
        let mut buf = [0u8; 64];
        let first = s.read(&mut buf).await.unwrap_err();
        assert!(crate::error::net::tls_in(&first).is_some(), "{first}");
        // What a handler does next: answer, then close. rustls must not see the bad record
        // again (a second fatal alert; a debug assertion in rustls).
        let again = s.write_all(b"error").await.unwrap_err();
        assert!(crate::error::net::tls_in(&again).is_some(), "{again}");
        assert!(s.read(&mut buf).await.is_err());
        let _ = s.close().await;
        // The client was told why, with one fatal alert.
        let mut rest = Vec::new();
        let e = c.read_to_end(&mut rest).await.unwrap_err();
        let tls = crate::error::net::tls_in(&e).expect("a TLS error, not a cut stream");
        assert!(matches!(tls, rustls::Error::AlertReceived(_)), "{tls:?}");
    });
}

#[test]
fn a_corrupted_record_gets_its_alert_out_even_when_the_handler_drops_the_stream_at_once() {
    let p = pair();
    smol::block_on(async {
        let (mut s, mut c) = corrupted_record(&p).await;
        let mut buf = [0u8; 64];
        assert!(s.read(&mut buf).await.is_err());
        drop(s); // no close: what a handler does when its read fails
        let mut rest = Vec::new();
        let e = c.read_to_end(&mut rest).await.unwrap_err();
        let tls = crate::error::net::tls_in(&e).expect("a TLS error, not a cut stream");
        assert!(matches!(tls, rustls::Error::AlertReceived(_)), "{tls:?}");
    });
}
