//! Exact shapes of what `tctl` prints, and that nothing from the cluster reaches a terminal
//! unescaped.

use std::collections::BTreeMap;

use super::*;
use crate::proto::WebTrust;
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
fn tokens_table_has_masked_values_expiry_and_ids() {
    let list = [
        token_info("id-1", &["Node"], Some(3600)),
        token_info("id-2", &["Proxy", "Node"], None),
    ];
    assert_eq!(
        tokens(&list, "text", 0),
        "Token            Type       Labels         Expiry Time (UTC)            ID\n\
         ---------------- ---------- -------------- ---------------------------- ----\n\
         ************abcd Node       env=dev,team=a 01 Jan 70 01:00 UTC (1h0m0s) id-1\n\
         ************abcd Proxy,Node env=dev,team=a never                        id-2\n"
    );
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

#[test]
fn status_aligns_keys_lists_every_pin_and_escapes_values() {
    let s = ClusterStatus {
        cluster_name: "example\u{1b}[31m".into(),
        version: "16.4.0".into(),
        host_ca_rotation: "never updated".into(),
        ca_pins: vec!["sha256:aa".into(), "sha256:bb".into()],
        nodes_online: 3,
        rotation: Default::default(),
        host_cert_ttl_secs: 0,
    };
    assert_eq!(
        status(&s),
        "Cluster  example\\u{1b}[31m\n\
         Version  16.4.0\n\
         host CA  never updated\n\
         Nodes    3\n\
         CA pin   sha256:aa\n\
         CA pin   sha256:bb\n"
    );
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
