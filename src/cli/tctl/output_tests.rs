//! Exact shapes of what `tctl` prints, and that nothing from the cluster reaches a terminal
//! unescaped.

use std::collections::BTreeMap;

use super::*;
use crate::proto::{LockInfo, LockTarget, RotationInfo, WebTrust};
use crate::secret::Token;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn token_info(id: &str, roles: &[&str], expires: Option<i64>) -> TokenInfo {
    TokenInfo {
        id: id.into(),
        masked: "************abcd".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        labels: labels(&[("env", "dev"), ("team", "a")]),
        expires,
        is_static: expires.is_none(),
        uses_left: None,
    }
}

fn node(hostname: &str) -> NodeInfo {
    NodeInfo {
        hostname: hostname.into(),
        uuid: "5f0c7b2e-0000-4000-8000-000000000001".into(),
        addr: "⟵ Tunnel".into(),
        labels: labels(&[("env", "dev")]),
        version: "16.4.0".into(),
        tunnels: vec!["proxy-a".into()],
    }
}

fn created() -> TokenCreated {
    TokenCreated {
        token: Token::new("0123456789abcdef0123456789abcdef"),
        roles: vec!["Node".into()],
        expires: "1970-01-01T01:00:00Z".into(),
        ttl_secs: 3600,
        ca_pins: vec!["sha256:aa".into()],
        auth_addr: "10.0.0.5:3025".into(),
        proxy_addr: String::new(),
        proxy_web: WebTrust::default(),
    }
}

#[test]
fn tokens_table_has_masked_values_expiry_uses_left_and_ids() {
    let mut limited = token_info("id-1", &["Node"], Some(3600));
    limited.uses_left = Some(3);
    let list = [limited, token_info("id-2", &["Proxy", "Node"], None)];
    assert_eq!(
        tokens(&list, "text", 0),
        "Token            Type       Labels         Expiry Time (UTC)            Uses Left ID\n\
         ---------------- ---------- -------------- ---------------------------- --------- ----\n\
         ************abcd Node       env=dev,team=a 01 Jan 70 01:00 UTC (1h0m0s) 3         id-1\n\
         ************abcd Proxy,Node env=dev,team=a never                        unlimited id-2\n"
    );
}

#[test]
fn tokens_json_keeps_uses_left_only_for_limited_tokens() {
    let mut limited = token_info("id-1", &["Node"], Some(3600));
    limited.uses_left = Some(0);
    let out = tokens(&[limited, token_info("id-2", &["Node"], None)], "json", 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["uses_left"], 0);
    assert!(v[1].get("uses_left").is_none(), "{out}");
}

#[test]
fn no_tokens_is_a_sentence_in_text_and_an_empty_array_in_json() {
    assert_eq!(tokens(&[], "text", 0), "No active tokens found.\n");
    assert_eq!(tokens(&[], "json", 0), "[]\n");
}

#[test]
fn tokens_json_has_teleport_like_fields_and_escapes_control_characters() {
    let mut tk = token_info("id-1", &["Node"], Some(3600));
    tk.labels = labels(&[("evil", "a\n\u{1b}[2J")]);
    let out = tokens(&[tk], "json", 0);
    assert!(out.ends_with("]\n") && !out.contains('\u{1b}'), "{out}");
    assert!(out.contains(r#""evil": "a\n\u001b[2J""#), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = v[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        ["expires", "id", "labels", "masked", "roles", "static"],
        "no field carries the secret"
    );
}

#[test]
fn nodes_table_escapes_fields_that_try_to_forge_rows() {
    let out = nodes(&[node("evil\nweb-2 forged 1.2.3.4"), node("web-1")], "text");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("evil\\nweb-2 forged"), "{out}");
    assert!(out.starts_with("Host  "), "{out}");
    assert!(out.lines().nth(3).unwrap().starts_with("web-1 "), "{out}");
    let empty = nodes(&[], "text");
    assert_eq!(
        empty,
        "Host UUID Public Address Labels Version\n---- ---- -------------- ------ -------\n"
    );
}

