//! The PostgreSQL client's parsers of untrusted bytes: backend messages (from a server that
//! may be hostile or broken), the SCRAM server messages inside them, and conn_string.

use teleport_lite::pg::scram::Scram;
use teleport_lite::pg::wire::{Backend, Decoder, MAX_COLUMNS, MAX_MESSAGE};
use teleport_lite::pg::ConnParams;

use crate::harness::{fuzz, Target};
use crate::{class, outcome};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A session as a server sends it: SCRAM, parameters, key data, ready; then a statement's
/// answer with rows, a notification, a notice and an error.
fn message_seeds() -> Vec<Vec<u8>> {
    let startup = [
        msg(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0"),
        msg(
            b'R',
            b"\0\0\0\x0br=abcdefXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ),
        msg(
            b'R',
            b"\0\0\0\x0cv=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
        msg(b'R', b"\0\0\0\0"),
        msg(b'R', b"\0\0\0\x03"),
        msg(b'R', b"\0\0\0\x05salt"),
        msg(b'S', b"server_version\x0015.8\0"),
        msg(b'K', b"\0\0\x01\x02\x0a\x0b\x0c\x0d"),
        msg(b'Z', b"I"),
    ];
    let answer = [
        msg(b'1', b""),
        msg(b'2', b""),
        msg(
            b'T',
            b"\0\x03key\0\0\0\0\0\0\x01\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
        ),
        msg(
            b'D',
            b"\0\x03\0\0\0\x08tokens/a\0\0\0\x04\\x6869\xff\xff\xff\xff",
        ),
        msg(b'C', b"UPDATE 1\0"),
        msg(b'A', b"\0\0\0\x07changes\0locks/x\0"),
        msg(b'N', b"SNOTICE\0C00000\0Mhello\0\0"),
        msg(
            b'E',
            b"SERROR\0VERROR\0C23505\0Mduplicate key\0Dkey exists\0Hfix it\0\0",
        ),
        msg(b'I', b""),
        msg(b'n', b""),
        msg(b'Z', b"T"),
    ];
    let mut seeds: Vec<Vec<u8>> = startup.iter().chain(&answer).cloned().collect();
    seeds.push(startup.concat());
    seeds.push(answer.concat());
    seeds
}

/// Feeds the input in chunks whose sizes come from its first byte, decoding after each, as the
/// connection does after every read; SCRAM messages also go through the client's exchange.
fn messages(data: &[u8]) -> String {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut d = Decoder::default();
    let (mut n, mut end) = (0usize, "need more".to_string());
    'feed: for chunk in data.chunks(step) {
        d.feed(chunk);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    n += 1;
                    check(&m);
                }
                Ok(None) => break,
                Err(e) => {
                    end = class(&e.to_string());
                    break 'feed;
                }
            }
        }
    }
    assert!(d.pending() <= data.len());
    format!("{} / {end}", n.min(4))
}

fn check(m: &Backend) {
    match m {
        Backend::DataRow(cols) => {
            assert!(cols.len() <= MAX_COLUMNS);
            let bytes: usize = cols.iter().flatten().map(Vec::len).sum();
            assert!(bytes <= MAX_MESSAGE);
        }
        Backend::Auth(teleport_lite::pg::wire::Auth::SaslContinue(first)) => {
            let (mut s, _) = Scram::start("pencil", "abcdef");
            if s.server_first(first).is_ok() {
                let _ = s.server_final(b"v=AAAA");
            }
        }
        Backend::Auth(teleport_lite::pg::wire::Auth::SaslFinal(last)) => {
            let (s, _) = Scram::start("pencil", "abcdef");
            let _ = s.server_final(last);
        }
        _ => {}
    }
}

#[test]
fn pg_messages() {
    fuzz(Target {
        name: "pg_messages",
        weight: 1.0,
        seeds: message_seeds(),
        dict: &[
            "\0",
            "SCRAM-SHA-256",
            "r=",
            ",s=",
            ",i=",
            "v=",
            "e=",
            "\\x",
            "\u{ff}\u{ff}",
        ],
        max_len: 64 * 1024,
        run: messages,
    });
}

/// conn_string: parsed or refused, and the password changes nothing that is printed.
fn conn_string(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf8".into();
    };
    let r = ConnParams::parse(text);
    if let Ok(p) = &r {
        let other = ConnParams {
            password: p.password.as_ref().map(|_| "other".into()),
            ..p.clone()
        };
        assert_eq!(
            format!("{p:?}"),
            format!("{other:?}"),
            "Debug shows the password"
        );
        assert_eq!(
            p.redacted(),
            other.redacted(),
            "redacted() shows the password"
        );
        assert!(p.port != 0);
    }
    outcome(&r)
}

#[test]
fn pg_conn_string() {
    let seeds = [
        "postgresql://teleport:hunter2@db.example.com:5432/teleport?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "postgres://u%40x:hunter2%2F@[::1]:6432/d?sslmode=require&connect_timeout=5",
        "postgresql://u@h/d?sslcert=/c.pem&sslkey=/k.pem&sslmode=verify-ca",
        "postgresql://u@h",
    ];
    fuzz(Target {
        name: "pg_conn_string",
        weight: 0.5,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dict: &[
            "%", "%zz", "@", ":", "/", "?", "&", "=", "[", "]", "sslmode=", "hunter2",
        ],
        max_len: 4096,
        run: conn_string,
    });
}
