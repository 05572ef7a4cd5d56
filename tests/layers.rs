//! The dependency rules of `docs/architecture.md`, checked against the code: every `crate::`
//! path in `src/` is resolved to the file it names, each file to its part in
//! `docs/architecture.parts.json`, and no part may use one that its `never` list forbids.
//! The rules live in that one file; this test only reads them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Edges known to break a rule for a short while, each with its reason. The test fails when one
/// of them no longer occurs, so the entry is removed once the cause is gone.
const KNOWN: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `part -> paths` (a path ending in '/' is a folder) and the forbidden `(from, to)` pairs.
type Rules = (Vec<(String, Vec<String>)>, Vec<(String, String)>);

fn rules() -> Rules {
    let text = std::fs::read_to_string(root().join("docs/architecture.parts.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let parts = v["parts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, p)| {
            let is = p["is"].as_array().unwrap();
            let is = is.iter().map(|s| s.as_str().unwrap().to_string());
            (name.clone(), is.collect())
        })
        .collect();
    let never = v["never"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n[0].as_str().unwrap().into(), n[1].as_str().unwrap().into()))
        .collect();
    (parts, never)
}

/// The part a file (relative path) is on: the longest matching path wins; a child module of
/// a file module (`src/http/tests.rs` of `src/http.rs`) is on its parent's part.
fn part_of<'a>(parts: &'a [(String, Vec<String>)], file: &str) -> Option<&'a str> {
    let parent = file.rsplit_once('/').map(|(dir, _)| format!("{dir}.rs"));
    let direct = part_of_path(parts, file);
    direct.or_else(|| parent.and_then(|p| part_of_path(parts, &p)))
}

fn part_of_path<'a>(parts: &'a [(String, Vec<String>)], file: &str) -> Option<&'a str> {
    parts
        .iter()
        .flat_map(|(name, is)| is.iter().map(move |p| (name, p)))
        .filter(|(_, p)| file == p.as_str() || (p.ends_with('/') && file.starts_with(p.as_str())))
        .max_by_key(|(_, p)| p.len())
        .map(|(name, _)| name.as_str())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::a::b` path in the code (comments left out), as segment lists; a group
/// `crate::{a, b::c}` gives one path per member.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue; // `teleport_lite::crate`-like or `$crate`: not ours
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for member in group[..end].split(',') {
                    out.push(segments(member.trim()));
                }
            } else {
                out.push(segments(rest));
            }
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(s: &str) -> Vec<String> {
    let path: String = s.chars().take_while(|&c| is_ident(c) || c == ':').collect();
    path.split("::")
        .take_while(|seg| !seg.is_empty() && seg.chars().all(is_ident))
        .map(String::from)
        .collect()
}

/// The file a `crate::` path names: the longest prefix that is a module file; `lib.rs` for an
/// item of the crate root.
fn resolve(segs: &[String]) -> String {
    for k in (1..=segs.len()).rev() {
        let base = format!("src/{}", segs[..k].join("/"));
        for cand in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if root().join(&cand).is_file() {
                return cand;
            }
        }
    }
    "src/lib.rs".into()
}

/// `(file, path as written, to-part)` for every use that crosses a forbidden pair.
fn violations() -> Vec<(String, String, String)> {
    let (parts, never) = rules();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let from = part_of(&parts, &rel)
            .unwrap_or_else(|| panic!("{rel} is on no part of docs/architecture.parts.json"));
        let code = std::fs::read_to_string(&f).unwrap();
        for segs in crate_paths(&code) {
            let to = part_of(&parts, &resolve(&segs)).unwrap_or("");
            if never.iter().any(|(a, b)| a == from && b == to) {
                found.push((
                    rel.clone(),
                    format!("crate::{}", segs.join("::")),
                    to.into(),
                ));
            }
        }
    }
    found
}

#[test]
fn no_part_uses_one_its_rules_forbid() {
    let found = violations();
    let unexpected: Vec<_> = found
        .iter()
        .filter(|(f, p, _)| !KNOWN.iter().any(|(kf, kp, _)| kf == f && kp == p))
        .collect();
    assert!(
        unexpected.is_empty(),
        "imports that break docs/architecture.md's rules: {unexpected:#?}; move the item to a \
         lower layer (proto, core, net ...) or have the composition root in cli hand it over"
    );
    for (kf, kp, why) in KNOWN {
        assert!(
            found.iter().any(|(f, p, _)| f == kf && p == kp),
            "{kf} no longer uses {kp} ({why}): remove it from KNOWN in tests/layers.rs"
        );
    }
}

#[test]
fn every_part_names_paths_that_exist() {
    let (parts, never) = rules();
    for (name, is) in &parts {
        for p in is {
            assert!(root().join(p).exists(), "part {name}: {p} does not exist");
        }
    }
    let names: BTreeSet<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
    for (a, b) in &never {
        assert!(
            names.contains(a.as_str()) && names.contains(b.as_str()),
            "{a} -> {b}"
        );
    }
}

#[test]
fn the_reader_finds_grouped_and_nested_paths_and_skips_comments() {
    let code = "use crate::{fsutil, http};\nuse crate::proxy::ALPN_TUNNEL; // crate::auth::x\n\
                let a = crate::rt::spawn(x);\n// crate::cli::printable\n";
    let got: Vec<String> = crate_paths(code).iter().map(|s| s.join("::")).collect();
    assert_eq!(got, ["fsutil", "http", "proxy::ALPN_TUNNEL", "rt::spawn"]);
    assert_eq!(
        resolve(&["proxy".into(), "ALPN_TUNNEL".into()]),
        "src/proxy/mod.rs"
    );
    assert_eq!(resolve(&["VERSION".into()]), "src/lib.rs");
    // A rule the code would break is seen: the agent's part may not use the proxy's.
    let (parts, never) = rules();
    let from = part_of(&parts, "src/agent/pool.rs").unwrap();
    let to = part_of(&parts, &resolve(&["proxy".into(), "x".into()])).unwrap();
    assert!(never.iter().any(|(a, b)| a == from && b == to));
}
