//! The PostgreSQL client and backend against a real PostgreSQL server (one per test binary,
//! with TLS; each test has its own database): the Backend contract with races between
//! connections, migrations racing on an empty database, TLS by sslmode, SCRAM, client
//! certificates, LISTEN/NOTIFY, and servers that misbehave.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::pg::{PgServer, PASSWORD};
use teleport_lite::auth::backend::postgres::{migrate, PostgresBackend, MIGRATIONS};
use teleport_lite::auth::backend::{Backend, Item};
use teleport_lite::pg::{ConnParams, Connection, PgError};

/// A fresh database on the shared server, owned by `trusted`.
fn fresh_db() -> (&'static PgServer, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let s = PgServer::shared();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    s.create_db(&name, "trusted");
    (s, name)
}

fn params(url: &str) -> ConnParams {
    ConnParams::parse(url).unwrap()
}

fn backend() -> (PostgresBackend, String) {
    let (s, db) = fresh_db();
    let url = s.url("trusted", None, &db, "sslmode=disable");
    (PostgresBackend::open(params(&url)).unwrap(), url)
}

fn connect(url: &str) -> Result<Connection, PgError> {
    Connection::open(&params(url))
}

fn item(key: &str, value: &[u8], expires: Option<i64>) -> Item {
    Item {
        key: key.into(),
        value: value.to_vec(),
        expires,
    }
}

#[test]
fn every_backend_method_keeps_its_contract() {
    let (b, _) = backend();
    // Values are bytes, all 256 of them, and an empty one.
    let all: Vec<u8> = (0..=255).collect();
    b.put(&item("ca/host", &all, None)).unwrap();
    assert_eq!(b.get("ca/host", 0).unwrap().unwrap().value, all);
    b.put(&item("ca/host", b"", Some(50))).unwrap();
    let got = b.get("ca/host", 0).unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.expires), (&b""[..], Some(50)));
    // Expiry is judged by the given clock.
    assert!(b.get("ca/host", 50).unwrap().is_none());
    assert_eq!(b.list("ca/", 49).unwrap().len(), 1);
    assert_eq!(b.list("ca/", 50).unwrap().len(), 0);
    // create: never over a live item, over an expired one.
    assert!(b.create(&item("k", b"1", None), 0).unwrap());
    assert!(!b.create(&item("k", b"2", None), 0).unwrap());
    assert_eq!(b.get("k", 0).unwrap().unwrap().value, b"1");
    assert!(b.create(&item("ca/host", b"new", None), 60).unwrap());
    assert_eq!(b.get("ca/host", 60).unwrap().unwrap().value, b"new");
    // delete: once; an expired item is not deleted (it is already gone).
    assert!(b.delete("k", 0).unwrap());
    assert!(!b.delete("k", 0).unwrap());
    b.put(&item("e", b"x", Some(5))).unwrap();
    assert!(!b.delete("e", 10).unwrap());
    // compare_and_swap.
    let v1 = item("c", b"v1", Some(100));
    b.put(&v1).unwrap();
    let v2 = item("c", b"v2", Some(200));
    assert!(b.compare_and_swap(&v1, &v2, 0).unwrap());
    assert!(!b.compare_and_swap(&v1, &item("c", b"v3", None), 0).unwrap());
    assert_eq!(b.get("c", 0).unwrap().unwrap(), v2);
    assert!(!b
        .compare_and_swap(&v2, &item("c", b"v3", None), 200)
        .unwrap());
    assert!(b
        .compare_and_swap(&v2, &item("other", b"", None), 0)
        .is_err());
    // purge_expired.
    b.put(&item("p1", b"", Some(1))).unwrap();
    b.put(&item("p2", b"", Some(2))).unwrap();
    assert!(b.purge_expired(2).unwrap() >= 2);
    assert!(b.get("p2", 0).unwrap().is_none());
    assert!(b.describe().contains("sslmode=disable"));
}

