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
//! Each test says in a comment which vulnerable variant it catches.

mod common;
#[path = "security_lifecycle/raw.rs"]
mod raw;

#[path = "security_lifecycle/expiry.rs"]
mod expiry;
#[path = "security_lifecycle/messages.rs"]
mod messages;
#[path = "security_lifecycle/revocation.rs"]
mod revocation;
#[path = "security_lifecycle/tokens.rs"]
mod tokens;

use std::time::{Duration, Instant};

use common::lifecycle;
use common::*;
use raw::{Outcome, T};
use teleport_lite::clock::now_unix;
use teleport_lite::pki::ca::{new_key_and_csr, CertAuthority, Sans};
use teleport_lite::pki::identity::Identity;
use teleport_lite::pki::proof;
use teleport_lite::proto::{ErrorCode, Request, Response, PROTOCOL_VERSION};

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
