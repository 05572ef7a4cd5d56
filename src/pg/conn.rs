//! One synchronous connection: TCP (optionally TLS after an SSLRequest), startup and
//! authentication, then statements with text parameters. Every read and write has a deadline;
//! after any I/O, protocol or deadline failure the connection is `broken` and must be dropped.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::error::{tls_in, PgError, PgErrorKind};
use super::scram::Scram;
use super::socket::DeadlineSocket;
use super::url::{ConnParams, SslMode};
use super::wire::{self, Auth, Backend, Decoder, Notification};

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

    fn start_tls(&mut self, p: &ConnParams, config: Arc<ClientConfig>) -> Result<(), PgError> {
        let mut out = Vec::new();
        wire::ssl_request(&mut out);
        self.write_all(&out)?;
        let mut answer = [0u8; 1];
        self.read_raw(&mut answer, "the TLS request")?;
        match answer[0] {
            b'S' => {}
            b'N' => {
                return Err(self.err(PgErrorKind::Config(
                    "the server does not offer TLS: enable ssl in postgresql.conf, or (on a \
                     trusted network only) use sslmode=disable"
                        .into(),
                )))
            }
            other => {
                return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                    "answer {other:#04x} to the TLS request: is this a PostgreSQL server?"
                )))))
            }
        }
        let name = ServerName::try_from(p.host.clone()).map_err(|_| {
            self.err(PgErrorKind::Config(format!(
                "{:?} is not a host name",
                p.host
            )))
        })?;
        let conn =
            ClientConnection::new(config, name).map_err(|e| self.err(PgErrorKind::Tls(e)))?;
        let Stream::Plain(tcp) = &self.stream else {
            unreachable!("TLS is started once, on the plain stream")
        };
        let tcp = tcp
            .tcp()
            .try_clone()
            .map_err(|e| self.err(PgErrorKind::Io(e)))?;
        let mut tls = StreamOwned::new(conn, DeadlineSocket::new(tcp, self.deadline));
        // Finish the handshake now, so a refused certificate is reported as such.
        while tls.conn.is_handshaking() {
            self.set_timeouts()?;
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(self.io_err(e, "the TLS handshake"));
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn startup(&mut self, p: &ConnParams) -> Result<(), PgError> {
        let mut out = Vec::new();
        wire::startup(
            &mut out,
            &[
                ("user", &p.user),
                ("database", &p.database),
                ("application_name", "teleport"),
                ("client_encoding", "UTF8"),
            ],
        );
        self.write_all(&out)?;
        let mut scram: Option<Scram> = None;
        loop {
            let msg = self.read_message("authentication")?;
            let mut out = Vec::new();
            match msg {
                Backend::Auth(Auth::Ok) => {}
                Backend::Auth(Auth::Cleartext) => {
                    // Only a verified server may read the password: under require (or
                    // disable) an impostor on the path would simply ask for it.
                    if !matches!(p.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) {
                        return Err(self.err(PgErrorKind::Auth(
                            "the server asks for the password in clear and its certificate was \
                             not verified; refused: use sslmode=verify-full with sslrootcert, or \
                             SCRAM (scram-sha-256 in pg_hba.conf)"
                                .into(),
                        )));
                    }
                    let pw = self.password(p)?;
                    wire::password(&mut out, pw);
                }
                Backend::Auth(Auth::Md5) => {
                    return Err(self.err(PgErrorKind::Auth(
                        "the server asks for MD5, which teleport-lite refuses (MD5 passwords are \
                         deprecated and weak): set password_encryption = 'scram-sha-256', set the \
                         user's password again, and write scram-sha-256 in pg_hba.conf"
                            .into(),
                    )))
                }
                Backend::Auth(Auth::Sasl(mechs)) => {
                    if !mechs.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(self.err(PgErrorKind::Auth(format!(
                            "the server offers only SASL {mechs:?}; SCRAM-SHA-256 is needed"
                        ))));
                    }
                    let pw = self.password(p)?.to_string();
                    let (s, first) = Scram::start(&pw, &nonce());
                    scram = Some(s);
                    wire::sasl_initial(&mut out, "SCRAM-SHA-256", &first);
                }
                Backend::Auth(Auth::SaslContinue(data)) => {
                    let Some(s) = scram.as_mut() else {
                        return Err(self.err(PgErrorKind::Auth("SASL data out of order".into())));
                    };
                    let reply = s
                        .server_first(&data)
                        .map_err(|e| PgError::new(&self.addr, PgErrorKind::Auth(e)))?;
                    wire::sasl_response(&mut out, &reply);
                }
                Backend::Auth(Auth::SaslFinal(data)) => {
                    let checked = scram.as_ref().map(|s| s.server_final(&data));
                    match checked {
                        Some(Ok(())) => {}
                        Some(Err(e)) => return Err(self.err(PgErrorKind::Auth(e))),
                        None => {
                            return Err(
                                self.err(PgErrorKind::Auth("SASL final without a start".into()))
                            )
                        }
                    }
                }
                Backend::Auth(Auth::Other(code)) => {
                    return Err(self.err(PgErrorKind::Auth(format!(
                        "method {code} is not supported: use scram-sha-256, cert or trust in \
                         pg_hba.conf"
                    ))))
                }
                Backend::ParameterStatus { .. } | Backend::BackendKeyData { .. } => {}
                Backend::Notice(_) | Backend::NegotiateProtocolVersion => {}
                Backend::ReadyForQuery(_) => {
                    self.broken = false;
                    return Ok(());
                }
                Backend::Error(e) => {
                    self.broken = true;
                    return Err(PgError::new(&self.addr, PgErrorKind::Server(Box::new(e))));
                }
                other => {
                    return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                        "unexpected {} during startup",
                        other.name()
                    )))))
                }
            }
            if !out.is_empty() {
                self.write_all(&out)?;
            }
        }
    }

    fn password<'p>(&mut self, p: &'p ConnParams) -> Result<&'p str, PgError> {
        match p.password.as_deref() {
            Some(pw) => Ok(pw),
            None => Err(self.err(PgErrorKind::Auth(
                "the server asks for a password and conn_string has none: write \
                 postgresql://USER:PASSWORD@HOST/DB (percent-encode special characters), or use \
                 a client certificate (sslcert, sslkey)"
                    .into(),
            ))),
        }
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

    fn read_message(&mut self, what: &'static str) -> Result<Backend, PgError> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.fill(what)?,
                Err(e) => return Err(self.err(PgErrorKind::Wire(e))),
            }
        }
    }

    /// Reads what is available (at least one byte) into the decoder.
    fn fill(&mut self, what: &'static str) -> Result<(), PgError> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.read_some(&mut buf, what)?;
        self.decoder.feed(&buf[..n]);
        Ok(())
    }

    fn read_raw(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), PgError> {
        let mut got = 0;
        while got < buf.len() {
            got += self.read_some(&mut buf[got..], what)?;
        }
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8], what: &'static str) -> Result<usize, PgError> {
        self.set_timeouts()?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        };
        match r {
            Ok(0) => Err(self.err(PgErrorKind::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )))),
            Ok(n) => Ok(n),
            Err(e) => Err(self.io_err(e, what)),
        }
    }

    fn write_all(&mut self, out: &[u8]) -> Result<(), PgError> {
        self.set_timeouts()?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(out).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(out).and_then(|_| s.flush()),
        };
        r.map_err(|e| self.io_err(e, "a write"))
    }

    fn io_err(&mut self, e: io::Error, what: &'static str) -> PgError {
        if let Some(tls) = tls_in(&e) {
            return self.err(PgErrorKind::Tls(tls.clone()));
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.err(PgErrorKind::Timeout(what))
            }
            _ => self.err(PgErrorKind::Io(e)),
        }
    }

    fn set_timeouts(&mut self) -> Result<(), PgError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.err(PgErrorKind::Timeout("the deadline")));
        }
        // The socket applies what is left of it to every read and write, even those rustls
        // makes inside one call of ours.
        self.stream.set_deadline(self.deadline);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.broken {
            // Say goodbye so the server logs no "unexpected EOF"; never wait long for it.
            self.deadline = Instant::now() + Duration::from_millis(200);
            let mut out = Vec::new();
            wire::terminate(&mut out);
            let _ = self.write_all(&out);
        }
    }
}

fn dial(p: &ConnParams, deadline: Instant) -> Result<TcpStream, PgErrorKind> {
    let addrs = (p.host.as_str(), p.port)
        .to_socket_addrs()
        .map_err(PgErrorKind::Io)?;
    let mut last = PgErrorKind::Config(format!("the host {:?} has no address", p.host));
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PgErrorKind::Timeout("connect"));
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => last = PgErrorKind::Timeout("connect"),
            Err(e) => last = PgErrorKind::Io(e),
        }
    }
    Err(last)
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

/// 24 random bytes as base64-ish printable characters (no ',').
fn nonce() -> String {
    let mut b = [0u8; 24];
    let _ = SystemRandom::new().fill(&mut b);
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    b.iter().map(|x| CHARS[(x % 64) as usize] as char).collect()
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
