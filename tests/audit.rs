//! The audit trail as an operator reads it with `tctl audit ls`, against the real processes:
//! every token and join event with its fields, `--since` and `--limit`, and a log file that is
//! private and never holds a token value.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use serde_json::Value;
use teleport_lite::clock;
use teleport_lite::proto::{ErrorCode, Request, Response};

const T: Duration = Duration::from_secs(30);

fn audit(c: &Cluster, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "ls", "--format=json"];
    args.extend_from_slice(extra);
    let out = c.tctl_ok(&args);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The events named `name`, in order.
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

fn one<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found = named(events, name);
    assert_eq!(found.len(), 1, "one {name} in {events:#?}");
    found[0]
}

fn position(events: &[Value], name: &str) -> usize {
    events.iter().position(|e| e["event"] == name).unwrap()
}

#[test]
fn audit_ls_shows_every_token_and_join_event_and_the_log_never_holds_a_token() {
    let c = Cluster::start();
    let pin = c.pin();
    let token = c
        .tctl_ok(&[
            "tokens",
            "add",
            "--type=node",
            "--uses=2",
            "--ttl=10m",
            "--format=text",
        ])
        .trim()
        .to_string();
    let listed: Value =
        serde_json::from_str(&c.tctl_ok(&["tokens", "ls", "--format=json"])).unwrap();
    let token_id = listed[0]["id"].as_str().unwrap().to_string();

    let mut n = Node::new("audited");
    n.start(&c, &token, &pin);
    c.wait_node("audited", T);
    // A guessed token, and a request that is broken before any token is looked at.
    let guess = "0123456789abcdef0123456789abcdef";
    let (_, guessed) = wire::register_request(guess, "guesser", "");
    let r = wire::ask_auth(&c.addr(), &Request::Register(guessed), None);
    assert!(
        matches!(
            &r,
            Response::Error {
                code: ErrorCode::AccessDenied,
                ..
            }
        ),
        "{r:?}"
    );
    let (_, mut broken) = wire::register_request(&token, "broken", "");
    broken.csr = "not a csr".into();
    let r = wire::ask_auth(&c.addr(), &Request::Register(broken), None);
    assert!(
        matches!(
            &r,
            Response::Error {
                code: ErrorCode::BadParameter,
                ..
            }
        ),
        "{r:?}"
    );
    c.tctl_ok(&["tokens", "rm", &token_id]);

    let events = audit(&c, &[]);
    let created = one(&events, "token.created");
    assert_eq!(created["token_id"], token_id.as_str());
    assert_eq!(created["roles"], serde_json::json!(["Node"]));
    assert_eq!(created["ttl_secs"], 600);
    assert_eq!(created["uses"], 2);
    let used = one(&events, "token.used");
    assert_eq!(used["token_id"], token_id.as_str());
    assert_eq!(used["uses_left"], 1);

    let accepted = one(&events, "join.accepted");
    assert_eq!(accepted["node_name"], "audited");
    assert_eq!(accepted["role"], "Node");
    assert_eq!(accepted["token_id"], token_id.as_str());
    assert!(
        accepted["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{accepted}"
    );
    let host_id = accepted["host_id"].as_str().unwrap();
    let issued: Vec<&Value> = named(&events, "cert.issued")
        .into_iter()
        .filter(|e| e["via"] == "join")
        .collect();
    assert_eq!(issued.len(), 1, "{events:#?}");
    assert_eq!(issued[0]["host_id"], host_id);
    assert_eq!(issued[0]["role"], "Node");
    let expires = clock::parse_rfc3339(issued[0]["expires"].as_str().unwrap()).unwrap();
    assert!(expires > clock::now_unix(), "{}", issued[0]);

    let refused = named(&events, "join.refused");
    assert_eq!(refused.len(), 2, "{events:#?}");
    let by_name = |name: &str| *refused.iter().find(|e| e["node_name"] == name).unwrap();
    assert_eq!(by_name("guesser")["reason"], "invalid_token");
    assert_eq!(by_name("broken")["reason"], "bad_request");
    for e in &refused {
        assert!(
            e["source"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{e}"
        );
        assert_eq!(e["role"], "Node");
    }
    let token_refused = one(&events, "token.refused");
    assert_eq!(token_refused["reason"], "invalid_token");
    assert_ne!(token_refused["token_id"], token_id.as_str());
    assert_eq!(one(&events, "token.removed")["token_id"], token_id.as_str());

    // Oldest first, every one with a time.
    assert!(position(&events, "token.created") < position(&events, "join.accepted"));
    assert!(position(&events, "join.accepted") < position(&events, "token.removed"));
    for e in &events {
        assert!(
            clock::parse_rfc3339(e["time"].as_str().unwrap()).is_some(),
            "{e}"
        );
    }

    // The text form: one line per event, time first.
    let text_out = c.tctl_ok(&["audit", "ls"]);
    assert_eq!(text_out.lines().count(), events.len(), "{text_out}");
    let line = text_out
        .lines()
        .find(|l| l.contains("join.accepted"))
        .unwrap();
    assert!(line.starts_with(events[0]["time"].as_str().unwrap().get(..4).unwrap()));
    assert!(line.contains("node_name=audited"), "{line}");
    assert!(line.contains(&format!("token_id={token_id}")), "{line}");

    // The log is private and holds neither the token nor the guess.
    let log = c.path().join("auth").join("audit.log");
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&log).unwrap();
    assert!(!bytes.is_empty());
    for secret in [&token, guess] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret} is in the audit log"
        );
        assert!(!contains(&bytes, &secret.as_bytes()[..16]));
    }
}

#[test]
fn since_and_limit_choose_which_events_are_listed() {
    let c = Cluster::start();
    c.token("node", "10m");
    let before = audit(&c, &[]);
    let last = clock::parse_rfc3339(before.last().unwrap()["time"].as_str().unwrap()).unwrap();
    // The next event must fall in a later second than every event so far.
    wait_for(T, "the clock to pass the last event's second", || {
        (clock::now_unix() > last).then_some(())
    });
    c.token("proxy", "10m");
    let since = clock::rfc3339(last + 1);
    let later = audit(&c, &[&format!("--since={since}")]);
    assert_eq!(later.len(), 1, "{later:#?}");
    assert_eq!(later[0]["event"], "token.created");
    assert_eq!(later[0]["roles"], serde_json::json!(["Proxy"]));
    assert_eq!(audit(&c, &["--since=1h"]).len(), before.len() + 1);
    let future = clock::rfc3339(clock::now_unix() + 3600);
    assert!(audit(&c, &[&format!("--since={future}")]).is_empty());
    assert_eq!(
        c.tctl_ok(&["audit", "ls", &format!("--since={future}")]),
        "No audit events found.\n"
    );

    // A limit keeps the newest events and says that older ones were left out.
    let out = c.tctl(&["audit", "ls", "--format=json", "--limit=1"]);
    assert!(out.status.success(), "{}", text(&out));
    let newest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_eq!(newest[0]["roles"], serde_json::json!(["Proxy"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more events matched"),
        "{}",
        text(&out)
    );

    for (bad, says) in [
        ("--since=yesterday", "neither a duration nor a time"),
        ("--limit=0", "give 1 to 10000"),
        ("--limit=10001", "give 1 to 10000"),
        ("--format=yaml", "unknown --format"),
    ] {
        let out = c.tctl(&["audit", "ls", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(text(&out).contains(says), "{bad}: {}", text(&out));
    }
}
