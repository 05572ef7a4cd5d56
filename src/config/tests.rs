//! Unit tests of parsing, merging and rendering.

use std::path::Path;

use super::merge::file_roles;
use super::*;

fn pin() -> String {
    format!("sha256:{}", "0f".repeat(32))
}

#[test]
fn rendered_file_has_the_seed_sed_line_and_reparses() {
    let input = ConfigureInput {
        roles: Roles {
            node: true,
            ..Roles::default()
        },
        token: Some("abc".into()),
        auth_server: Some("10.0.0.1:3025".into()),
        node_name: Some("n1".into()),
        ..ConfigureInput::default()
    };
    let y = render_config(&input).unwrap();
    assert!(y.contains("\n  ca_pin: \"\"\n"), "{y}");
    let edited = y.replace(" ca_pin: \"\"", &format!(" ca_pin: \"{}\"", pin()));
    let cfg = parse_file_config(&edited, Path::new("x")).unwrap();
    let s = Settings::merge(cfg, Some("x".into()), &StartFlags::default()).unwrap();
    assert_eq!(s.ca_pins.len(), 1);
    assert!(s.roles.node && !s.roles.auth);
    assert_eq!(s.token.unwrap().expose(), "abc");
    assert_eq!(s.auth_server.as_deref(), Some("10.0.0.1:3025"));
    assert_eq!(s.labels.get("hostname").map(String::as_str), Some("n1"));
}

#[test]
fn unknown_keys_and_bad_yaml_name_the_place() {
    let err = parse_file_config(
        "version: v3\nteleport:\n  nodname: x\n",
        Path::new("/c.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/c.yaml:3:"), "{err}");
    assert!(err.contains("nodname"), "{err}");
    let err = parse_file_config("version: v3\nteleport: [\n", Path::new("/c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/c.yaml:"), "{err}");
}

#[test]
fn bad_pins_and_both_servers_are_refused() {
    let mut input = ConfigureInput {
        ca_pins: vec!["sha256:1234".into()],
        ..ConfigureInput::default()
    };
    let err = render_config(&input).unwrap_err().to_string();
    assert!(err.contains("expected sha256:<64 hex>"), "{err}");
    input.ca_pins.clear();
    input.auth_server = Some("a:3025".into());
    input.proxy = Some("p:443".into());
    assert!(render_config(&input).is_err());
}

#[test]
fn proxy_protocol_is_on_or_off_and_off_by_default() {
    let parse = |line: &str| {
        let y = format!("version: v3\nproxy_service:\n  enabled: yes\n{line}");
        let cfg = parse_file_config(&y, Path::new("x"))?;
        Settings::merge(cfg, Some("x".into()), &StartFlags::default())
            .map(|s| s.proxy.proxy_protocol)
    };
    assert!(!parse("").unwrap());
    assert!(parse("  proxy_protocol: on\n").unwrap());
    assert!(parse("  proxy_protocol: \"ON\"\n").unwrap());
    assert!(!parse("  proxy_protocol: off\n").unwrap());
    for bad in ["yes", "true", "v2", "1"] {
        let err = parse(&format!("  proxy_protocol: {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("proxy_service.proxy_protocol must be \"on\"") && err.contains(bad),
            "{err}"
        );
    }
}

#[test]
fn examples_parse_and_blocks_without_enabled_run() {
    for (name, text) in [
        ("all-in-one", include_str!("../../examples/all-in-one.yaml")),
        ("node", include_str!("../../examples/node.yaml")),
        (
            "auth-postgres",
            include_str!("../../examples/auth-postgres.yaml"),
        ),
    ] {
        let cfg = parse_file_config(text, Path::new(name)).unwrap();
        // The node example names a token file that exists only on a real host.
        let flags = StartFlags {
            token: Some("t".into()),
            ..StartFlags::default()
        };
        Settings::merge(cfg, Some(name.into()), &flags).unwrap();
    }
    let roles = |y: &str| {
        let cfg = parse_file_config(&format!("version: v3\n{y}"), Path::new("x"))?;
        file_roles(&cfg, Some(Path::new("x")))
    };
    let r = roles("auth_service:\n  enabled: no\nproxy_service:\n").unwrap();
    assert!(r.proxy && r.node && !r.auth);
    assert!(!roles("ssh_service: {}\n").unwrap().proxy);
    let off = "auth_service: {enabled: no}\nssh_service: {enabled: no}\n";
    let err = roles(off).unwrap_err().to_string();
    assert!(err.contains("no service is enabled"), "{err}");
}