#[test]
fn nodes_json_is_the_whole_inventory_entry() {
    let out = nodes(&[node("web-1")], "json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["hostname"], "web-1");
    assert_eq!(v[0]["tunnels"][0], "proxy-a");
    assert_eq!(v[0]["labels"]["env"], "dev");
}

#[test]
fn proxies_table_counts_tunnels() {
    let p = ProxyInfo {
        name: "proxy-a".into(),
        uuid: "u-1".into(),
        addr: "proxy.example.com:3080".into(),
        version: "16.4.0".into(),
        tunnels: 12,
    };
    assert_eq!(
        proxies(std::slice::from_ref(&p), "text"),
        "Host    UUID Public Address         Tunnels Version\n\
         ------- ---- ---------------------- ------- -------\n\
         proxy-a u-1  proxy.example.com:3080 12      16.4.0\n"
    );
    let v: serde_json::Value = serde_json::from_str(&proxies(&[p], "json")).unwrap();
    assert_eq!(v[0]["tunnels"], 12);
}

fn cluster_status(rotation: RotationInfo, pins: &[&str], ttl: u64) -> ClusterStatus {
    ClusterStatus {
        cluster_name: "example.test".into(),
        version: "16.4.0".into(),
        host_ca_rotation: String::new(),
        ca_pins: pins.iter().map(|p| p.to_string()).collect(),
        nodes_online: 3,
        rotation: Box::new(rotation),
        host_cert_ttl_secs: ttl,
        storage: String::new(),
    }
}

#[test]
fn status_aligns_keys_lists_every_pin_and_escapes_values() {
    let mut s = cluster_status(Default::default(), &["sha256:aa"], 0);
    s.cluster_name = "example\u{1b}[31m".into();
    assert_eq!(
        status(&s),
        "Cluster       example\\u{1b}[31m\n\
         Version       16.4.0\n\
         host CA       standby (never rotated)\n\
         CA pin        sha256:aa\n\
         Nodes online  3\n"
    );
}

#[test]
fn status_shows_the_rotation_both_pins_and_the_cert_ttl() {
    let rotating = RotationInfo {
        state: "in_progress".into(),
        phase: "update_clients".into(),
        mode: "auto".into(),
        started: 1_680_200_100,
        grace_secs: 108_000,
        last_rotated: 0,
        next_phase_at: 1_680_236_100,
    };
    let s = cluster_status(rotating, &["sha256:new", "sha256:old"], 30 * 3600);
    assert_eq!(
        status(&s),
        "Cluster        example.test\n\
         Version        16.4.0\n\
         host CA        in progress: phase update_clients (mode auto, started \
         2023-03-30T18:15:00Z, next phase at 2023-03-31T04:15:00Z)\n\
         CA pin         sha256:new\n\
         CA pin         sha256:old\n\
         Nodes online   3\n\
         Host cert TTL  30h\n"
    );
    let rotated = RotationInfo {
        state: "standby".into(),
        phase: "standby".into(),
        mode: "manual".into(),
        last_rotated: 1_680_200_100,
        ..Default::default()
    };
    let out = status(&cluster_status(rotated, &["sha256:new"], 0));
    assert!(
        out.contains("host CA       standby (rotated 2023-03-30T18:15:00Z)\n"),
        "{out}"
    );
}

#[test]
fn rotate_prints_the_state_phase_and_timing() {
    let r = RotationInfo {
        state: "in_progress".into(),
        phase: "update_clients".into(),
        mode: "auto".into(),
        started: 1_680_200_100,
        grace_secs: 108_000,
        last_rotated: 0,
        next_phase_at: 1_680_236_100,
    };
    assert_eq!(
        rotation(&r),
        "Host CA rotation: in_progress, phase update_clients (mode auto, started \
         2023-03-30T18:15:00Z, grace period 30h, next phase at 2023-03-31T04:15:00Z)\n"
    );
    let manual = RotationInfo {
        mode: "manual".into(),
        grace_secs: 0,
        next_phase_at: 0,
        phase: "init".into(),
        ..r
    };
    assert_eq!(
        rotation(&manual),
        "Host CA rotation: in_progress, phase init (mode manual, started 2023-03-30T18:15:00Z)\n"
    );
    assert_eq!(
        rotation(&RotationInfo::default()),
        "Host CA rotation: standby (never rotated)\n"
    );
    assert_eq!(duration(5400), "1h30m");
    assert_eq!(duration(45), "45s");
    assert_eq!(duration(0), "0s");
}

const HOST: &str = "5f0c7b2e-0000-4000-8000-000000000001";

#[test]
fn removals_and_locks_print_their_target() {
    assert_eq!(
        node_removed("web-1", HOST),
        format!("Node \"web-1\" ({HOST}) has been removed; its identity is revoked.\n")
    );
    assert!(node_removed("evil\n\u{1b}[2J", HOST).starts_with("Node \"evil\\n\\u{1b}[2J\""));
    let lock = LockInfo {
        target: LockTarget::ServerId(HOST.into()),
        message: "maintenance".into(),
        created: 1_680_200_100,
        expires: None,
    };
    assert_eq!(
        lock_created(&lock),
        format!("Created a lock on server_id={HOST}.\n")
    );
    let expiring = LockInfo {
        expires: Some(1_680_203_700),
        ..lock.clone()
    };
    assert_eq!(
        lock_created(&expiring),
        format!("Created a lock on server_id={HOST}.\nIt expires at 2023-03-30T19:15:00Z.\n")
    );
    assert_eq!(
        lock_deleted(&LockTarget::User("alice".into())),
        "Removed the lock on user=alice.\n"
    );
}

#[test]
fn locks_table_says_never_for_locks_without_expiry() {
    let locks_list = [
        LockInfo {
            target: LockTarget::ServerId(HOST.into()),
            message: "disk\nswap".into(),
            created: 1_680_200_100,
            expires: None,
        },
        LockInfo {
            target: LockTarget::User("alice".into()),
            message: String::new(),
            created: 1_680_200_100,
            expires: Some(1_680_203_700),
        },
    ];
    assert_eq!(
        locks(&locks_list, "text"),
        format!(
            "Target                                         Message    Created              \
             Expires\n\
             ---------------------------------------------- ---------- -------------------- \
             --------------------\n\
             server_id={HOST} disk\\nswap 2023-03-30T18:15:00Z never\n\
             user=alice                                                2023-03-30T18:15:00Z \
             2023-03-30T19:15:00Z\n"
        )
    );
    assert_eq!(locks(&[], "text"), "No locks found.\n");
    let v: serde_json::Value = serde_json::from_str(&locks(&locks_list, "json")).unwrap();
    assert_eq!(v[0]["target"]["server_id"], HOST);
    assert!(v[0]["expires"].is_null());
}

fn event(pairs: serde_json::Value) -> AuditEvent {
    pairs.as_object().unwrap().clone()
}

#[test]
fn audit_text_is_one_escaped_line_per_event() {
    let events = [
        event(serde_json::json!({
            "time": "2026-11-25T14:30:00Z", "event": "token.created",
            "token_id": "ab12cd34", "roles": ["Node"], "ttl_secs": 1800, "uses": 3
        })),
        event(serde_json::json!({
            "time": "2026-11-25T14:31:00Z", "event": "join.refused",
            "node_name": "evil\n2026 forged", "reason": "used_up",
            "detail": "the token is \"used\"", "source": "127.0.0.2 via proxy 127.0.0.1:4000"
        })),
    ];
    assert_eq!(
        audit(&events, "text"),
        "2026-11-25T14:30:00Z  token.created  roles=Node token_id=ab12cd34 ttl_secs=1800 uses=3\n\
         2026-11-25T14:31:00Z  join.refused   detail=\"the token is \\\"used\\\"\" \
         node_name=\"evil\\n2026 forged\" reason=used_up source=\"127.0.0.2 via proxy \
         127.0.0.1:4000\"\n"
    );
    assert_eq!(audit(&[], "text"), "No audit events found.\n");
}

#[test]
fn audit_json_is_an_array_of_the_events_as_logged() {
    let e = event(serde_json::json!({
        "time": "2026-11-25T14:30:00Z", "event": "token.used", "token_id": "ab12cd34",
        "uses_left": null
    }));
    let out = audit(std::slice::from_ref(&e), "json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!([e]));
    assert_eq!(audit(&[], "json"), "[]\n");
}

#[test]
fn a_created_token_prints_as_text_json_or_instructions() {
    let c = created();
    assert_eq!(
        token_created(&c, Some("text")),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert_eq!(
        token_created(&c, Some("json")),
        "{\n  \"token\": \"0123456789abcdef0123456789abcdef\",\n  \"roles\": [\n    \"Node\"\n  \
         ],\n  \"expires\": \"1970-01-01T01:00:00Z\"\n}\n"
    );
    let text = token_created(&c, None);
    assert!(
        text.starts_with("The invite token: 0123456789abcdef"),
        "{text}"
    );
    assert!(text.contains("--ca-pin=sha256:aa"), "{text}");
    assert_eq!(
        token_removed("****abcd"),
        "Token ****abcd has been deleted\n"
    );
}

#[test]
fn an_unknown_format_names_the_ones_that_exist() {
    assert!(check_format("json", &LIST_FORMATS).is_ok());
    let e = check_format("yaml", &LIST_FORMATS).unwrap_err().to_string();
    assert_eq!(e, "unknown --format \"yaml\": use one of text, json");
}
