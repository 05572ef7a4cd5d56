use super::*;

fn bad(raw: &[u8]) -> &'static str {
    match parse_request(raw) {
        Err(ParseError::Bad(why)) => why,
        other => panic!("{raw:?} gave {other:?}"),
    }
}

#[test]
fn parses_get_and_post() {
    let r = parse_request(b"GET /v1/webapi/find?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("GET", "/v1/webapi/find", "x=1")
    );
    assert_eq!(r.headers, vec![("host".to_string(), "a".to_string())]);
    let raw = b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(parse_request(raw).unwrap().body, b"{}");
    assert_eq!(
        parse_request(&raw[..raw.len() - 1]),
        Err(ParseError::Incomplete)
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHo"),
        Err(ParseError::Incomplete)
    );
    // HTTP/1.0 and surrounding whitespace in the value are fine.
    let r = parse_request(b"POST /p HTTP/1.0\r\ncontent-length:  1 \r\n\r\nx").unwrap();
    assert_eq!(r.body, b"x");
}

#[test]
fn body_stops_at_content_length() {
    let r =
        parse_request(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1").unwrap();
    assert_eq!(r.body, b"{}");
}

#[test]
fn content_length_is_digits_only() {
    for v in [
        "+2",
        "-1",
        "2 2",
        "2,2",
        "0x2",
        "",
        " ",
        "1e3",
        "２",
        "9999999999999999999999",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n{{}}");
        assert_eq!(
            bad(raw.as_bytes()),
            "bad content-length: digits only",
            "{v:?}"
        );
    }
}

#[test]
fn duplicate_content_length_is_refused_even_when_equal() {
    for second in ["2", "40"] {
        let raw =
            format!("POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: {second}\r\n\r\n{{}}");
        assert_eq!(bad(raw.as_bytes()), "duplicate content-length header");
    }
}

#[test]
fn transfer_encoding_is_refused() {
    for te in ["chunked", "identity", "gzip, chunked"] {
        let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        assert!(bad(raw.as_bytes()).starts_with("transfer-encoding is not supported"));
    }
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx";
    assert!(bad(raw).starts_with("transfer-encoding"));
}

#[test]
fn caps_head_and_body() {
    let huge = vec![b'a'; MAX_HEAD + 1];
    assert_eq!(bad(&huge), "request head too large");
    let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long_header.resize(MAX_HEAD, b'a');
    assert_eq!(bad(&long_header), "request head too large");
    let raw = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert_eq!(bad(raw.as_bytes()), "body too large");
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(bad(&many), "too many headers (at most 64)");
}

#[test]
fn rejects_garbage_without_panicking() {
    for (raw, why) in [
        (&b"\x16\x03\x01\x00\r\n\r\n"[..], "malformed request line"),
        (b"GET\r\n\r\n", "malformed request line"),
        (
            b"GET / SPDY/3\r\n\r\n",
            "only HTTP/1.0 and HTTP/1.1 are supported",
        ),
        (
            b"GET / HTTP/2.0\r\n\r\n",
            "only HTTP/1.0 and HTTP/1.1 are supported",
        ),
        (
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "malformed header name",
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            "malformed header value",
        ),
        (b"GET /\xff HTTP/1.1\r\n\r\n", "malformed request line"),
    ] {
        assert_eq!(bad(raw), why, "{raw:?}");
    }
    // Every prefix of a valid request is incomplete, never an error or a panic.
    let raw = b"POST /webapi/host/credentials HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    for n in 0..raw.len() {
        assert_eq!(parse_request(&raw[..n]), Err(ParseError::Incomplete), "{n}");
    }
}

#[test]
fn parses_responses_up_to_content_length() {
    let r = parse_response(b"HTTP/1.1 403 Forbidden\r\nA: b\r\n\r\nno").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (403, &b"no"[..]));
    let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
    assert_eq!(r.body, b"ok");
    // Complete as soon as the announced body is there, without waiting for the close.
    let r = try_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).unwrap();
    assert_eq!(r.unwrap().body, b"ok");
    assert!(
        try_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok", false)
            .unwrap()
            .is_none()
    );
    assert!(try_response(b"HTTP/1.1 200 OK\r\n\r\nok", false)
        .unwrap()
        .is_none());
}

#[test]
fn rejects_bad_responses() {
    for (raw, why) in [
        (&b"nonsense"[..], "bad HTTP response"),
        (b"HTTP/1.1 200 OK\r\n", "incomplete HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
            "ended after 2 of its 5 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
            "digits only",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            "duplicate content-length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "transfer-encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            "too large",
        ),
    ] {
        let e = parse_response(raw).unwrap_err().to_string();
        assert!(e.contains(why), "{raw:?}: {e}");
    }
}

/// A writer that accepts `budget` bytes and then never makes progress.
struct Stalls {
    budget: usize,
    written: usize,
}

impl AsyncWrite for Stalls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let room = self.budget - self.written;
        if room == 0 {
            return std::task::Poll::Pending;
        }
        let n = room.min(buf.len());
        self.written += n;
        std::task::Poll::Ready(Ok(n))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[test]
fn a_stalled_reader_is_dropped_after_the_stall_deadline() {
    let body = vec![7u8; 1 << 20];
    let mut w = Stalls {
        budget: 100_000,
        written: 0,
    };
    let ms = Duration::from_millis;
    let start = std::time::Instant::now();
    let r = smol::block_on(write_response_within(
        &mut w,
        200,
        "x",
        &body,
        ms(50),
        Duration::from_secs(60),
    ));
    assert_eq!(r.unwrap_err().to_string(), "the peer stopped reading");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(w.written, 100_000);
    // A slow but moving reader is cut by the overall deadline instead.
    let mut w = Stalls {
        budget: 100_000,
        written: 0,
    };
    let r = smol::block_on(write_response_within(
        &mut w,
        200,
        "x",
        &body,
        ms(500),
        ms(50),
    ));
    assert_eq!(
        r.unwrap_err().to_string(),
        "the response took too long to send"
    );
}

#[test]
fn writes_a_whole_body_in_chunks() {
    let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut out = Vec::new();
    smol::block_on(write_response(
        &mut out,
        200,
        "application/octet-stream",
        &body,
    ))
    .unwrap();
    let r = parse_response(&out).unwrap();
    assert_eq!((r.status, r.body), (200, body));
}
