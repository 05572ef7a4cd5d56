//! The server side of TLS over rustls's unbuffered API, for the thousands of connections auth
//! and the proxies hold open. rustls's buffered connection keeps a 4 KiB receive buffer (and
//! its queues) for a connection's whole life; here every buffer exists only while bytes wait
//! in it: an idle heartbeat stream or tunnel holds no buffer at all, only rustls's state.
//!
//! - Received TLS bytes wait in `inbuf`, which starts at 4 KiB, grows to one full record (and,
//!   for a handshake message split over records, up to rustls's 64 KiB limit), and is given
//!   up once drained when the socket has nothing more. Receive and send buffers go back to a
//!   short per-thread list (`net::bufpool`) and serve the next message of any stream, so a
//!   message costs no allocation and no zeroing; only the bytes written into them are used.
//! - Decrypted bytes the reader's buffer could not take wait in `plain`.
//! - Bytes to send (handshake flights, records, alerts) wait in `out` until the socket took
//!   them all; a writer gets `Pending` while `out` is full, so it is bounded.

use std::io;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;

use super::bufpool;

/// First size of the receive buffer: a ClientHello or a heartbeat fits.
const IN_FIRST: usize = 4 * 1024;
/// One full TLS record (16 KiB of data, its header, padding and tag).
const IN_RECORD: usize = 16 * 1024 + 2048 + 5;
/// A handshake message joined from several records: rustls refuses more than 64 KiB.
const IN_MAX: usize = 64 * 1024 + 2 * IN_RECORD;
/// Most plaintext encrypted by one `poll_write`; `out` grows to hold its records.
const WRITE_CHUNK: usize = 32 * 1024;
/// Encrypted bytes a stream may hold unsent before a writer waits for the socket (rustls's
/// own default).
const SEND_LIMIT: usize = 64 * 1024;

/// An accepted TLS connection (after `accept`).
pub struct ServerStream<S> {
    io: S,
    conn: UnbufferedServerConnection,
    inbuf: Vec<u8>,
    in_used: usize,
    plain: Vec<u8>,
    plain_pos: usize,
    out: SendBuf,
    send_limit: usize,
    /// The peer sent close_notify (clean) or the transport ended without it.
    read_done: Option<Ending>,
    /// We queued close_notify.
    closing: bool,
    /// The error rustls reported. It is not stepped over its input again: it would take the
    /// same bad record again and queue a second fatal alert (a debug build asserts). Later
    /// steps only take out the alert it queued, then report this error.
    failed: Option<rustls::Error>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    CloseNotify,
    Eof,
}

/// What the caller of a step wants done once rustls lets it write.
enum Intent<'a> {
    Read,
    Write(&'a [u8]),
    Close,
}

/// What one step of rustls's state machine asks for.
enum Step {
    /// Decrypted bytes went to `plain`, bytes to send to `out`, or the peer's close_notify
    /// to `read_done`: step again.
    Progress,
    /// More bytes from the peer are needed.
    NeedInput,
    /// Application data may be sent: `n` bytes of the given data were encrypted (or
    /// close_notify was queued).
    Wrote(usize),
}

/// Runs the TLS handshake on `io` as a server.
pub async fn accept<S>(config: Arc<ServerConfig>, io: S) -> io::Result<ServerStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut s = ServerStream {
        io,
        conn,
        inbuf: Vec::new(),
        in_used: 0,
        plain: Vec::new(),
        plain_pos: 0,
        out: SendBuf::default(),
        send_limit: SEND_LIMIT,
        read_done: None,
        closing: false,
        failed: None,
    };
    loop {
        let step = match s.step(Intent::Read) {
            Ok(step) => step,
            Err(e) => {
                // The alert rustls queued (a refused certificate, say) tells the peer why.
                let _ = s.step(Intent::Read);
                let _ = futures_lite::future::poll_fn(|cx| s.poll_send(cx)).await;
                return Err(e);
            }
        };
        futures_lite::future::poll_fn(|cx| s.poll_send(cx)).await?;
        if s.read_done.is_some() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match step {
            Step::Progress => {}
            Step::NeedInput if !s.conn.is_handshaking() => return Ok(s),
            Step::NeedInput => {
                let n = futures_lite::future::poll_fn(|cx| s.poll_fill(cx)).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Step::Wrote(_) => return Ok(s),
        }
    }
}

impl<S> ServerStream<S> {
    /// The transport and the TLS connection (peer certificates, ALPN).
    pub fn get_ref(&self) -> (&S, &UnbufferedServerConnection) {
        (&self.io, &self.conn)
    }

    /// Caps the encrypted bytes held unsent (a writer waits beyond it).
    pub fn set_send_limit(&mut self, limit: usize) {
        self.send_limit = limit.max(1024);
    }

