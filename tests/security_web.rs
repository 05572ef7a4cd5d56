//! Attacks on the proxy's web port (ALPN http/1.1), each against a real auth+proxy process:
//! what an anonymous client sends, and what it and the operator see afterwards.

mod common;

use teleport_lite::core::limiter::RATE_PER_MIN;

use std::process::Command;
use std::time::Duration;

use common::web::*;
use common::*;

const T: Duration = Duration::from_secs(30);

/// Auth and proxy in one process; the proxy's address.
fn cluster() -> (Cluster, String) {
    let port = free_port();
    (
        Cluster::start_with_proxy(false, port),
        format!("127.0.0.1:{port}"),
    )
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Attack 1: `GET /scripts/install-node.sh` (no token segment) panicked in route matching,
/// which kills a release proxy (panic=abort) and dropped the connection unanswered.
#[test]
fn odd_install_paths_get_a_404_and_the_proxy_lives_on() {
    let (mut c, addr) = cluster();
    for path in [
        "/scripts/install-node.sh",
        "/v1/scripts/install-node.sh",
        "/scripts//install-node.sh",
        "/scripts/a/b/install-node.sh",
        "/scripts/",
        "/scriptsinstall-node.sh",
        "/v1",
        "/",
    ] {
        let r = get(&addr, path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(r.text().contains("not found"), "{path}: {}", r.text());
    }
    let r = get(&addr, "/webapi/find");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(c.auth().running());
    let log = c.auth().log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// Attack 2: every download of the executable cloned it and the write had no deadline, so 100
/// readers that never read grew the proxy by hundreds of MB. Now they share one buffer.
#[test]
fn stalled_binary_downloads_cost_little_memory_and_others_are_served() {
    let (mut c, addr) = cluster();
    let pid = c.auth().child.id();
    let path = format!("/webapi/binary/teleport-linux-{}", arch());

    // A whole download is the executable itself, with the SHA-256 the install script names.
    let exe = std::fs::read(bin()).unwrap();
    let r = get(&addr, &path);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), exe.len());
    assert!(r.body == exe, "the download differs from the executable");
    let sum = teleport_lite::secret::hex(&<sha2::Sha256 as sha2::Digest>::digest(&exe));
    assert!(get(&addr, "/scripts/install.sh").text().contains(&sum));

    let before = settled_rss_kib(pid);
    let stalled: Vec<Tls> = (0..100).map(|_| stalled_get(&addr, &path)).collect();
    let after = settled_rss_kib(pid);

    // Meanwhile a normal client is served.
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10"])
        .arg(format!("https://{addr}/webapi/find"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(CLUSTER_NAME), "{}", text(&out));

    let grew = after.saturating_sub(before);
    eprintln!(
        "proxy VmRSS: {before} KiB after one download, {after} KiB with {} stalled readers \
         (+{grew} KiB); executable {} KiB",
        stalled.len(),
        exe.len() / 1024
    );
    assert!(grew < 20 * 1024, "VmRSS grew by {grew} KiB");
    assert!(c.auth().running());
    drop(stalled);
}

/// Attack 3: the install-node.sh token check was unlimited and told anyone a token's type and
/// expiry. Now every answer for a token that cannot join is the same, and guesses are limited.
#[test]
fn token_checks_reveal_nothing_and_are_rate_limited() {
    let (c, addr) = cluster();
    let script = |token: &str| get(&addr, &format!("/scripts/{token}/install-node.sh"));

    let expired = c.token("node", "1s");
    wait_for(T, "the token to expire", || {
        let ls = c.tctl_ok(&["tokens", "ls", "--format=json"]);
        let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
        v.as_array().unwrap().is_empty().then_some(())
    });
    let proxy_token = c.token("proxy", "30m");
    let unknown = script("0123456789abcdef0123456789abcdef");
    assert_eq!(unknown.status, 200, "{unknown:?}");
    let said = unknown.text();
    assert!(said.contains("the token is not valid"), "{said}");
    assert!(said.contains("nothing was installed"), "{said}");
    assert!(said.contains("exit 1"), "{said}");
    for (what, r) in [
        ("wrong-role", script(&proxy_token)),
        ("expired", script(&expired)),
    ] {
        assert_eq!(
            (r.status, r.text()),
            (unknown.status, said.clone()),
            "{what} token"
        );
    }
    for secret in ["expired at", "Proxy", "allows", "does not exist"] {
        assert!(!said.contains(secret), "{secret:?} in {said}");
    }

    // A burst of guesses from one address runs into the per-source limit.
    let mut refused_at = None;
    for i in 0..700 {
        let r = script(&format!("{i:032x}"));
        if r.status == 429 {
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
    }
    let refused_at = refused_at.expect("700 guesses from one address were all answered");
    eprintln!("guess {refused_at} was the first refused with 429");
    assert!(refused_at >= 400, "refused after only {refused_at} guesses");
    // From then on guesses pass only at the refill rate (2/s), however slowly this machine
    // sends them: count what got through against the time it took.
    let start = std::time::Instant::now();
    let mut through = 0;
    for _ in 0..20 {
        let r = script("fedcba9876543210fedcba9876543210");
        if r.status == 200 {
            through += 1;
        } else {
            assert_eq!(r.status, 429, "{r:?}");
            assert!(r.text().contains("too many"), "{}", r.text());
        }
    }
    let refilled = start.elapsed().as_secs_f64() * RATE_PER_MIN / 60.0;
    assert!(
        through as f64 <= refilled.ceil() + 1.0,
        "{through} of 20 guesses got through in {:?}",
        start.elapsed()
    );
    // A valid token from that address waits too (its request comes right after a refused
    // one, so at most one refill can let it pass); the rest of the web API is not limited.
    let node_token = c.token("node", "30m");
    let mut waited = false;
    for _ in 0..3 {
        if script(&node_token).status == 429 {
            waited = true;
            break;
        }
    }
    assert!(waited, "a valid token was never limited after the burst");
    assert_eq!(get(&addr, "/webapi/find").status, 200);
}

/// Attack 5: `Content-Length: +2` was accepted and the first of two Content-Length headers
/// won: a front end that reads them differently sees another request than the proxy.
#[test]
fn ambiguous_request_bodies_are_refused() {
    let (_c, addr) = cluster();
    let post = |headers: &str, body: &str| {
        raw(
            &addr,
            format!("POST /webapi/host/credentials HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}")
                .as_bytes(),
        )
    };
    for (headers, body, says) in [
        (
            "Content-Length: +2\r\n",
            "{}",
            "bad content-length: digits only",
        ),
        ("Content-Length: 2 \r\n", "{}", ""),
        (
            "Content-Length: 2\r\nContent-Length: 40\r\n",
            "{}",
            "duplicate content-length header",
        ),
        (
            "Content-Length: 2\r\nContent-Length: 2\r\n",
            "{}",
            "duplicate content-length header",
        ),
        (
            "Transfer-Encoding: chunked\r\n",
            "2\r\n{}\r\n0\r\n\r\n",
            "transfer-encoding is not supported",
        ),
    ] {
        let r = post(headers, body);
        assert_eq!(r.status, 400, "{headers:?}: {r:?}");
        if says.is_empty() {
            // Well-formed framing reaches the join handler, which reads the (empty) JSON.
            assert!(r.text().contains("malformed join request"), "{}", r.text());
        } else {
            assert!(r.text().contains(says), "{headers:?}: {}", r.text());
        }
    }
}

/// Attack 6: the install path, token included, was logged at DEBUG.
#[test]
fn install_tokens_never_reach_the_logs_even_at_debug() {
    let port = free_port();
    let mut c = debug_cluster_with_proxy(port);
    let addr = format!("127.0.0.1:{port}");
    let token = c.token("node", "30m");
    let guess = "feedfacecafebeef0123456789abcdef";
    let ok = get(&addr, &format!("/scripts/{token}/install-node.sh"));
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains(&token), "the script carries the token");
    for path in [
        format!("/scripts/{guess}/install-node.sh"),
        format!("/v1/scripts/{guess}/install-node.sh"),
        format!("/scripts/{guess}"),
        format!("/scripts/{guess}/x/install-node.sh"),
        format!("/scripts/{guess}install-node.sh"),
        format!("/{guess}"),
    ] {
        let r = get(&addr, &path);
        assert!(r.status != 0, "{path}: no answer");
    }
    // Requests are logged, with the token masked to its last 4 characters.
    let masked = |t: &str| format!("{}{}", "*".repeat(t.len() - 4), &t[t.len() - 4..]);
    c.auth().wait_log(
        &format!("GET /scripts/{}/install-node.sh", masked(&token)),
        T,
    );
    c.auth().wait_log(
        &format!("GET /v1/scripts/{}/install-node.sh", masked(guess)),
        T,
    );
    // The refusal is logged for the operator with the token masked the same way.
    c.auth()
        .wait_log(&format!("refused install token {} from", masked(guess)), T);
    let mut logs = 0;
    for (path, bytes) in all_bytes_under(c.path()) {
        if path.extension().is_some_and(|e| e == "log") {
            logs += 1;
            assert!(!contains(&bytes, token.as_bytes()), "token in {path:?}");
            assert!(!contains(&bytes, guess.as_bytes()), "guess in {path:?}");
        }
    }
    assert!(logs >= 1);
}
