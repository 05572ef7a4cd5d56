use super::*;

#[test]
fn server_text_cannot_forge_log_lines() {
    let e = ServerError {
        severity: "ERROR".into(),
        code: "42000".into(),
        message: "no\n2026-01-01 INFO forged\r\x1b[2J".into(),
        detail: Some("d".repeat(5000)),
        hint: None,
    };
    let shown = e.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown}");
    assert!(shown.contains("no\\n2026"), "{shown}");
    assert!(shown.len() < 600, "{}", shown.len());
}

fn backend(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn decodes_messages_fed_byte_by_byte() {
    let mut bytes = backend(b'Z', b"I");
    bytes.extend(backend(b'D', b"\x00\x02\x00\x00\x00\x02hi\xff\xff\xff\xff"));
    bytes.extend(backend(b'A', b"\x00\x00\x00\x07ch\0pay\0"));
    bytes.extend(backend(
        b'E',
        b"SERROR\0VERROR\0C23505\0Mduplicate key\0Dkey exists\0\0",
    ));
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for b in bytes {
        d.feed(&[b]);
        while let Some(m) = d.next_message().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got[0], Backend::ReadyForQuery(b'I'));
    assert_eq!(got[1], Backend::DataRow(vec![Some(b"hi".to_vec()), None]));
    assert_eq!(
        got[2],
        Backend::Notification(Notification {
            pid: 7,
            channel: "ch".into(),
            payload: "pay".into()
        })
    );
    let Backend::Error(e) = &got[3] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("23505", "duplicate key")
    );
    assert_eq!(e.detail.as_deref(), Some("key exists"));
}

#[test]
fn refuses_huge_or_short_lengths_before_allocating() {
    let mut d = Decoder::default();
    d.feed(b"D\x7f\xff\xff\xff");
    assert!(d.next_message().is_err());
    let mut d = Decoder::default();
    d.feed(b"Z\x00\x00\x00\x02");
    assert!(d.next_message().is_err());
    // A column longer than its message.
    let mut d = Decoder::default();
    d.feed(&backend(b'D', b"\x00\x01\x00\x00\x10\x00ab"));
    assert!(d.next_message().is_err());
}

#[test]
fn extended_query_frames_every_message() {
    let mut out = Vec::new();
    extended(&mut out, "SELECT $1", &[Some(b"x"), None]);
    let tags: Vec<u8> = {
        let mut tags = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            tags.push(rest[0]);
            let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            rest = &rest[1 + len..];
        }
        tags
    };
    assert_eq!(tags, b"PBES");
}
