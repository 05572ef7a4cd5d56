//! Routing of the web API as a pure function of method and path, and the form of a path that
//! may be written to a log. Neither slices, indexes or panics on any input (both are fuzzed).

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /webapi/find` or `/webapi/ping`.
    Find,
    /// `GET /webapi/auth/export` (the query selects what).
    Export,
    /// `POST /webapi/host/credentials`: the join relay.
    Credentials,
    /// `GET /scripts/install.sh`.
    InstallScript,
    /// `GET /scripts/TOKEN/install-node.sh`; the token is one non-empty path segment.
    InstallNode(&'a str),
    /// `GET /webapi/systemd/teleport.service`.
    SystemdUnit,
    /// `GET /webapi/binary/teleport-linux-ARCH` for this executable's architecture.
    Binary,
    /// A path served here, with another method.
    MethodNotAllowed,
    NotFound,
}

/// The architecture name of this executable as the install script spells it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The route of a request. Every path is also served under `/v1`.
pub fn route<'a>(method: &str, path: &'a str) -> Route<'a> {
    let p = match path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    };
    let (wanted, found) = match p {
        "/webapi/find" | "/webapi/ping" => ("GET", Route::Find),
        "/webapi/auth/export" => ("GET", Route::Export),
        "/webapi/host/credentials" => ("POST", Route::Credentials),
        "/scripts/install.sh" => ("GET", Route::InstallScript),
        "/webapi/systemd/teleport.service" => ("GET", Route::SystemdUnit),
        _ if p.strip_prefix("/webapi/binary/teleport-linux-") == Some(arch()) => {
            ("GET", Route::Binary)
        }
        _ => match install_token(p) {
            Some(token) => ("GET", Route::InstallNode(token)),
            None => return Route::NotFound,
        },
    };
    if method == wanted {
        found
    } else {
        Route::MethodNotAllowed
    }
}

/// The TOKEN of `/scripts/TOKEN/install-node.sh`: one segment, not empty.
fn install_token(p: &str) -> Option<&str> {
    p.strip_prefix("/scripts/")?
        .strip_suffix("/install-node.sh")
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

/// Fixed segments of the paths served here, which are logged as they are.
const KNOWN: &[&str] = &[
    "v1",
    "webapi",
    "find",
    "ping",
    "auth",
    "export",
    "host",
    "credentials",
    "scripts",
    "install.sh",
    "install-node.sh",
    "systemd",
    "teleport.service",
    "binary",
];

/// Segments shorter than this (outside `/scripts/`) are logged as they are; a join token is 32
/// characters.
const SHORT: usize = 12;

fn plain(seg: &str) -> bool {
    seg.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

/// `path` as it may be logged: a token must never reach a log, wherever a client put it. Every
/// segment below `/scripts/` other than the script names, and every long or odd segment that
/// is not part of a route, is masked to its last 4 characters (or fully when short).
pub fn loggable_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(256));
    let mut below_scripts = false;
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let binary = seg
            .strip_prefix("teleport-linux-")
            .is_some_and(|a| a.len() <= 8 && plain(a));
        let keep = seg.is_empty()
            || KNOWN.contains(&seg)
            || binary
            || (!below_scripts && seg.chars().count() < SHORT && plain(seg));
        if keep {
            out.push_str(seg);
        } else {
            out.push_str(&mask(seg));
        }
        below_scripts |= seg == "scripts";
        if out.len() > 512 {
            out.push_str("...");
            break;
        }
    }
    out
}

/// Stars and the last 4 characters of a long, plain segment; only stars otherwise.
fn mask(seg: &str) -> String {
    let n = seg.chars().count();
    if n < 16 || !plain(seg) {
        return "****".into();
    }
    let mut last4: Vec<char> = seg.chars().rev().take(4).collect();
    last4.reverse();
    crate::secret::mask_with_suffix(n, &last4.into_iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_paths_with_and_without_v1() {
        for prefix in ["", "/v1"] {
            let is = |m: &str, p: &str, want: Route<'_>| {
                assert_eq!(route(m, &format!("{prefix}{p}")), want, "{m} {prefix}{p}")
            };
            is("GET", "/webapi/find", Route::Find);
            is("GET", "/webapi/ping", Route::Find);
            is("GET", "/webapi/auth/export", Route::Export);
            is("POST", "/webapi/host/credentials", Route::Credentials);
            is("GET", "/scripts/install.sh", Route::InstallScript);
            is(
                "GET",
                "/scripts/abc123/install-node.sh",
                Route::InstallNode("abc123"),
            );
            is(
                "GET",
                "/webapi/systemd/teleport.service",
                Route::SystemdUnit,
            );
            let bin = format!("/webapi/binary/teleport-linux-{}", arch());
            is("GET", &bin, Route::Binary);
        }
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        assert_eq!(route("POST", "/webapi/find"), Route::MethodNotAllowed);
        assert_eq!(
            route("GET", "/webapi/host/credentials"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("get", "/webapi/find"), Route::MethodNotAllowed);
        assert_eq!(
            route("DELETE", "/scripts/t/install-node.sh"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route("GET", "/webapi/binary/teleport-linux-sparc"),
            Route::NotFound
        );
        assert_eq!(route("GET", "/v1webapi/find"), Route::NotFound);
        assert_eq!(route("GET", "/v1/v1/webapi/find"), Route::NotFound);
    }

    #[test]
    fn install_paths_without_one_token_segment_are_not_found() {
        // The first of these panicked (slice begin > end) before routing was a pure function.
        for p in [
            "/scripts/install-node.sh",
            "/v1/scripts/install-node.sh",
            "/scripts//install-node.sh",
            "/scripts/a/b/install-node.sh",
            "/scripts/",
            "/scripts",
            "/scripts/install-node.sh/",
            "/scriptsinstall-node.sh",
            "/install-node.sh",
            "",
            "/",
        ] {
            assert_eq!(route("GET", p), Route::NotFound, "{p:?}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let pieces = [
            "/",
            "/v1",
            "scripts",
            "/install-node.sh",
            "é",
            "",
            "\u{0}",
            "//",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let p = format!("{a}{b}{c}");
                    let _ = route("GET", &p);
                    let _ = loggable_path(&p);
                }
            }
        }
    }

    #[test]
    fn tokens_are_masked_in_logged_paths() {
        let t = "0123456789abcdef0123456789abcdef";
        let stars = "*".repeat(28);
        assert_eq!(
            loggable_path(&format!("/scripts/{t}/install-node.sh")),
            format!("/scripts/{stars}cdef/install-node.sh")
        );
        assert_eq!(
            loggable_path(&format!("/v1/scripts/{t}/x/install-node.sh")),
            format!("/v1/scripts/{stars}cdef/****/install-node.sh")
        );
        assert_eq!(
            loggable_path("/scripts/abc/install-node.sh"),
            "/scripts/****/install-node.sh"
        );
        assert_eq!(
            loggable_path(&format!("/scripts/{t}install-node.sh")),
            format!("/scripts/{}e.sh", "*".repeat(43))
        );
        assert_eq!(loggable_path(&format!("/{t}")), format!("/{stars}cdef"));
        assert_eq!(loggable_path("/a/é/b"), "/a/****/b");
        for kept in [
            "/webapi/find",
            "/v1/webapi/auth/export",
            "/scripts/install.sh",
            "/webapi/binary/teleport-linux-amd64",
            "/favicon.ico",
            "/",
        ] {
            assert_eq!(loggable_path(kept), kept);
        }
        let long = "/a".repeat(1000);
        assert!(loggable_path(&long).len() < 600);
    }
}
