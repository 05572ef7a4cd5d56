//! Red-team tests of the identity lifecycle against the real processes: what an attacker who
//! holds nothing, a node identity, a proxy identity or a user identity can do with renewals,
//! refreshes, relayed renewals, locks, removals, rotations and use-limited tokens.
//!
//! Every new message, by who may send it, 10x too large, malformed, repeated, never finished
//! (`messages`):
//!
//! | message | who may send it | too large | malformed | repeated | never finished |
//! |---|---|---|---|---|---|
//! | `renew` on a node's stream | that node, never as a first message | closed | `error`, goes on | `rate_limited` | closed at the idle limit |
//! | `renew`, `refresh` on a tunnel | that tunnel's node, after its hello | closed | `error`, goes on | `rate_limited` (renew) | closed at 3 intervals |
//! | `relay_renew` on a link | a proxy: for itself, or a node with its proof | closed | `error` in `relay_answer` | see `floods` | closed at the idle limit |
//!
//! Each test says in a comment which vulnerable variant it catches. Tests whose comment
//! starts with WAS VULNERABLE demonstrated an attack that succeeded when they were written
//! (two red-team passes: `floods`, `revocation`, `expiry`, `stolen_proxy`, `second_pass`);
//! each names the fix, which is in, and the test now guards it.

mod common;
#[path = "security_lifecycle/evil.rs"]
mod evil;
#[path = "security_lifecycle/raw.rs"]
mod raw;

#[path = "security_lifecycle/expiry.rs"]
mod expiry;
#[path = "security_lifecycle/floods.rs"]
mod floods;
#[path = "security_lifecycle/messages.rs"]
mod messages;
#[path = "security_lifecycle/pushes.rs"]
mod pushes;
#[path = "security_lifecycle/revocation.rs"]
mod revocation;
#[path = "security_lifecycle/second_pass.rs"]
mod second_pass;
#[path = "security_lifecycle/stolen_proxy.rs"]
mod stolen_proxy;
#[path = "security_lifecycle/tokens.rs"]
mod tokens;

use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::lifecycle::{self, node_identity_path};
use common::*;
use evil::EvilProxy;
use raw::{Outcome, T};
use teleport_lite::clock::now_unix;
use teleport_lite::pki::ca::{new_key_and_csr, CertAuthority, Sans};
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::proof;
use teleport_lite::proto::{encode, ErrorCode, Request, Response, PROTOCOL_VERSION};
use teleport_lite::secret::Token;

fn block<F: std::future::Future>(f: F) -> F::Output {
    smol::block_on(f)
}

/// `tctl auth sign --user=NAME` as the admin; the identity it wrote.
fn user_identity(c: &Cluster, name: &str) -> Identity {
    let out = c.path().join(format!("{name}-{}.pem", now_unix()));
    c.tctl_ok(&[
        "auth",
        "sign",
        &format!("--user={name}"),
        "--ttl=1h",
        &format!("--out={}", out.display()),
        "--overwrite",
    ]);
    Identity::load(&out).unwrap()
}

fn admin_identity(c: &Cluster) -> Identity {
    Identity::load(&c.path().join("auth/admin-identity.pem")).unwrap()
}

/// The CA pins `tctl status` shows.
fn status_pins(c: &Cluster) -> Vec<String> {
    c.tctl_ok(&["status"])
        .lines()
        .filter_map(|l| l.strip_prefix("CA pin").map(|p| p.trim().to_string()))
        .collect()
}

fn rotate(c: &Cluster, phase: &str) -> std::process::Output {
    c.tctl(&[
        "auth",
        "rotate",
        "--type=host",
        "--manual",
        &format!("--phase={phase}"),
    ])
}

fn is(o: &Outcome, code: ErrorCode, says: &str) -> bool {
    o.error_code() == Some(code) && o.message().contains(says)
}

/// An echo service on this machine's loopback: a node's local service.
fn echo_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Longer than the longest pacing gap between renewals (10 s).
const PAST_PACING: Duration = Duration::from_secs(11);

/// Renews over `conn` with `req`; when the answer is `rate_limited` (a pacing gap running
/// from earlier requests), once or twice more after the gap. The last answer.
async fn renew_unpaced<S>(
    conn: &mut teleport_lite::net::Framed<S>,
    mut req: impl FnMut() -> Request,
) -> Outcome
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let mut tries = 0;
    loop {
        if conn.send(&req()).await.is_err() {
            return Outcome::Closed;
        }
        let o = raw::outcome(conn, T).await;
        tries += 1;
        if o.error_code() != Some(ErrorCode::RateLimited) || tries == 3 {
            return o;
        }
        smol::Timer::after(PAST_PACING).await;
    }
}

/// A response in a few words, for failure messages.
fn short(r: &Response) -> String {
    match r {
        Response::Registered { .. } => "registered (a node joined through it)".into(),
        Response::TokenOk => "token_ok".into(),
        Response::Renewed { expires, .. } => format!(
            "renewed (a new certificate until {})",
            teleport_lite::clock::rfc3339(*expires)
        ),
        other => format!("{other:?}").chars().take(200).collect(),
    }
}

/// An outcome in a few words.
fn brief(o: &Outcome) -> String {
    match o {
        Outcome::Reply(r) => short(r),
        other => format!("{other:?}"),
    }
}

/// As `renew_unpaced`, for a proxy's own renewal on its link.
async fn renew_unpaced_link(l: &mut raw::Conn, mut req: impl FnMut() -> Request) -> Outcome {
    let mut tries = 0;
    loop {
        let r = req();
        let Request::RelayRenew { id, .. } = &r else {
            unreachable!()
        };
        let id = *id;
        if l.send(&r).await.is_err() {
            return Outcome::Closed;
        }
        let o = raw::relay_answer(l, id).await;
        tries += 1;
        if o.error_code() != Some(ErrorCode::RateLimited) || tries == 3 {
            return o;
        }
        smol::Timer::after(PAST_PACING).await;
    }
}

/// How often `keep_alive` is needed: under the stream's idle limit (three 1 s intervals).
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Keeps a node's stream open without a heartbeat: a renewal with a bad CSR is answered
/// (with an error, or `rate_limited`).
async fn keep_alive(s: &mut raw::Conn) {
    s.send(&Request::Renew {
        csr: "keep-alive".into(),
        proof: String::new(),
    })
    .await
    .unwrap();
    let o = raw::outcome(s, T).await;
    assert!(o.error_code().is_some(), "keep-alive: {o:?}");
}