#[test]
fn a_batch_is_written_whole_in_chunks_and_replaces_what_was_there() {
    let (b, _) = backend();
    b.put(&item("presence/n/0", b"old", Some(1))).unwrap();
    // More rows than one statement carries, with every byte value.
    let items: Vec<Item> = (0..2500)
        .map(|i| item(&format!("presence/n/{i}"), &[i as u8, 0, 255], Some(100)))
        .collect();
    b.put_batch(&items).unwrap();
    b.put_batch(&[]).unwrap();
    let listed = b.list("presence/n/", 50).unwrap();
    assert_eq!(listed.len(), 2500);
    assert_eq!(b.get("presence/n/0", 50).unwrap().unwrap(), items[0]);
    assert_eq!(b.get("presence/n/2499", 50).unwrap().unwrap(), items[2499]);
    // One bad row (a key twice in a statement) fails the whole batch: nothing half-written.
    let dup = [
        item("presence/x/1", b"", None),
        item("presence/x/1", b"", None),
    ];
    assert!(b.put_batch(&dup).is_err());
    assert!(b.list("presence/x/", 0).unwrap().is_empty());
}

#[test]
fn a_watcher_hears_announcements_and_says_it_listens_again_after_a_disconnect() {
    let (s, db) = fresh_db();
    let url = s.url("trusted", None, &db, "sslmode=disable");
    let b = PostgresBackend::open(params(&url)).unwrap();
    assert!(b.shared());
    let rx = b.watch().unwrap();
    let next = || {
        smol::block_on(async {
            futures_lite::future::or(async { rx.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_secs(20)).await;
                None
            })
            .await
        })
    };
    assert_eq!(next().as_deref(), Some("*"), "listening");
    b.notify("locks").unwrap();
    assert_eq!(next().as_deref(), Some("locks"));
    // The server drops the listening connection: the watcher reconnects and says so.
    s.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND query LIKE 'LISTEN%'"
    ));
    assert_eq!(next().as_deref(), Some("*"), "listening again");
    b.notify("ca").unwrap();
    assert_eq!(next().as_deref(), Some("ca"));
}

#[test]
fn list_prefix_is_literal_and_ordered_bytewise() {
    let (b, _) = backend();
    for k in [
        "a%b/1", "a_b/1", "axb/1", "a%bc", "a%b/0", "Z", "é/1", "a%b/é", "a%b/Z",
    ] {
        b.put(&item(k, k.as_bytes(), None)).unwrap();
    }
    let keys =
        |p: &str| -> Vec<String> { b.list(p, 0).unwrap().into_iter().map(|i| i.key).collect() };
    assert_eq!(keys("a%b/"), ["a%b/0", "a%b/1", "a%b/Z", "a%b/é"]);
    assert_eq!(keys("a_b/"), ["a_b/1"]);
    assert_eq!(keys("é/"), ["é/1"]);
    assert_eq!(keys("").len(), 9);
    assert_eq!(keys("nothing"), Vec::<String>::new());
}

