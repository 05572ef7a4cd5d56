//! SSH through the tunnel with Debian's real OpenSSH: an sshd of the test's own (own config,
//! host key, authorized key, free port on the node's loopback; the machine's ssh setup is
//! never used), a node joined through a proxy, a user identity from `tctl auth sign` and the
//! block `tctl ssh-config` prints. Also `tctl nodes dial` alone: byte-transparent, flushed per
//! chunk, half-closing.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::access::Access;
use common::*;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(30);
const CLUSTER: &str = "example.test";

/// `sshd -D` on a free loopback port, with everything in a temp dir.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn keygen(path: &Path) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(path),
    );
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        keygen(&p("host_key"));
        keygen(&p("client_key"));
        fs::copy(p("client_key.pub"), p("authorized_keys")).unwrap();
        // Run as root, sshd insists on its privilege separation directory (the package's own
        // service would create it the same way).
        if is_root() {
            fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = free_port();
        let cfg = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\n",
            p("host_key").display(),
            p("sshd.pid").display(),
            p("authorized_keys").display(),
        );
        fs::write(p("sshd_config"), cfg).unwrap();
        let log = fs::File::create(p("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(p("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("openssh-server must be installed (scripts/deps.sh installs it)");
        let sshd = Sshd { child, port, dir };
        wait_for(T, "sshd to send its banner", || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let mut b = [0u8; 7];
            s.read_exact(&mut b).ok()?;
            (&b == b"SSH-2.0").then_some(())
        });
        sshd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u")).trim() == "0"
}

fn whoami() -> String {
    run_ok(Command::new("id").arg("-un")).trim().to_string()
}

/// Runs `cmd` to its end within `limit` (ssh and scp have no overall timeout of their own).
fn finish(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{id}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    (out, t.elapsed())
}

/// A file of `len` pseudo-random bytes and its SHA-256 (hex).
fn random_file(path: &Path, len: usize) -> String {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut h = Sha256::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..len / chunk.len() {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        h.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    hex(&h.finalize())
}

fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn ssh_and_scp_reach_a_node_through_the_tunnel_with_a_user_identity() {
    let sshd = Sshd::start();
    let a = Access::start("web-1", &[sshd.port]);
    let id = a.sign("alice", "8h");

    // The printed block, then the test's own keys and known_hosts (never ~/.ssh).
    let out = a.tctl_as(&id, &["ssh-config", &format!("--proxy={}", a.proxy)]);
    assert!(out.status.success(), "{}", text(&out));
    let block = String::from_utf8(out.stdout).unwrap();
    assert!(block.contains(&format!("Host *.{CLUSTER}\n")), "{block}");
    assert!(block.contains("ProxyCommand "), "{block}");
    let cfg = sshd.path("ssh_config");
    fs::write(
        &cfg,
        format!(
            "{block}\nHost *\n    IdentityFile {}\n    IdentitiesOnly yes\n    BatchMode yes\n    \
             UserKnownHostsFile {}\n    GlobalKnownHostsFile /dev/null\n    \
             StrictHostKeyChecking accept-new\n    LogLevel ERROR\n",
            sshd.path("client_key").display(),
            sshd.path("known_hosts").display()
        ),
    )
    .unwrap();
    let user = whoami();
    let host = format!("{user}@web-1.{CLUSTER}");
    let port = sshd.port.to_string();
    let ssh = |args: &[&str]| {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(&cfg).args(["-p", &port, &host]).args(args);
        c
    };

    // A command runs, and its output comes back.
    let (out, took) = finish(ssh(&["echo ok"]), T);
    assert!(out.status.success(), "ssh failed: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    eprintln!("ssh 'echo ok' through the tunnel took {took:?}");

    // 100 MB each way with scp, same SHA-256 on arrival.
    const SIZE: usize = 100 << 20;
    let files = tempfile::tempdir().unwrap();
    let local = files.path().join("up.bin");
    let want = random_file(&local, SIZE);
    let remote = files.path().join("arrived.bin");
    let scp = |from: &str, to: &str| {
        let mut c = Command::new("scp");
        c.arg("-F").arg(&cfg).args(["-q", "-P", &port, from, to]);
        c
    };
    let limit = Duration::from_secs(300);
    let (out, up) = finish(
        scp(
            local.to_str().unwrap(),
            &format!("{host}:{}", remote.display()),
        ),
        limit,
    );
    assert!(out.status.success(), "scp up failed: {}", text(&out));
    assert_eq!(sha256_file(&remote), want, "upload changed the bytes");
    let back = files.path().join("back.bin");
    let (out, down) = finish(
        scp(
            &format!("{host}:{}", remote.display()),
            back.to_str().unwrap(),
        ),
        limit,
    );
    assert!(out.status.success(), "scp down failed: {}", text(&out));
    assert_eq!(sha256_file(&back), want, "download changed the bytes");
    let mbps = |d: Duration| (SIZE >> 20) as f64 / d.as_secs_f64();
    eprintln!(
        "scp 100 MiB up {up:?} ({:.0} MiB/s), down {down:?} ({:.0} MiB/s)",
        mbps(up),
        mbps(down)
    );

    // The node is reached by name: an unknown one is refused with the reason.
    let mut nope = Command::new("ssh");
    nope.arg("-F")
        .arg(&cfg)
        .args(["-p", &port, &format!("{user}@nope.{CLUSTER}"), "true"]);
    let (out, _) = finish(nope, T);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no tunnel to node \"nope\""),
        "{}",
        text(&out)
    );
}

/// A service that sends `hello` (no newline) and waits for the client's answer before it says
/// more: with a buffered stdout, `tctl nodes dial` would hold `hello` back and both would wait
/// forever, as ssh did after key exchange.
fn chatty_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(2) {
            let mut c = conn.unwrap();
            std::thread::spawn(move || {
                let _ = c.write_all(b"hello");
                let mut got = Vec::new();
                // Everything the client sends until it half-closes, then its SHA-256.
                let _ = c.read_to_end(&mut got);
                let _ = c.write_all(hex(&Sha256::digest(&got)).as_bytes());
            });
        }
    });
    port
}

#[test]
fn dial_passes_every_chunk_at_once_and_half_closes() {
    let port = chatty_server();
    let a = Access::start("echo-1", &[port]);
    let id = a.sign("bob", "1h");
    let target = format!("127.0.0.1:{port}");

    // "hello" arrives while our stdin is still open.
    let mut child = a.spawn_dial(&id, "echo-1", &target);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 5];
        let r = stdout.read_exact(&mut b).map(|_| b);
        let _ = tx.send(r.is_ok() && &b == b"hello");
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let _ = tx.send(rest == hex(&Sha256::digest(b"")));
    });
    assert_eq!(
        rx.recv_timeout(T),
        Ok(true),
        "the first chunk was held back"
    );
    drop(child.stdin.take());
    assert_eq!(rx.recv_timeout(T), Ok(true), "no answer after end of input");
    assert!(child.wait().unwrap().success());

    // 8 MiB of every byte value, no newline anywhere: the service sees exactly them.
    let input: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 256) as u8).collect();
    let input: Vec<u8> = input
        .into_iter()
        .map(|b| if b == b'\n' { 0 } else { b })
        .collect();
    let out = a.dial_as(&id, "echo-1", &target, &input);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!("hello{}", hex(&Sha256::digest(&input)));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}
