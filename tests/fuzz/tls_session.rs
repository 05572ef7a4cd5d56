//! The server side of TLS after the handshake (`net::lean_tls`): a real client finishes the
//! handshake in memory, then the input is a script of what the client does (writes, key
//! updates, close_notify, raw or corrupted bytes, reads of every size on both sides, the end
//! of the stream). Mutated recorded sessions cannot reach this: a replayed client flight does
//! not decrypt under a new server's keys.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_lite::future::poll_once;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use teleport_lite::net::lean_tls::{self, ServerStream};
use teleport_lite::proto::AUTH_SERVER_NAME;

use crate::harness::{fuzz, Target};
use crate::{class, fixtures};

/// Bytes from the client; `Pending` when there are none and the stream has not ended.
#[derive(Default)]
struct Wire {
    bytes: VecDeque<u8>,
    eof: bool,
    /// Most bytes one read returns.
    cut: usize,
}

struct Pipe {
    wire: Rc<RefCell<Wire>>,
    back: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = self.wire.borrow_mut();
        if w.bytes.is_empty() {
            return if w.eof {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let n = buf.len().min(w.cut.max(1)).min(w.bytes.len());
        for (b, x) in buf[..n].iter_mut().zip(w.bytes.drain(..n)) {
            *b = x;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.back.borrow_mut().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    static C: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(fixtures().ca.cert_der().unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(teleport_lite::net::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    })
    .clone()
}

struct Session {
    client: ClientConnection,
    wire: Rc<RefCell<Wire>>,
    back: Rc<RefCell<Vec<u8>>>,
}

impl Session {
    /// What the client has to send goes onto the wire; returns where it starts.
    fn send(&mut self) -> usize {
        let mut w = self.wire.borrow_mut();
        let at = w.bytes.len();
        let mut out = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut out).unwrap();
        }
        w.bytes.extend(out);
        at
    }

    /// The client reads what the server sent (errors are the client's business).
    fn receive(&mut self) {
        let back = std::mem::take(&mut *self.back.borrow_mut());
        let mut rd = &back[..];
        while !rd.is_empty() {
            if self.client.read_tls(&mut rd).is_err() || self.client.process_new_packets().is_err()
            {
                return;
            }
        }
        let mut sink = Vec::new();
        let _ = self.client.reader().read_to_end(&mut sink);
    }
}

/// A client connected to a fresh server; `None` if the handshake did not finish.
async fn connect() -> Option<(Session, ServerStream<Pipe>)> {
    let name = ServerName::try_from(AUTH_SERVER_NAME).unwrap();
    let mut s = Session {
        client: ClientConnection::new(client_config(), name).unwrap(),
        wire: Rc::new(RefCell::new(Wire {
            cut: 1 << 20,
            ..Wire::default()
        })),
        back: Rc::default(),
    };
    let pipe = Pipe {
        wire: s.wire.clone(),
        back: s.back.clone(),
    };
    let mut accept = Box::pin(lean_tls::accept(crate::tls::server_config(), pipe));
    for _ in 0..8 {
        s.send();
        if let Some(r) = poll_once(accept.as_mut()).await {
            s.receive();
            return r.ok().map(|server| (s, server));
        }
        s.receive();
    }
    None
}

/// Bytes that differ from position to position.
fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i * 31 % 251) as u8).collect()
}

fn run(data: &[u8]) -> String {
    futures_lite::future::block_on(async {
        let Some((mut c, mut s)) = connect().await else {
            return "no handshake".to_string();
        };
        // What the client wrote while its stream is intact, and what the server read of it.
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let (mut intact, mut client_closed) = (true, false);
        let mut buf = vec![0u8; 70_000];
        let mut i = 0;
        let mut failed = None;
        while i + 1 < data.len() && failed.is_none() {
            let (op, arg) = (data[i], usize::from(data[i + 1]));
            i += 2;
            match op % 8 {
                0 if !client_closed => {
                    let more = pattern(sent.len(), arg * 67 + 1);
                    c.client.writer().write_all(&more).unwrap();
                    sent.extend_from_slice(&more);
                    c.send();
                }
                1 if !client_closed => {
                    let _ = c.client.refresh_traffic_keys();
                    c.send();
                }
                2 => {
                    c.client.send_close_notify();
                    client_closed = true;
                    c.send();
                }
                3 => {
                    let raw = &data[i..(i + arg % 64).min(data.len())];
                    i += raw.len();
                    c.wire.borrow_mut().bytes.extend(raw);
                    intact &= raw.is_empty();
                }
                4 if !client_closed => {
                    c.client.writer().write_all(b"x").unwrap();
                    let at = c.send();
                    let mut w = c.wire.borrow_mut();
                    let n = w.bytes.len() - at;
                    if n > 0 {
                        w.bytes[at + arg % n] ^= 1 << (arg % 8);
                        intact = false;
                    }
                }
                5 => c.wire.borrow_mut().cut = arg * arg + 1,
                6 => match poll_once(s.read(&mut buf[..arg * 257 + 1])).await {
                    Some(Ok(0)) => {}
                    Some(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Some(Err(e)) => failed = Some(class(&e.to_string())),
                    None => {}
                },
                7 => {
                    if let Some(Err(e)) = poll_once(s.write_all(&pattern(0, arg * 97 + 1))).await {
                        failed = Some(class(&e.to_string()));
                    }
                    c.receive();
                }
                _ => {}
            }
        }
        // The stream ends: the server reads what is left, then answers and closes.
        c.wire.borrow_mut().eof = true;
        let end = match failed {
            Some(e) => e,
            None => loop {
                match poll_once(s.read(&mut buf[..1000])).await {
                    Some(Ok(0)) => break "ok".to_string(),
                    Some(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Some(Err(e)) => break class(&e.to_string()),
                    None => panic!("a read at the end of the stream is pending"),
                }
            },
        };
        if intact {
            assert!(
                sent.starts_with(&got),
                "the server read bytes the client did not write"
            );
            if end == "ok" {
                assert_eq!(got.len(), sent.len(), "a clean end before all the data");
            }
        }
        let _ = poll_once(s.write_all(b"{}\n")).await;
        let _ = poll_once(s.close()).await;
        if end == "ok" {
            assert_eq!(s.buffered(), 0, "a cleanly closed stream holds no buffer");
        }
        end
    })
}

#[test]
fn tls_session() {
    fuzz(Target {
        name: "tls_session",
        weight: 1.0,
        seeds: vec![
            vec![0, 10, 6, 255, 1, 0, 0, 200, 6, 255, 7, 5, 2, 0, 6, 255],
            vec![
                5, 3, 0, 255, 0, 255, 1, 0, 1, 0, 0, 1, 6, 0, 6, 9, 7, 255, 2, 0,
            ],
            vec![0, 50, 4, 7, 6, 255, 6, 255],
            vec![0, 50, 3, 4, 0x17, 3, 3, 0, 2, 0],
            vec![5, 200, 0, 255, 0, 255, 0, 255, 7, 255, 6, 1, 6, 255, 6, 255],
        ],
        dict: &["\x02\x00", "\x01\x00", "\x06\x7f", "\x05\x01"],
        max_len: 4096,
        run,
    });
}
