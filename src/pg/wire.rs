//! The PostgreSQL v3 wire protocol without I/O: frontend messages encoded into a buffer, backend
//! messages decoded from bytes fed in. Every length read from the server is checked against a
//! cap before anything is allocated for it, so a hostile or broken server cannot make us hold
//! more than `MAX_MESSAGE` bytes per message.

use std::fmt;

/// Largest backend message accepted (a data row of the kv table holds one value; ours are
/// kilobytes). Longer ones end the connection.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Most columns in one row we accept (the kv table has three).
pub const MAX_COLUMNS: usize = 64;

/// The server broke the protocol (or we received bytes that are not PostgreSQL's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for WireError {}

fn bad(why: impl Into<String>) -> WireError {
    WireError(why.into())
}

/// An ErrorResponse or NoticeResponse: the fields people act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    pub severity: String,
    /// SQLSTATE, e.g. `23505` (unique violation), `28P01` (wrong password).
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            Clean(&self.severity),
            Clean(&self.code),
            Clean(&self.message)
        )?;
        if let Some(d) = &self.detail {
            write!(f, " ({})", Clean(d))?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {}", Clean(h))?;
        }
        Ok(())
    }
}

/// Most characters of one server-sent field shown in an error.
const MAX_SHOWN_FIELD: usize = 512;

/// Server text as it may appear in a log line: control characters escaped (a server cannot
/// start a forged line) and at most `MAX_SHOWN_FIELD` characters.
struct Clean<'a>(&'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_SHOWN_FIELD {
                return f.write_str("...");
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A NOTIFY delivered to a channel this connection LISTENs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub pid: i32,
    pub channel: String,
    pub payload: String,
}

/// How the server wants us to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Ok,
    Cleartext,
    Md5,
    /// SASL, with the mechanisms offered.
    Sasl(Vec<String>),
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    /// Kerberos, SSPI and the like, by their code.
    Other(i32),
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Auth(Auth),
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData {
        pid: i32,
        secret: i32,
    },
    ReadyForQuery(u8),
    RowDescription(u16),
    /// Column values in text format; `None` is SQL NULL.
    DataRow(Vec<Option<Vec<u8>>>),
    CommandComplete(String),
    EmptyQuery,
    Error(ServerError),
    Notice(ServerError),
    Notification(Notification),
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    PortalSuspended,
    ParameterDescription,
    NegotiateProtocolVersion,
    /// COPY in or out: never started by our statements.
    Copy(u8),
}

impl Backend {
    /// The message's name, for errors (cheaper than `Debug` of every variant).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Auth(_) => "Authentication",
            Backend::ParameterStatus { .. } => "ParameterStatus",
            Backend::BackendKeyData { .. } => "BackendKeyData",
            Backend::ReadyForQuery(_) => "ReadyForQuery",
            Backend::RowDescription(_) => "RowDescription",
            Backend::DataRow(_) => "DataRow",
            Backend::CommandComplete(_) => "CommandComplete",
            Backend::EmptyQuery => "EmptyQueryResponse",
            Backend::Error(_) => "ErrorResponse",
            Backend::Notice(_) => "NoticeResponse",
            Backend::Notification(_) => "NotificationResponse",
            Backend::ParseComplete => "ParseComplete",
            Backend::BindComplete => "BindComplete",
            Backend::CloseComplete => "CloseComplete",
            Backend::NoData => "NoData",
            Backend::PortalSuspended => "PortalSuspended",
            Backend::ParameterDescription => "ParameterDescription",
            Backend::NegotiateProtocolVersion => "NegotiateProtocolVersion",
            Backend::Copy(_) => "Copy",
        }
    }
}

/// Reads backend messages out of the bytes fed in.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an error the
    /// connection must be dropped.
    pub fn next_message(&mut self) -> Result<Option<Backend>, WireError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len < 4 || len as usize > MAX_MESSAGE {
            return Err(bad(format!("message {:?} of length {len}", tag as char)));
        }
        let total = 1 + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg = parse(tag, &self.buf[5..total])?;
        self.buf.drain(..total);
        Ok(Some(msg))
    }
}

/// A cursor over one message body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(bad("message shorter than its fields"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn cstr(&mut self) -> Result<String, WireError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("string without terminator"))?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(s)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

fn parse(tag: u8, body: &[u8]) -> Result<Backend, WireError> {
    let mut b = Body(body);
    Ok(match tag {
        b'R' => Backend::Auth(parse_auth(&mut b)?),
        b'S' => Backend::ParameterStatus {
            name: b.cstr()?,
            value: b.cstr()?,
        },
        b'K' => Backend::BackendKeyData {
            pid: b.i32()?,
            secret: b.i32()?,
        },
        b'Z' => Backend::ReadyForQuery(*b.take(1)?.first().unwrap_or(&b'I')),
        b'T' => Backend::RowDescription(b.u16()?),
        b'D' => Backend::DataRow(parse_row(&mut b)?),
        b'C' => Backend::CommandComplete(b.cstr()?),
        b'I' => Backend::EmptyQuery,
        b'E' => Backend::Error(parse_fields(&mut b)?),
        b'N' => Backend::Notice(parse_fields(&mut b)?),
        b'A' => Backend::Notification(Notification {
            pid: b.i32()?,
            channel: b.cstr()?,
            payload: b.cstr()?,
        }),
        b'1' => Backend::ParseComplete,
        b'2' => Backend::BindComplete,
        b'3' => Backend::CloseComplete,
        b'n' => Backend::NoData,
        b's' => Backend::PortalSuspended,
        b't' => Backend::ParameterDescription,
        b'v' => Backend::NegotiateProtocolVersion,
        b'G' | b'H' | b'W' | b'd' | b'c' => Backend::Copy(tag),
        other => return Err(bad(format!("unknown message type {other:#04x}"))),
    })
}

fn parse_auth(b: &mut Body<'_>) -> Result<Auth, WireError> {
    Ok(match b.i32()? {
        0 => Auth::Ok,
        3 => Auth::Cleartext,
        5 => Auth::Md5,
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = b.cstr()?;
                if m.is_empty() {
                    break;
                }
                if mechs.len() >= 16 {
                    return Err(bad("too many SASL mechanisms"));
                }
                mechs.push(m);
            }
            Auth::Sasl(mechs)
        }
        11 => Auth::SaslContinue(b.rest().to_vec()),
        12 => Auth::SaslFinal(b.rest().to_vec()),
        other => Auth::Other(other),
    })
}

fn parse_row(b: &mut Body<'_>) -> Result<Vec<Option<Vec<u8>>>, WireError> {
    let n = b.u16()? as usize;
    if n > MAX_COLUMNS {
        return Err(bad(format!("row of {n} columns")));
    }
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = b.i32()?;
        cols.push(match len {
            -1 => None,
            l if l < 0 => return Err(bad(format!("column of length {l}"))),
            l => Some(b.take(l as usize)?.to_vec()),
        });
    }
    Ok(cols)
}

fn parse_fields(b: &mut Body<'_>) -> Result<ServerError, WireError> {
    let mut e = ServerError::default();
    loop {
        let kind = *b.take(1)?.first().unwrap_or(&0);
        if kind == 0 {
            return Ok(e);
        }
        let v = b.cstr()?;
        match kind {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            _ => {}
        }
    }
}

mod frontend;
pub use frontend::*;

#[cfg(test)]
mod tests;