/// Runs `f(i)` on `n` threads, each with its own backend (its own connections), released
/// together; returns how many returned true.
fn race(url: &str, n: usize, f: impl Fn(&PostgresBackend, usize) -> bool + Sync) -> usize {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    let b = PostgresBackend::open(params(url)).unwrap();
                    barrier.wait();
                    usize::from(f(&b, i))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn races_between_connections_have_exactly_one_winner() {
    let (b, url) = backend();
    for round in 0..5 {
        let key = format!("tokens/{round}");
        let start = item(&key, b"uses=1", None);
        b.put(&start).unwrap();
        let cas = race(&url, 8, |b, i| {
            let new = item(&key, format!("t{i}").as_bytes(), None);
            b.compare_and_swap(&start, &new, 0).unwrap()
        });
        assert_eq!(cas, 1, "compare_and_swap round {round}");
        let created = race(&url, 8, |b, i| {
            b.create(&item(&format!("new/{round}"), &[i as u8], None), 0)
                .unwrap()
        });
        assert_eq!(created, 1, "create round {round}");
        let deleted = race(&url, 8, |b, _| b.delete(&key, 0).unwrap());
        assert_eq!(deleted, 1, "delete round {round}");
    }
}

#[test]
fn migrations_racing_on_an_empty_database_run_once() {
    let (s, db) = fresh_db();
    let url = s.url("trusted", None, &db, "sslmode=disable");
    let barrier = Barrier::new(6);
    let applied: Vec<Vec<i64>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let (barrier, url) = (&barrier, &url);
                sc.spawn(move || {
                    let mut c = connect(url).unwrap();
                    barrier.wait();
                    migrate(&mut c, Duration::from_secs(30)).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(
        applied.iter().filter(|a| **a == all).count(),
        1,
        "{applied:?}"
    );
    assert_eq!(applied.iter().filter(|a| a.is_empty()).count(), 5);
    let rows = s.psql_in(
        &db,
        "SELECT version FROM schema_migrations ORDER BY version",
    );
    assert_eq!(rows.lines().count(), MIGRATIONS.len());
    // A database migrated by a newer teleport is refused with what to do.
    s.psql_in(&db, "INSERT INTO schema_migrations (version) VALUES (999)");
    let e = PostgresBackend::open(params(&url))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("newer than this teleport") && e.contains("upgrade"),
        "{e}"
    );
}

#[test]
fn tls_modes_check_what_they_promise() {
    let (s, db) = fresh_db();
    let tls = s.tls.as_ref().unwrap();
    let ca = format!("sslrootcert={}", tls.ca.display());
    let at = |host: &str, q: &str| s.url("trusted", None, &db, q).replace("127.0.0.1", host);
    let ok = |url: &str| {
        let mut c = connect(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let r = c
            .query(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(
            r.rows[0][0].as_deref(),
            Some(&b"t"[..]),
            "{url}: not encrypted"
        );
    };
    ok(&at("127.0.0.1", &format!("sslmode=verify-full&{ca}")));
    ok(&at("localhost", &format!("sslmode=verify-full&{ca}")));
    ok(&at("127.0.0.2", &format!("sslmode=verify-ca&{ca}")));
    ok(&at("127.0.0.2", "sslmode=require"));
    // The certificate does not name 127.0.0.2.
    let e = connect(&at("127.0.0.2", &format!("sslmode=verify-full&{ca}")))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("PostgreSQL at 127.0.0.2") && e.contains("certificate was refused"),
        "{e}"
    );
    assert!(e.contains("NotValidForName"), "{e}");
    // Another CA.
    let other = format!("sslmode=verify-full&sslrootcert={}", tls.other_ca.display());
    let e = connect(&at("127.0.0.1", &other)).err().unwrap().to_string();
    assert!(
        e.contains("certificate was refused") && e.contains("sslrootcert"),
        "{e}"
    );
    // A missing root file is named.
    let e = connect(&at(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent.pem",
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("/nonexistent.pem"), "{e}");
}

#[test]
fn scram_password_and_client_certificate_log_in_and_wrong_ones_do_not() {
    let (s, db) = fresh_db();
    s.psql(&format!("GRANT ALL ON DATABASE {db} TO teleport, certuser"));
    let tls = s.tls.as_ref().unwrap();
    let ca = format!("sslrootcert={}", tls.ca.display());
    // SCRAM in clear TCP and in TLS (the password has %-encoded ':', '/', '@' and a space).
    for q in [
        "sslmode=disable".to_string(),
        format!("sslmode=verify-full&{ca}"),
    ] {
        let mut c = connect(&s.url("teleport", Some(PASSWORD), &db, &q)).unwrap();
        let r = c
            .query("SELECT current_user", &[], Duration::from_secs(5))
            .unwrap();
        assert_eq!(r.rows[0][0].as_deref(), Some(&b"teleport"[..]));
    }
    let e = connect(&s.url("teleport", Some("wrong"), &db, "sslmode=disable"))
        .err()
        .unwrap();
    assert_eq!(e.code(), Some("28P01"), "{e}");
    assert!(e.to_string().contains("check the user and password"), "{e}");
    let e = connect(&s.url("teleport", None, &db, "sslmode=disable"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("conn_string has none"), "{e}");
    // A password in clear goes only to a verified server.
    for q in ["sslmode=require", "sslmode=disable"] {
        let e = connect(&s.url("clearuser", Some("pw"), &db, q))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("use sslmode=verify-full with sslrootcert"),
            "{q}: {e}"
        );
    }
    connect(&s.url(
        "clearuser",
        Some("pw"),
        &db,
        &format!("sslmode=verify-full&{ca}"),
    ))
    .unwrap();
    // MD5 is refused before any password is sent.
    let e = connect(&s.url("md5user", Some("pw"), &db, "sslmode=disable"))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("MD5") && e.to_string().contains("scram-sha-256"),
        "{e}"
    );
    // A client certificate.
    let cert = format!(
        "sslmode=verify-full&{ca}&sslcert={}&sslkey={}",
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let mut c = connect(&s.url("certuser", None, &db, &cert)).unwrap();
    let r = c
        .query("SELECT current_user", &[], Duration::from_secs(5))
        .unwrap();
    assert_eq!(r.rows[0][0].as_deref(), Some(&b"certuser"[..]));
    let e = connect(&s.url("certuser", None, &db, &format!("sslmode=verify-full&{ca}")))
        .err()
        .unwrap();
    assert!(
        e.code().is_some() || e.to_string().contains("certificate"),
        "{e}"
    );
    // A database that does not exist.
    let e = connect(&s.url("trusted", None, "nosuchdb", "sslmode=disable"))
        .err()
        .unwrap();
    assert_eq!(e.code(), Some("3D000"), "{e}");
    assert!(!s.log().is_empty());
}

#[test]
fn notifications_arrive_on_a_listening_connection() {
    let (s, db) = fresh_db();
    let url = s.url("trusted", None, &db, "sslmode=disable");
    let mut listener = connect(&url).unwrap();
    listener.listen("changes", Duration::from_secs(5)).unwrap();
    assert!(listener
        .listen("bad name; DROP", Duration::from_secs(5))
        .is_err());
    let mut listener = connect(&url).unwrap();
    listener.listen("changes", Duration::from_secs(5)).unwrap();
    // Nothing yet: the poll returns empty at its deadline.
    let t = Instant::now();
    let none = listener
        .poll_notifications(Instant::now() + Duration::from_millis(200))
        .unwrap();
    assert!(none.is_empty() && t.elapsed() >= Duration::from_millis(200));
    let mut other = connect(&url).unwrap();
    other
        .execute("NOTIFY changes, 'locks/x'", Duration::from_secs(5))
        .unwrap();
    let got = listener
        .poll_notifications(Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].channel.as_str(), got[0].payload.as_str()),
        ("changes", "locks/x")
    );
    // The connection still runs statements after polling.
    listener
        .query("SELECT 1", &[], Duration::from_secs(5))
        .unwrap();
}

/// A fake server on a free port: `serve` gets each accepted connection.
fn fake_server(serve: impl Fn(std::net::TcpStream) + Send + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            serve(s);
        }
    });
    port
}