#[test]
fn static_tokens_parse_roles_and_values() {
    let t = parse_static_tokens(&["proxy,node:secret-token-value".into()]).unwrap();
    assert_eq!(t[0].roles, vec!["proxy", "node"]);
    assert_eq!(t[0].token.expose(), "secret-token-value");
    assert!(parse_static_tokens(&["nope:x".into()]).is_err());
    let err = parse_static_tokens(&["db:x".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported by teleport-lite"), "{err}");
    assert!(parse_static_tokens(&["node:".into()]).is_err());
}

#[test]
fn outputs_and_addresses() {
    assert_eq!(parse_output("stdout").unwrap(), Output::Stdout);
    assert_eq!(
        parse_output("file").unwrap(),
        Output::File(DEFAULT_CONFIG_PATH.into())
    );
    assert_eq!(
        parse_output("file:///tmp/x.yaml").unwrap(),
        Output::File("/tmp/x.yaml".into())
    );
    assert!(parse_output("relative.yaml").is_err());
    assert_eq!(normalize_addr("auth", 3025, "a").unwrap(), "auth:3025");
    assert!(normalize_addr("https://auth:3025", 3025, "a").is_err());
}

#[test]
fn several_auth_servers_come_from_a_list_in_either_key_and_not_from_both() {
    let load = |teleport: &str| {
        let y = format!("version: v3\nteleport:\n{teleport}ssh_service:\n  enabled: true\n");
        let cfg = parse_file_config(&y, Path::new("x"))?;
        Settings::merge(cfg, Some("x".into()), &StartFlags::default())
    };
    for t in [
        "  auth_server: [a:3025, b]\n",
        "  auth_servers: [a:3025, b]\n",
        "  auth_server: a:3025,b\n",
    ] {
        let s = load(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(s.auth_servers, ["a:3025", "b:3025"], "{t}");
        assert_eq!(s.auth_server.as_deref(), Some("a:3025"), "{t}");
    }
    let err = load("  auth_server: a:3025\n  auth_servers: [b:3025]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn storage_is_sqlite_by_default_or_postgresql_with_a_conn_string() {
    let storage = |y: &str| {
        let text = format!("version: v3\nteleport:\n{y}ssh_service: {{enabled: no}}\n");
        let cfg = parse_file_config(&text, Path::new("x"))?;
        Settings::merge(cfg, Some("x".into()), &StartFlags::default()).map(|s| s.auth.storage)
    };
    assert_eq!(storage("").unwrap(), Storage::Sqlite);
    assert_eq!(
        storage("  storage: {type: sqlite}\n").unwrap(),
        Storage::Sqlite
    );
    assert_eq!(
        storage("  storage: {type: dir}\n").unwrap(),
        Storage::Sqlite
    );
    let pg = "  storage:\n    type: postgresql\n    conn_string: \
              postgresql://u:hunter2@db:5433/auth?sslmode=verify-ca\n";
    let Storage::Postgres(p) = storage(pg).unwrap() else {
        panic!("not postgres")
    };
    assert_eq!((p.addr(), p.database.as_str()), ("db:5433".into(), "auth"));
    // The password shows nowhere: not in Debug of the settings, nor of the file.
    let cfg = parse_file_config(&format!("version: v3\nteleport:\n{pg}"), Path::new("x")).unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert!(!format!("{:?}", storage(pg).unwrap()).contains("hunter2"));

    let err = |y: &str| storage(y).unwrap_err().to_string();
    let e = err("  storage: {type: postgresql}\n");
    assert!(e.contains("conn_string is missing"), "{e}");
    let e = err("  storage: {type: postgresql, conn_string: \"mysql://u:hunter2@h/d\"}\n");
    assert!(e.contains("postgresql://") && !e.contains("hunter2"), "{e}");
    for kind in ["dynamodb", "etcd", "firestore"] {
        let e = err(&format!("  storage: {{type: {kind}}}\n"));
        assert!(
            e.contains("not supported by teleport-lite; use sqlite or postgresql"),
            "{e}"
        );
    }
    let e = err("  storage: {type: mongo}\n");
    assert!(e.contains("unknown"), "{e}");
    let e = err("  storage: {type: sqlite, path: /x}\n");
    assert!(e.contains("path"), "{e}");
    let e = err("  storage: {type: sqlite, conn_string: \"postgresql://u@h/d\"}\n");
    assert!(e.contains("only read with type: postgresql"), "{e}");
}
