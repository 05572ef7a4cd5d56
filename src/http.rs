//! Just enough HTTP/1.1 for the proxy's web API and the agent's join call: one request per
//! connection, `Content-Length` bodies, `Connection: close`. Parsing is pure (bytes in, request
//! out) so it is tested without sockets; oversized or malformed input is an error, never a panic.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head and body the proxy accepts.
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 256 * 1024;
/// Largest response the agent accepts.
pub const MAX_RESPONSE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
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

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a complete request from `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Request, ParseError> {
    let Some(head_end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(ParseError::Bad("request head too large"))
        } else {
            Err(ParseError::Incomplete)
        };
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::Bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(ParseError::Bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError::Bad("only HTTP/1.x is supported"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or(ParseError::Bad("malformed header"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| ParseError::Bad("bad content-length"))?,
        None => 0,
    };
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(ParseError::Bad("chunked bodies are not supported"));
    }
    if len > MAX_BODY {
        return Err(ParseError::Bad("body too large"));
    }
    if buf.len() < head_end + len {
        return Err(ParseError::Incomplete);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: buf[head_end..head_end + len].to_vec(),
    })
}

/// Reads one request from a stream.
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
        if n == 0 {
            return Err(ParseError::Bad("connection closed mid-request"));
        }
        buf.extend_from_slice(&chunk[..n]);
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

/// Writes a whole response and closes the write side.
pub async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await?;
    io.close().await
}

/// A response as the client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the response to the end of the connection.
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
        let n = match io.read(&mut chunk).await {
            Ok(n) => n,
            // Peers that close without close_notify: take what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(std::io::Error::other("response too large"));
        }
    }
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = find_head_end(buf).ok_or_else(|| bad("incomplete HTTP response"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("malformed HTTP status line"))?;
    Ok(Response {
        status,
        body: buf[end..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_and_post() {
        let r = parse_request(b"GET /v1/webapi/find?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/v1/webapi/find", "x=1")
        );
        let raw = b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_request(raw).unwrap().body, b"{}");
        assert_eq!(
            parse_request(&raw[..raw.len() - 1]),
            Err(ParseError::Incomplete)
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b"\x16\x03\x01\x00\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(ParseError::Bad(_))),
                "{bad:?}"
            );
        }
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse_request(&huge), Err(ParseError::Bad(_))));
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 403 Forbidden\r\nA: b\r\n\r\nno").unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.body, b"no");
        assert!(parse_response(b"nonsense").is_err());
    }
}