#[test]
fn a_silent_or_hostile_server_is_left_within_the_deadline() {
    let url =
        |port: u16| format!("postgresql://u@127.0.0.1:{port}/d?sslmode=disable&connect_timeout=1");
    // Accepts and never answers.
    let silent = fake_server(|s| {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = [0u8; 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
    });
    let t = Instant::now();
    let e = connect(&url(silent)).err().unwrap().to_string();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(e.contains("no answer"), "{e}");
    // Announces a 2 GiB message.
    let huge = fake_server(|mut s| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"R\x7f\xff\xff\xff\0\0\0\0");
    });
    let e = connect(&url(huge)).err().unwrap().to_string();
    assert!(e.contains("protocol error"), "{e}");
    // Not PostgreSQL at all.
    let http = fake_server(|mut s| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let e = connect(&url(http)).err().unwrap().to_string();
    assert!(
        e.contains(&format!("PostgreSQL at 127.0.0.1:{http}")),
        "{e}"
    );
    // Nobody listening.
    let closed = common::free_port();
    let e = connect(&url(closed)).err().unwrap().to_string();
    assert!(e.contains("connection refused"), "{e}");
    // TLS asked of a server that says no.
    let no_tls = fake_server(|mut s| {
        let mut buf = [0u8; 8];
        let _ = s.read_exact(&mut buf);
        let _ = s.write_all(b"N");
    });
    let e = connect(&url(no_tls).replace("sslmode=disable", "sslmode=require"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not offer TLS"), "{e}");
    // Says yes to TLS, then trickles a handshake record a byte per 300 ms: each byte is well
    // within a per-read timeout, but the whole connect must still end at its deadline.
    let trickle = fake_server(|s| {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = [0u8; 8];
            let _ = s.read_exact(&mut buf);
            let _ = s.write_all(b"S");
            let _ = s.write_all(b"\x16\x03\x03\x40\x00");
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(300));
                if s.write_all(b"\x02").is_err() {
                    return;
                }
            }
        });
    });
    let t = Instant::now();
    let e = connect(&url(trickle).replace("sslmode=disable", "sslmode=require"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{:?}: {e}",
        t.elapsed()
    );
}

