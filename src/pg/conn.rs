//! One synchronous connection: TCP (optionally TLS after an SSLRequest), startup and
//! authentication, then statements with text parameters. Every read and write has a deadline;
//! after any I/O, protocol or deadline failure the connection is `broken` and must be dropped.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::error::{PgError, PgErrorKind};
use super::socket::DeadlineSocket;
use super::url::{ConnParams, SslMode};
use super::wire::{self, Backend, Decoder, Notification};

mod rw;
mod startup;

use rw::dial;

/// Most bytes of rows one statement may return.
pub const MAX_RESULT: usize = 64 << 20;
/// Most notifications queued before the oldest are dropped (step 2 polls them often).
pub const MAX_QUEUED_NOTIFICATIONS: usize = 4096;
/// Most bytes of channel names and payloads queued; the oldest are dropped beyond it.
pub const MAX_QUEUED_NOTIFICATION_BYTES: usize = 64 << 10;
/// PostgreSQL's own limit on a NOTIFY payload; anything longer is not from PostgreSQL.
pub const MAX_NOTIFICATION_PAYLOAD: usize = 8000;

/// A parameter, sent in text format; the statement casts it (`$1::bytea`).
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    /// Sent as `\x` hex, which `bytea` reads.
    Bytes(&'a [u8]),
}

/// Rows (text-format columns, `None` for NULL) and the count of the command tag.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// The number at the end of the command tag ("UPDATE 1", "INSERT 0 1"); 0 if none.
    pub affected: u64,
}

enum Stream {
    Plain(DeadlineSocket),
    Tls(Box<StreamOwned<ClientConnection, DeadlineSocket>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s.tcp(),
            Stream::Tls(s) => s.sock.tcp(),
        }
    }

    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Stream::Plain(s) => s.set_deadline(deadline),
            Stream::Tls(s) => s.sock.set_deadline(deadline),
        }
    }
}

pub struct Connection {
    stream: Stream,
    addr: String,
    decoder: Decoder,
    notifications: VecDeque<Notification>,
    /// Bytes of channel names and payloads in `notifications`.
    queued_bytes: usize,
    /// Whether LISTEN ran: a notification anywhere else is a protocol error.
    listening: bool,
    /// Deadline of the operation in progress.
    deadline: Instant,
    broken: bool,
}

impl Connection {
    /// Connects with the TLS settings of `p` (reading its certificate files now).
    pub fn open(p: &ConnParams) -> Result<Connection, PgError> {
        let tls = super::tls::client_config(p)
            .map_err(|m| PgError::new(&p.addr(), PgErrorKind::Config(m)))?;
        Connection::connect(p, tls)
    }

    /// Connects, negotiates TLS as `p.sslmode` says and authenticates, all within
    /// `p.connect_timeout`.
    pub fn connect(p: &ConnParams, tls: Option<Arc<ClientConfig>>) -> Result<Connection, PgError> {
        let addr = p.addr();
        let err = |kind| PgError::new(&addr, kind);
        let deadline = Instant::now() + p.connect_timeout;
        let tcp = dial(p, deadline).map_err(err)?;
        let _ = tcp.set_nodelay(true);
        let mut c = Connection {
            stream: Stream::Plain(DeadlineSocket::new(tcp, deadline)),
            addr: addr.clone(),
            decoder: Decoder::default(),
            notifications: VecDeque::new(),
            queued_bytes: 0,
            listening: false,
            deadline,
            broken: false,
        };
        if p.sslmode != SslMode::Disable {
            let config = tls.ok_or_else(|| err(PgErrorKind::Config("no TLS config".into())))?;
            c.start_tls(p, config)?;
        }
        c.startup(p)?;
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether an idle connection still looks usable, without waiting: a server that closed it
    /// (restart, `pg_terminate_backend`, idle timeout) has sent EOF or a last FATAL error, and
    /// nothing else arrives unasked on a connection that does not LISTEN. Lets the pool drop it
    /// before sending a statement that must not run twice.
    pub fn looks_alive(&mut self) -> bool {
        let tcp = self.stream.tcp();
        let mut byte = [0u8; 1];
        let alive = tcp.set_nonblocking(true).is_ok()
            && matches!(tcp.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            && self.decoder.pending() == 0;
        if !alive || tcp.set_nonblocking(false).is_err() {
            self.broken = true;
            return false;
        }
        true
    }

    fn err(&mut self, kind: PgErrorKind) -> PgError {
        if !matches!(kind, PgErrorKind::Server(_)) {
            self.broken = true;
        }
        PgError::new(&self.addr, kind)
    }

    /// One statement with parameters (extended protocol), within `timeout`.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        timeout: Duration,
    ) -> Result<QueryResult, PgError> {
        let texts: Vec<Option<Vec<u8>>> = params.iter().map(encode).collect();
        let refs: Vec<Option<&[u8]>> = texts.iter().map(Option::as_deref).collect();
        let mut out = Vec::new();
        wire::extended(&mut out, sql, &refs);
        self.run(&out, timeout)
    }

    /// Statements without parameters (simple protocol): BEGIN, COMMIT, DDL, LISTEN.
    pub fn execute(&mut self, sql: &str, timeout: Duration) -> Result<QueryResult, PgError> {
        let mut out = Vec::new();
        wire::query(&mut out, sql);
        self.run(&out, timeout)
    }

    /// Subscribes this connection to `channel` (an identifier of letters, digits and '_').
    pub fn listen(&mut self, channel: &str, timeout: Duration) -> Result<(), PgError> {
        if channel.is_empty()
            || channel.len() > 63
            || !channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(self.err(PgErrorKind::Config(format!(
                "{channel:?} is not a plain channel name"
            ))));
        }
        self.listening = true;
        self.execute(&format!("LISTEN {channel}"), timeout)
            .map(drop)
    }