    /// Bytes held in buffers (for tests of idle memory).
    pub fn buffered(&self) -> usize {
        self.inbuf.capacity() + self.plain.capacity() + self.out.buf.capacity()
    }

    /// One call into rustls: feeds what `inbuf` holds, queues what rustls wants sent into
    /// `out`, moves decrypted bytes to `plain`, and encrypts `data` when writable. rustls
    /// always gets the whole of `inbuf`, on the write side too: it remembers positions in it
    /// (a handshake message arriving in pieces), and another slice would break them.
    fn step(&mut self, intent: Intent<'_>) -> io::Result<Step> {
        if let Some(e) = &self.failed {
            if !self.conn.wants_write() {
                return Err(tls_error(e.clone()));
            }
        }
        let input = &mut self.inbuf[..self.in_used];
        let UnbufferedStatus { discard, state } = self.conn.process_tls_records(input);
        let step = match state {
            Err(e) => {
                self.failed = Some(e.clone());
                Err(tls_error(e))
            }
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                let mut got = Ok(Step::Progress);
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(r) => self.plain.extend_from_slice(r.payload),
                        Err(e) => {
                            self.failed = Some(e.clone());
                            got = Err(tls_error(e));
                            break;
                        }
                    }
                }
                got
            }
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                let mut room = 1024;
                loop {
                    match e.encode(self.out.spare(room)) {
                        Ok(n) => {
                            self.out.end += n;
                            break Ok(Step::Progress);
                        }
                        Err(EncodeError::InsufficientSize(s)) if s.required_size > room => {
                            room = s.required_size;
                        }
                        Err(e) => break Err(io::Error::other(e)),
                    }
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                // `out` owns the bytes now; they are sent before anything else is.
                t.done();
                Ok(Step::Progress)
            }
            Ok(ConnectionState::BlockedHandshake) => Ok(Step::NeedInput),
            Ok(ConnectionState::WriteTraffic(mut w)) => match intent {
                Intent::Read => Ok(Step::NeedInput),
                Intent::Close => {
                    if let Ok(n) = w.queue_close_notify(self.out.spare(64)) {
                        self.out.end += n;
                    }
                    Ok(Step::Wrote(0))
                }
                Intent::Write(data) => {
                    let data = &data[..data.len().min(WRITE_CHUNK).min(self.send_limit)];
                    // One record's overhead per 16 KiB, plus room: the exact need is asked
                    // for again below if rustls wants more.
                    let mut room = data.len() + 64 * (data.len() / (16 * 1024) + 1);
                    loop {
                        match w.encrypt(data, self.out.spare(room)) {
                            Ok(n) => {
                                self.out.end += n;
                                break Ok(Step::Wrote(data.len()));
                            }
                            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                                room = s.required_size;
                            }
                            Err(e) => break Err(io::Error::other(e)),
                        }
                    }
                }
            },
            // Reported once: whichever side steps records it for the reader.
            Ok(ConnectionState::PeerClosed) => {
                self.read_done = Some(Ending::CloseNotify);
                Ok(Step::Progress)
            }
            Ok(ConnectionState::Closed) => {
                self.read_done = Some(Ending::CloseNotify);
                Ok(Step::Wrote(0))
            }
            // Early data is never enabled in our configurations.
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected TLS state",
            )),
        };
        if discard > 0 {
            self.inbuf.copy_within(discard..self.in_used, 0);
            self.in_used -= discard;
        }
        if self.read_done == Some(Ending::CloseNotify) {
            // rustls never reads past close_notify: bytes after it are dropped, not kept.
            self.in_used = 0;
        }
        step
    }

    /// Frees the buffers that hold nothing (the connection went quiet); the receive and send
    /// buffers go back to the thread's list, for the next message of any stream.
    fn trim(&mut self) {
        if self.in_used == 0 && self.inbuf.capacity() > 0 {
            bufpool::give_small(std::mem::take(&mut self.inbuf));
        }
        // Not kept for reuse: its length is only the bytes it held, and growing a reused buffer
        // to a receive buffer's length would zero it again.
        if self.plain_pos == self.plain.len() && self.plain.capacity() > 0 {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        if self.out.pending().is_empty() && self.out.buf.capacity() > 0 {
            bufpool::give_small(std::mem::take(&mut self.out).buf);
        }
    }
}

/// Bytes to send: `buf[pos..end]` (the Vec's length is its initialized size, reused while the
/// stream is busy).
#[derive(Default)]
struct SendBuf {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl SendBuf {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// At least `room` free bytes after `end` (moving unsent bytes to the front or growing
    /// the buffer) to write into; the caller adds what it wrote to `end`.
    fn spare(&mut self, room: usize) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = bufpool::take_small(room);
        }
        if self.buf.len() - self.end < room && self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.end < room {
            self.buf.resize(self.end + room, 0);
        }
        &mut self.buf[self.end..]
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

mod stream_io;

#[cfg(test)]
mod tests;
