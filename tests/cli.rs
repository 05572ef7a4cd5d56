//! Command-line behaviour that needs no cluster: configure, bad input, help, version.

mod common;

use std::fs;

use common::*;

fn pin() -> String {
    format!("sha256:{}", "0a".repeat(32))
}

#[test]
fn version_and_help_through_both_names() {
    let v = run(&["version"]);
    assert!(v.status.success());
    assert!(text(&v).contains("Teleport v"), "{}", text(&v));
    let dir = tempfile::tempdir().unwrap();
    let tctl = dir.path().join("tctl");
    std::os::unix::fs::symlink(bin(), &tctl).unwrap();
    let tv = std::process::Command::new(&tctl)
        .arg("version")
        .output()
        .unwrap();
    assert!(tv.status.success());
    for args in [
        vec!["--help"],
        vec!["start", "--help"],
        vec!["configure", "--help"],
        vec!["node", "configure", "--help"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{args:?}");
    }
    for args in [
        vec!["tokens", "add", "--help"],
        vec!["nodes", "ls", "--help"],
        vec!["status", "--help"],
    ] {
        let o = std::process::Command::new(&tctl)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("Usage: tctl"), "{args:?}");
    }
}

#[test]
fn node_configure_writes_v3_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("etc/teleport.yaml");
    let target = format!("file://{}", out_path.display());
    let args = [
        "node",
        "configure",
        "--token=abcd1234abcd1234abcd1234abcd1234",
        "--proxy=teleport.example.com:443",
        &format!("--ca-pin={},{}", pin(), pin().replace("0a", "0b")),
        "--node-name=edge-7",
        "--labels=env=prod,team=ops",
        "-o",
        &target,
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let y = fs::read_to_string(&out_path).unwrap();
    for want in [
        "version: v3",
        "nodename: \"edge-7\"",
        "token_name: \"abcd1234abcd1234abcd1234abcd1234\"",
        "method: token",
        "proxy_server: \"teleport.example.com:443\"",
        "auth_service:\n  enabled: \"no\"",
        "ssh_service:\n  enabled: \"yes\"",
        "env: \"prod\"",
        "format:\n      output: text",
    ] {
        assert!(y.contains(want), "missing {want:?} in\n{y}");
    }
    assert_eq!(y.matches("sha256:").count(), 2, "{y}");
    let again = run(&args);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("will not overwrite existing file"),
        "{}",
        text(&again)
    );
    assert_eq!(fs::read_to_string(&out_path).unwrap(), y, "file changed");

    // stdout is the default.
    let o = run(&["node", "configure", "--token=x", "--auth-server=10.1.2.3"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("auth_server: \"10.1.2.3:3025\""), "{s}");
    assert!(s.contains("  ca_pin: \"\"\n"), "{s}");
}

#[test]
fn bad_input_gets_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "bad yaml".into(),
            vec![
                "start".into(),
                "-c".into(),
                write(d, "a.yaml", "version: v3\nteleport:\n  nodename: [x\n"),
            ],
            "a.yaml:",
        ),
        (
            "unknown key".into(),
            vec![
                "start".into(),
                "-c".into(),
                write(
                    d,
                    "b.yaml",
                    "version: v3\nteleport:\n  auth_servr: x:3025\n",
                ),
            ],
            "unknown field `auth_servr`",
        ),
        (
            "missing version".into(),
            vec![
                "start".into(),
                "-c".into(),
                write(d, "c.yaml", "teleport:\n  nodename: x\n"),
            ],
            "version: v3",
        ),
        (
            "malformed pin".into(),
            vec![
                "start".into(),
                "--roles=node".into(),
                "--token=t".into(),
                "--auth-server=127.0.0.1:1".into(),
                "--ca-pin=sha256:abc".into(),
                format!("--data-dir={}", d.join("x").display()),
            ],
            "expected sha256:<64 hex>",
        ),
        (
            "missing token".into(),
            vec![
                "start".into(),
                "--roles=node".into(),
                "--auth-server=127.0.0.1:1".into(),
                format!("--ca-pin={}", pin()),
                format!("--data-dir={}", d.join("y").display()),
            ],
            "tctl tokens add --type=node",
        ),
        (
            "no auth server".into(),
            vec![
                "start".into(),
                "--roles=node".into(),
                "--token=t".into(),
                format!("--data-dir={}", d.join("z").display()),
            ],
            "--auth-server=HOST:3025",
        ),
        (
            "unknown role".into(),
            vec!["start".into(), "--roles=nodes".into()],
            "unknown role \"nodes\"",
        ),
        (
            "missing config file".into(),
            vec![
                "start".into(),
                "-c".into(),
                d.join("nope.yaml").display().to_string(),
            ],
            "nope.yaml",
        ),
        (
            "both servers".into(),
            vec![
                "configure".into(),
                "--auth-server=a:3025".into(),
                "--proxy=b:443".into(),
            ],
            "cannot both be set",
        ),
        (
            "relative output".into(),
            vec![
                "configure".into(),
                "--token=t".into(),
                "-o".into(),
                "rel.yaml".into(),
            ],
            "invalid --output",
        ),
    ];
    for (what, args, needle) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&refs);
        assert!(!o.status.success(), "{what}: succeeded");
        let t = text(&o);
        assert!(t.contains(needle), "{what}: expected {needle:?} in:\n{t}");
        assert!(!t.contains("panicked"), "{what}: {t}");
    }
    // Nothing was written for the failed starts.
    for sub in ["x", "y", "z"] {
        assert!(!d.join(sub).exists(), "{sub} was created");
    }
}

fn write(dir: &std::path::Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p.display().to_string()
}