    /// Notifications received so far, waiting until `deadline` for the first one if none is
    /// queued. An empty result at the deadline is not an error.
    pub fn poll_notifications(&mut self, deadline: Instant) -> Result<Vec<Notification>, PgError> {
        self.deadline = deadline;
        while self.notifications.is_empty() {
            match self.decoder.next_message() {
                Ok(Some(Backend::Notification(n))) => self.queue(n)?,
                Ok(Some(Backend::Notice(_) | Backend::ParameterStatus { .. })) => {}
                Ok(Some(other)) => {
                    return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                        "unexpected {} while idle",
                        other.name()
                    )))))
                }
                Ok(None) => match self.fill("notifications") {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind, PgErrorKind::Timeout(_)) => {
                        // Waiting is what we were asked to do: the connection stays usable.
                        self.broken = false;
                        break;
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(self.err(PgErrorKind::Wire(e))),
            }
        }
        self.queued_bytes = 0;
        Ok(self.notifications.drain(..).collect())
    }

    /// Queues `n` within the count and byte caps, dropping the oldest; a notification the
    /// connection never asked for, or longer than PostgreSQL allows, breaks the connection.
    fn queue(&mut self, n: Notification) -> Result<(), PgError> {
        if !self.listening {
            return Err(self.err(PgErrorKind::Wire(wire::WireError(
                "a notification on a connection that does not LISTEN".into(),
            ))));
        }
        if n.payload.len() > MAX_NOTIFICATION_PAYLOAD || n.channel.len() > 63 {
            return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                "a notification longer than PostgreSQL sends ({MAX_NOTIFICATION_PAYLOAD} bytes \
                 of payload, 63 of channel)"
            )))));
        }
        let size = n.channel.len() + n.payload.len();
        while !self.notifications.is_empty()
            && (self.notifications.len() >= MAX_QUEUED_NOTIFICATIONS
                || self.queued_bytes + size > MAX_QUEUED_NOTIFICATION_BYTES)
        {
            if let Some(old) = self.notifications.pop_front() {
                self.queued_bytes -= old.channel.len() + old.payload.len();
            }
        }
        self.queued_bytes += size;
        self.notifications.push_back(n);
        Ok(())
    }

    /// Sends `out` and reads until ReadyForQuery.
    fn run(&mut self, out: &[u8], timeout: Duration) -> Result<QueryResult, PgError> {
        if self.broken {
            return Err(self.err(PgErrorKind::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection broke earlier",
            ))));
        }
        self.deadline = Instant::now() + timeout;
        self.write_all(out)?;
        let mut result = QueryResult::default();
        let mut size = 0usize;
        let mut failed = None;
        loop {
            match self.read_message("a statement")? {
                Backend::ReadyForQuery(_) => break,
                Backend::DataRow(row) => {
                    size += row
                        .iter()
                        .map(|c| c.as_ref().map_or(8, |v| v.len() + 8))
                        .sum::<usize>();
                    if size > MAX_RESULT {
                        return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                            "result larger than {MAX_RESULT} bytes"
                        )))));
                    }
                    result.rows.push(row);
                }
                Backend::CommandComplete(tag) => {
                    result.affected = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                }
                Backend::Error(e) => failed = Some(e),
                Backend::Notification(n) => self.queue(n)?,
                Backend::Copy(tag) => {
                    return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                        "COPY ({}) is not supported",
                        tag as char
                    )))))
                }
                Backend::Auth(_) | Backend::BackendKeyData { .. } => {
                    return Err(self.err(PgErrorKind::Wire(wire::WireError(
                        "authentication message after startup".into(),
                    ))))
                }
                _ => {}
            }
        }
        match failed {
            Some(e) => Err(PgError::new(&self.addr, PgErrorKind::Server(Box::new(e)))),
            None => Ok(result),
        }
    }
}

fn encode(p: &Param<'_>) -> Option<Vec<u8>> {
    match p {
        Param::Null => None,
        Param::Text(s) => Some(s.as_bytes().to_vec()),
        Param::Int(i) => Some(i.to_string().into_bytes()),
        Param::Bytes(b) => {
            let mut v = Vec::with_capacity(2 + b.len() * 2);
            v.extend_from_slice(b"\\x");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for byte in *b {
                v.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
            }
            Some(v)
        }
    }
}

/// Decodes a text-format `bytea` column (`\x` hex).
pub fn bytea(col: &[u8]) -> Option<Vec<u8>> {
    let hex = col.strip_prefix(b"\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}
