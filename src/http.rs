//! Just enough HTTP/1.1 for the proxy's web API and the agent's join call: one request per
//! connection, `Content-Length` bodies, `Connection: close`. Heads are parsed by `httparse`;
//! parsing is pure (bytes in, request or response out) so it is tested and fuzzed without
//! sockets. Oversized, ambiguous or malformed input is an error with a specific text, never a
//! panic: `Content-Length` is digits only and given at most once, `Transfer-Encoding` is refused.

use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head and body the proxy accepts.
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 256 * 1024;
/// Largest response the agent accepts.
pub const MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Most header lines in a head (the error text below says the same number).
pub const MAX_HEADERS: usize = 64;
/// A response write that makes no progress for this long is abandoned.
pub const WRITE_STALL: Duration = Duration::from_secs(30);
/// Longest time a small response (not a download) may take to write.
pub const WRITE_TOTAL: Duration = Duration::from_secs(60);
/// Bytes handed to the stream per write, so a stalled reader holds at most this much of ours.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    /// Names lowercased, values trimmed (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed.
    Incomplete,
    /// The input is not an HTTP/1.x request we accept; the text is safe to send back.
    Bad(&'static str),
}

fn head_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "malformed header name",
        httparse::Error::HeaderValue => "malformed header value",
        httparse::Error::NewLine => "malformed line ending",
        httparse::Error::Status => "malformed status line",
        httparse::Error::Token => "malformed request line",
        httparse::Error::TooManyHeaders => "too many headers (at most 64)",
        httparse::Error::Version => "only HTTP/1.0 and HTTP/1.1 are supported",
    }
}

/// The body length a head announces: `None` without `Content-Length`. Refuses signs, spaces
/// inside, lists, several `Content-Length` headers and any `Transfer-Encoding`.
fn body_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("transfer-encoding is not supported: send the body with content-length");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if found.is_some() {
                return Err("duplicate content-length header");
            }
            found = Some(digits(h.value.trim_ascii()).ok_or("bad content-length: digits only")?);
        }
    }
    Ok(found)
}

/// A decimal number of at most 12 digits (no sign, no spaces).
fn digits(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 12 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &d| {
        let digit = usize::from(d.checked_sub(b'0').filter(|x| *x <= 9)?);
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// Parses a complete request from `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Request, ParseError> {
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(ParseError::Bad("request head too large"))
        }
        Ok(httparse::Status::Partial) => return Err(ParseError::Incomplete),
        Err(e) => return Err(ParseError::Bad(head_error(e))),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(ParseError::Bad("malformed request line"));
    };
    let len = body_length(req.headers)
        .map_err(ParseError::Bad)?
        .unwrap_or(0);
    if len > MAX_BODY {
        return Err(ParseError::Bad("body too large"));
    }
    let end = head_len
        .checked_add(len)
        .ok_or(ParseError::Bad("body too large"))?;
    let body = buf.get(head_len..end).ok_or(ParseError::Incomplete)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.trim_ascii()).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect(),
        body: body.to_vec(),
    })
}

/// Reads one request from a stream. The caller bounds the time; the buffer is bounded by
/// `MAX_HEAD + MAX_BODY` because the parser refuses anything larger.
pub async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> Result<Request, ParseError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match parse_request(&buf) {
            Err(ParseError::Incomplete) => {}
            other => return other,
        }
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|_| ParseError::Bad("read failed"))?;
        let Some(got) = chunk.get(..n).filter(|g| !g.is_empty()) else {
            return Err(ParseError::Bad("connection closed mid-request"));
        };
        buf.extend_from_slice(got);
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// Writes a whole response and closes the write side, giving up after `WRITE_STALL` without
/// progress or `WRITE_TOTAL` in all.
pub async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write_response_within(io, status, content_type, body, WRITE_STALL, WRITE_TOTAL).await
}

/// Like `write_response`, with the deadlines given: each write of at most 16 KiB must finish
/// within `stall`, and the whole response within `total`. A reader that stops reading thus
/// costs at most one chunk and the stream's own buffers, and only for a bounded time.
pub async fn write_response_within<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
    stall: Duration,
    total: Duration,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let all = async {
        step(stall, io.write_all(head.as_bytes())).await?;
        for piece in body.chunks(CHUNK) {
            step(stall, io.write_all(piece)).await?;
        }
        step(stall, io.flush()).await?;
        step(stall, io.close()).await
    };
    crate::net::with_timeout(total, all)
        .await
        .unwrap_or_else(|| Err(timed_out("the response took too long to send")))
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

async fn step(
    stall: Duration,
    fut: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    crate::net::with_timeout(stall, fut)
        .await
        .unwrap_or_else(|| Err(timed_out("the peer stopped reading")))
}

/// A response as the client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the response: up to its `Content-Length`, or to the end of
/// the connection when it has none.
pub async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: teleport-lite/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::VERSION,
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(r) = try_response(&buf, false)? {
            return Ok(r);
        }
        let n = match io.read(&mut chunk).await {
            Ok(n) => n,
            // Peers that close without close_notify: take what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        match chunk.get(..n).filter(|g| !g.is_empty()) {
            Some(got) => buf.extend_from_slice(got),
            None => return parse_response(&buf),
        }
        if buf.len() > MAX_RESPONSE.saturating_add(MAX_HEAD) {
            return Err(bad_response("response too large"));
        }
    }
}

fn bad_response(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

/// Parses a whole response, `buf` being everything the server sent before closing.
pub fn parse_response(buf: &[u8]) -> std::io::Result<Response> {
    try_response(buf, true)?.ok_or_else(|| bad_response("incomplete HTTP response"))
}

/// A response if `buf` holds a complete one; `None` if more bytes may follow (`at_eof` false).
fn try_response(buf: &[u8], at_eof: bool) -> std::io::Result<Option<Response>> {
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let head_len = match resp.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(bad_response("response head too large"))
        }
        Ok(httparse::Status::Partial) if at_eof => {
            return Err(bad_response("incomplete HTTP response"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(bad_response(&format!(
                "bad HTTP response: {}",
                head_error(e)
            )))
        }
    };
    let status = resp
        .code
        .ok_or_else(|| bad_response("malformed HTTP status line"))?;
    let rest = buf.get(head_len..).unwrap_or_default();
    let len = body_length(resp.headers).map_err(|e| bad_response(&format!("bad response: {e}")))?;
    let body = match len {
        Some(len) if len > MAX_RESPONSE => return Err(bad_response("response too large")),
        Some(len) => match rest.get(..len) {
            Some(body) => body,
            None if at_eof => {
                return Err(bad_response(&format!(
                    "the response ended after {} of its {len} bytes",
                    rest.len()
                )))
            }
            None => return Ok(None),
        },
        None if at_eof => rest,
        None => return Ok(None),
    };
    Ok(Some(Response {
        status,
        body: body.to_vec(),
    }))
}

#[cfg(test)]
mod tests;
