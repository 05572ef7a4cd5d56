//! The exposition parsed line by line as a Prometheus scraper would, for every role mix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::metrics::METRICS;

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{a="x",b="y"}` into pairs (values may hold commas); panics on anything else.
fn labels(s: &str) -> Vec<(String, String)> {
    let mut rest = s.strip_prefix('{').unwrap();
    let mut out = Vec::new();
    loop {
        let (k, after) = rest.split_once("=\"").unwrap();
        assert!(valid_name(k) && !k.starts_with("__"), "label name {k:?}");
        let end = after.find('"').unwrap();
        let v = &after[..end];
        assert!(!v.contains(['\\', '\n']), "label value {v:?}");
        out.push((k.to_string(), v.to_string()));
        rest = &after[end + 1..];
        if rest == "}" {
            return out;
        }
        rest = rest.strip_prefix(',').unwrap();
    }
}

/// Checks every line; returns family name -> type, and each sample's value by its series.
fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    assert!(text.ends_with('\n'));
    let mut types = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(valid_name(name) && !help.is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let (name, lbl) = match series.find('{') {
            Some(i) => (&series[..i], labels(&series[i..])),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        if kind == "counter" {
            assert!(family.ends_with("_total") && v >= 0.0, "{line}");
        }
        if name.ends_with("_bucket") {
            assert!(lbl.iter().any(|(k, _)| k == "le"), "{line}");
        }
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "twice: {line}"
        );
    }
    (types, samples)
}

const ALL: [Roles; 7] = [
    Roles {
        auth: true,
        proxy: false,
        node: false,
    },
    Roles {
        auth: false,
        proxy: true,
        node: false,
    },
    Roles {
        auth: false,
        proxy: false,
        node: true,
    },
    Roles {
        auth: true,
        proxy: true,
        node: false,
    },
    Roles {
        auth: false,
        proxy: true,
        node: true,
    },
    Roles {
        auth: true,
        proxy: false,
        node: true,
    },
    Roles {
        auth: true,
        proxy: true,
        node: true,
    },
];

#[test]
fn every_role_mix_renders_valid_exposition() {
    METRICS.rtt_tunnel.observe(Duration::from_millis(2));
    METRICS.rtt_auth_link.observe(Duration::from_secs(30));
    for roles in ALL {
        let text = render(&METRICS, roles, true);
        let (types, samples) = parse(&text);
        assert_eq!(types.get("teleport_build_info").unwrap(), "gauge");
        let build = samples
            .iter()
            .find(|(k, _)| k.starts_with("teleport_build_info{"))
            .unwrap();
        assert!(build.0.contains(&format!("version=\"{}\"", crate::VERSION)));
        assert_eq!(*build.1, 1.0);
        assert_eq!(
            types.contains_key("teleport_nodes_online"),
            roles.auth,
            "{roles:?}"
        );
        assert_eq!(
            types.contains_key("teleport_tunnels_held"),
            roles.node,
            "{roles:?}"
        );
        assert_eq!(
            types.contains_key("teleport_proxy_tunnels"),
            roles.proxy,
            "{roles:?}"
        );
        assert_eq!(
            types.contains_key("teleport_heartbeat_rtt_seconds"),
            roles.node || roles.proxy
        );
        // Buckets never decrease and +Inf is the count.
        let mut by_series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (k, v) in &samples {
            if let Some(rest) = k.strip_prefix("teleport_heartbeat_rtt_seconds_bucket{") {
                let link = rest.split(',').next().unwrap().to_string();
                by_series.entry(link).or_default().push(*v);
            }
        }
        for (link, _) in by_series.iter() {
            let mut buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix("teleport_heartbeat_rtt_seconds_bucket{")?;
                    let rest = rest.strip_prefix(link.as_str())?;
                    let le = rest.split("le=\"").nth(1)?.trim_end_matches("\"}");
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, *v))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
            let count = samples[&format!("teleport_heartbeat_rtt_seconds_count{{{link}}}")];
            assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        }
    }
}

#[test]
fn the_parser_rejects_broken_exposition() {
    let broken = [
        "x_total 1\n",                                                   // no TYPE
        "# HELP a h\n# TYPE a gauge\n# HELP a h\n# TYPE a gauge\na 1\n", // twice
        "# HELP a h\n# TYPE a gauge\na{b=c} 1\n",                        // unquoted label
        "# HELP a h\n# TYPE a counter\na 1\n",                           // counter without _total
        "# HELP a h\n# TYPE a gauge\na one\n",                           // not a number
    ];
    for b in broken {
        assert!(std::panic::catch_unwind(|| parse(b)).is_err(), "{b}");
    }
}