#[test]
fn connections_the_server_closed_are_replaced_without_failing_a_call() {
    let (b, url) = backend();
    let db = url
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap()
        .to_string();
    b.put(&item("k", b"1", None)).unwrap();
    let s = PgServer::shared();
    let kill = format!(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = '{db}'"
    );
    for _ in 0..2 {
        assert_ne!(s.psql(&kill).trim(), "0", "no pooled connection to close");
        // The closed connection is found out before anything is sent: even the calls that
        // are never retried (create, delete, compare_and_swap) succeed.
        assert!(b.create(&item("c", b"", None), 0).unwrap());
        assert!(b.delete("c", 0).unwrap());
        let v2 = item("k", b"2", None);
        assert!(b.compare_and_swap(&item("k", b"1", None), &v2, 0).unwrap());
        b.put(&item("k", b"1", None)).unwrap();
    }
}

/// A backend message: type byte, length, body.
fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn notification(payload_len: usize) -> Vec<u8> {
    let mut body = 1i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"teleport_lite_changes\0");
    body.extend(vec![b'x'; payload_len]);
    body.push(0);
    msg(b'A', &body)
}

/// A fake trust-auth server: answers every statement with `per_statement` notifications of
/// `payload_len` bytes, then CommandComplete and ReadyForQuery.
fn notifying_server(per_statement: usize, payload_len: usize) -> u16 {
    fake_server(move |s| {
        std::thread::spawn(move || {
            let mut s = s;
            let mut len = [0u8; 4];
            let _ = s.read_exact(&mut len);
            let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            let _ = s.read_exact(&mut rest);
            let _ = s.write_all(&[msg(b'R', &[0, 0, 0, 0]), msg(b'Z', b"I")].concat());
            let mut head = [0u8; 5];
            while s.read_exact(&mut head).is_ok() {
                let mut body =
                    vec![0u8; u32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4];
                if s.read_exact(&mut body).is_err() || head[0] != b'Q' {
                    return;
                }
                let mut out = Vec::new();
                for _ in 0..per_statement {
                    out.extend(notification(payload_len));
                }
                out.extend(msg(b'C', b"SELECT 1\0"));
                out.extend(msg(b'Z', b"I"));
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        });
    })
}

#[test]
fn unasked_oversized_or_flooding_notifications_are_bounded() {
    let url = |port: u16| format!("postgresql://u@127.0.0.1:{port}/d?sslmode=disable");
    let t = Duration::from_secs(5);
    // Without LISTEN, a notification is a protocol error.
    let mut c = connect(&url(notifying_server(1, 10))).unwrap();
    let e = c.execute("SELECT 1", t).unwrap_err().to_string();
    assert!(e.contains("does not LISTEN"), "{e}");
    assert!(c.is_broken());
    // A payload longer than PostgreSQL allows.
    let mut c = connect(&url(notifying_server(1, 8001))).unwrap();
    let e = c
        .listen("teleport_lite_changes", t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than PostgreSQL sends"), "{e}");
    // 200 notifications of 8000 bytes: at most 64 KiB stay queued.
    let mut c = connect(&url(notifying_server(200, 8000))).unwrap();
    c.listen("teleport_lite_changes", t).unwrap();
    let got = c.poll_notifications(Instant::now() + t).unwrap();
    let bytes: usize = got.iter().map(|n| n.channel.len() + n.payload.len()).sum();
    assert!(
        !got.is_empty() && bytes <= 64 << 10,
        "{} {bytes}",
        got.len()
    );
}
