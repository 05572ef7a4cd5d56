//! Bulk data through `tctl nodes dial` (tctl, a proxy and a node joined through it, real TLS on
//! both hops): 64 MiB each way and both ways at once arrive intact, and a half-close still
//! passes. stdin/stdout as pipes (polled on the executor) and as regular files (the blocking
//! fallback) both carry the data.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use common::access::Access;
use common::*;
use sha2::{Digest, Sha256};

const LEN: usize = 64 << 20;

/// `len` pseudo-random bytes (every byte value, no pattern a bug could hide in).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A service on a free loopback port running `serve` on each connection.
fn service(serve: fn(TcpStream)) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    port
}

/// Reads to the client's end of input (its half-close), then answers the SHA-256 of it all.
fn hash_what_came(mut c: TcpStream) {
    let mut got = Vec::new();
    if c.read_to_end(&mut got).is_ok() {
        let _ = c.write_all(sha(&got).as_bytes());
    }
}

/// Sends `LEN` bytes of `data(LEN, 2)` and closes.
fn send_bulk(mut c: TcpStream) {
    let _ = c.write_all(&data(LEN, 2));
}

/// Echoes everything until the client's end of input.
fn echo(mut c: TcpStream) {
    let mut r = c.try_clone().unwrap();
    let _ = std::io::copy(&mut r, &mut c);
}

fn dial(a: &Access, id: &Path, port: u16) -> Command {
    let mut cmd = Command::new(&a.c.tctl);
    cmd.arg("-i").arg(id).args([
        "nodes",
        "dial",
        &format!("--proxy={}", a.proxy),
        "bulk-1",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd
}

#[test]
fn sixty_four_mib_each_way_and_both_ways_at_once_arrive_intact() {
    let (up, down, both) = (service(hash_what_came), service(send_bulk), service(echo));
    let a = Access::start("bulk-1", &[up, down, both]);
    let id = a.sign("bob", "1h");

    // Forward, stdin a regular file (the blocking fallback): the service hashes everything up
    // to our end of input, and its answer still comes back after that half-close.
    let input = data(LEN, 1);
    let file = a.c.path().join("input.bin");
    fs::write(&file, &input).unwrap();
    let out = dial(&a, &id, up)
        .stdin(fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), sha(&input));

    // Reverse, stdout a regular file and stdin empty (both the blocking fallback): all 64 MiB
    // arrive after our input ended.
    let sink = a.c.path().join("output.bin");
    let out = dial(&a, &id, down)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&sink).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got = fs::read(&sink).unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(sha(&got), sha(&data(LEN, 2)), "reverse bytes differ");

    // Both ways at once over pipes (polled on the executor): the echo comes back whole.
    let input = data(LEN, 3);
    let out = a.dial_as(&id, "bulk-1", &format!("127.0.0.1:{both}"), &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), LEN);
    assert_eq!(sha(&out.stdout), sha(&input), "echoed bytes differ");

    // The node ran all that on its main thread: no executor workers, so no wakeup of the data
    // plane crossed threads.
    let pid = a.node.proc.as_ref().unwrap().child.id();
    let workers: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("worker-"))
        .collect();
    assert!(
        workers.is_empty(),
        "the node runs executor workers: {workers:?}"
    );
}
