//! Command lines of the lifecycle commands (`tokens add --uses`, `audit ls`, `nodes rm`,
//! `rm`, `lock`, `unlock`, `auth rotate`) turned into admin requests, checked here so that a
//! typo gets an error naming the fix before anything is sent. Pure: time is passed in.

use super::args::{AuthRotate, LockCmd};
use crate::auth::users::check_user_name;
use crate::clock;
use crate::core::tokens::MAX_USES;
use crate::error::{Error, Result};
use crate::proto::{AdminCmd, LockTarget, RotateRequest};
use crate::secret::is_uuid_shaped;

/// Most events `audit ls` asks for (auth refuses more).
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

/// Phases of a manual rotation, in Teleport's spelling.
pub const PHASES: [&str; 5] = [
    "init",
    "update_clients",
    "update_servers",
    "standby",
    "rollback",
];

fn bad(msg: String) -> Error {
    Error::Config(msg)
}

/// `tokens add --uses`.
pub fn token_uses(uses: Option<u32>) -> Result<Option<u32>> {
    match uses {
        Some(n) if n == 0 || n > MAX_USES => Err(bad(format!(
            "--uses {n} is out of range: give 1 to {MAX_USES} joins, or leave --uses out for a \
             token that any number of joins may use until it expires"
        ))),
        other => Ok(other),
    }
}

/// `audit ls --since`: a duration back from `now` (1h: the last hour) or an RFC 3339 time.
pub fn audit_since(arg: Option<&str>, now: i64) -> Result<Option<i64>> {
    let Some(s) = arg else { return Ok(None) };
    if let Some(t) = clock::parse_rfc3339(s.trim()) {
        return Ok(Some(t));
    }
    match clock::parse_duration(s) {
        Ok(d) => Ok(Some(
            now.saturating_sub(d.as_secs().min(i64::MAX as u64) as i64),
        )),
        Err(_) => Err(bad(format!(
            "--since {s:?} is neither a duration nor a time: give e.g. 1h or 30m (events of the \
             last hour, the last half hour) or an RFC 3339 time such as 2026-11-25T14:30:00Z"
        ))),
    }
}

/// `audit ls --limit`.
pub fn audit_limit(limit: u32) -> Result<u32> {
    if limit == 0 || limit > MAX_AUDIT_LIMIT {
        return Err(bad(format!(
            "--limit {limit} is out of range: give 1 to {MAX_AUDIT_LIMIT} (the newest events are \
             kept; narrow older ones with --since)"
        )));
    }
    Ok(limit)
}

fn server_id(id: &str) -> Result<LockTarget> {
    if !is_uuid_shaped(id) {
        return Err(bad(format!(
            "--server-id {:?} is not a host UUID: take it from the UUID column of tctl nodes ls",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(LockTarget::ServerId(id.to_ascii_lowercase()))
}

fn user(name: &str) -> Result<LockTarget> {
    check_user_name(name).map_err(bad)?;
    Ok(LockTarget::User(name.to_string()))
}

/// The one target of `lock` or `unlock` (`cmd` names the command in the error).
pub fn lock_target(server: Option<&str>, user_name: Option<&str>, cmd: &str) -> Result<LockTarget> {
    match (server, user_name) {
        (Some(id), None) => server_id(id),
        (None, Some(u)) => user(u),
        _ => Err(bad(format!(
            "tctl {cmd} takes exactly one target: --server-id=UUID (a host) or --user=NAME"
        ))),
    }
}

/// `lock`.
pub fn lock(l: &LockCmd) -> Result<AdminCmd> {
    let target = lock_target(l.server_id.as_deref(), l.user.as_deref(), "lock")?;
    let ttl_secs = match &l.ttl {
        None => None,
        Some(t) => {
            let d = clock::parse_duration(t).map_err(|e| bad(format!("--ttl: {e}")))?;
            if d.as_secs() == 0 {
                return Err(bad(
                    "--ttl must be at least 1s; leave it out for a lock that lasts until tctl \
                     unlock"
                        .into(),
                ));
            }
            Some(d.as_secs())
        }
    };
    Ok(AdminCmd::LockCreate {
        target,
        message: l.message.clone(),
        ttl_secs,
    })
}

/// `rm KIND/NAME`: node/NAME_OR_UUID, lock/server_id=UUID or lock/user=NAME.
pub fn rm(resource: &str) -> Result<AdminCmd> {
    let usage = "give node/NAME_OR_UUID, lock/server_id=UUID or lock/user=NAME";
    let shown = resource.chars().take(80).collect::<String>();
    let Some((kind, name)) = resource.split_once('/') else {
        return Err(bad(format!("tctl rm {shown:?}: {usage}")));
    };
    match (kind, name.split_once('=')) {
        ("node" | "nodes", _) if !name.is_empty() => Ok(AdminCmd::NodesRemove {
            node: name.to_string(),
        }),
        ("lock" | "locks", Some(("server_id", id))) => Ok(AdminCmd::LockDelete {
            target: server_id(id)?,
        }),
        ("lock" | "locks", Some(("user", u))) => Ok(AdminCmd::LockDelete { target: user(u)? }),
        _ => Err(bad(format!("tctl rm cannot remove {shown:?}: {usage}"))),
    }
}

/// `auth rotate`.
pub fn rotate(r: &AuthRotate) -> Result<RotateRequest> {
    if r.kind != "host" {
        return Err(bad(format!(
            "--type {:?} cannot be rotated: this build has only the host CA; use --type=host",
            r.kind.chars().take(40).collect::<String>()
        )));
    }
    let grace_secs = match &r.grace_period {
        None => None,
        Some(_) if r.manual => {
            return Err(bad(
                "--grace-period applies to automatic rotation: drop it, or drop --manual".into(),
            ))
        }
        Some(g) => {
            let d = clock::parse_duration(g).map_err(|e| bad(format!("--grace-period: {e}")))?;
            if d.as_secs() == 0 {
                return Err(bad("--grace-period must be at least 1s, e.g. 30h".into()));
            }
            Some(d.as_secs())
        }
    };
    let phase = match (&r.phase, r.manual) {
        (Some(p), true) if PHASES.contains(&p.as_str()) => Some(p.clone()),
        (Some(p), true) => {
            return Err(bad(format!(
                "unknown --phase {:?}: use one of {}",
                p.chars().take(40).collect::<String>(),
                PHASES.join(", ")
            )))
        }
        (Some(_), false) => {
            return Err(bad(
                "--phase needs --manual: a rotation without --manual moves through the phases \
                 by itself"
                    .into(),
            ))
        }
        (None, true) => {
            return Err(bad(format!(
                "--manual needs --phase: one of {}",
                PHASES.join(", ")
            )))
        }
        (None, false) => None,
    };
    Ok(RotateRequest {
        ca_type: "host".into(),
        manual: r.manual,
        phase,
        grace_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5f0c7b2e-0000-4000-8000-000000000001";

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn uses_and_limits_are_checked_with_the_range_named() {
        assert_eq!(token_uses(None).unwrap(), None);
        assert_eq!(token_uses(Some(3)).unwrap(), Some(3));
        assert!(msg(token_uses(Some(0))).contains("give 1 to 10000 joins"));
        assert!(token_uses(Some(10_001)).is_err());
        assert_eq!(audit_limit(1000).unwrap(), 1000);
        assert!(msg(audit_limit(0)).contains("give 1 to 10000"));
        assert!(audit_limit(10_001).is_err());
    }

    #[test]
    fn since_is_a_duration_back_from_now_or_a_time() {
        assert_eq!(audit_since(None, 10_000).unwrap(), None);
        assert_eq!(audit_since(Some("1h"), 10_000).unwrap(), Some(6400));
        assert_eq!(
            audit_since(Some("2023-03-30T18:15:00Z"), 0).unwrap(),
            Some(1_680_200_100)
        );
        let e = msg(audit_since(Some("yesterday"), 0));
        assert!(e.contains("neither a duration nor a time"), "{e}");
        assert!(e.contains("2026-11-25T14:30:00Z"), "{e}");
    }

    fn lock_cmd(server: Option<&str>, user: Option<&str>, ttl: Option<&str>) -> LockCmd {
        LockCmd {
            server_id: server.map(str::to_string),
            user: user.map(str::to_string),
            message: "maintenance".into(),
            ttl: ttl.map(str::to_string),
        }
    }

    #[test]
    fn a_lock_has_exactly_one_valid_target() {
        assert_eq!(
            lock(&lock_cmd(Some(UUID), None, Some("1h"))).unwrap(),
            AdminCmd::LockCreate {
                target: LockTarget::ServerId(UUID.into()),
                message: "maintenance".into(),
                ttl_secs: Some(3600),
            }
        );
        assert!(matches!(
            lock(&lock_cmd(None, Some("alice"), None)).unwrap(),
            AdminCmd::LockCreate {
                target: LockTarget::User(_),
                ttl_secs: None,
                ..
            }
        ));
        for both_or_none in [
            lock_cmd(Some(UUID), Some("alice"), None),
            lock_cmd(None, None, None),
        ] {
            let e = msg(lock(&both_or_none));
            assert!(e.contains("exactly one target"), "{e}");
        }
        assert!(msg(lock(&lock_cmd(Some("web-1"), None, None))).contains("not a host UUID"));
        assert!(msg(lock(&lock_cmd(None, Some("a b"), None))).contains("invalid user name"));
        assert!(msg(lock(&lock_cmd(Some(UUID), None, Some("0")))).contains("at least 1s"));
        let e = msg(lock_target(None, None, "unlock"));
        assert!(e.starts_with("tctl unlock takes exactly one target"), "{e}");
    }

    #[test]
    fn rm_takes_nodes_and_locks_in_teleports_spelling() {
        assert_eq!(
            rm("node/web-1").unwrap(),
            AdminCmd::NodesRemove {
                node: "web-1".into()
            }
        );
        assert_eq!(
            rm(&format!("lock/server_id={UUID}")).unwrap(),
            AdminCmd::LockDelete {
                target: LockTarget::ServerId(UUID.into())
            }
        );
        assert_eq!(
            rm("lock/user=alice").unwrap(),
            AdminCmd::LockDelete {
                target: LockTarget::User("alice".into())
            }
        );
        for bad in [
            "node/",
            "web-1",
            "token/abc",
            "lock/alice",
            "lock/server_id=web-1",
        ] {
            assert!(rm(bad).is_err(), "{bad}");
        }
        assert!(msg(rm("token/abc")).contains("give node/NAME_OR_UUID"));
    }

    fn rotate_args(
        kind: &str,
        grace: Option<&str>,
        manual: bool,
        phase: Option<&str>,
    ) -> AuthRotate {
        AuthRotate {
            kind: kind.into(),
            grace_period: grace.map(str::to_string),
            manual,
            phase: phase.map(str::to_string),
        }
    }

    #[test]
    fn rotate_is_host_only_and_manual_goes_with_a_phase() {
        assert_eq!(
            rotate(&rotate_args("host", Some("30h"), false, None)).unwrap(),
            RotateRequest {
                ca_type: "host".into(),
                manual: false,
                phase: None,
                grace_secs: Some(108_000),
            }
        );
        let manual = rotate(&rotate_args("host", None, true, Some("update_clients"))).unwrap();
        assert_eq!(manual.phase.as_deref(), Some("update_clients"));
        assert!(manual.manual && manual.grace_secs.is_none());
        let cases = [
            (rotate_args("user", None, false, None), "only the host CA"),
            (
                rotate_args("host", None, false, Some("init")),
                "--phase needs --manual",
            ),
            (
                rotate_args("host", None, true, None),
                "--manual needs --phase",
            ),
            (
                rotate_args("host", None, true, Some("done")),
                "unknown --phase",
            ),
            (rotate_args("host", Some("0"), false, None), "at least 1s"),
            (
                rotate_args("host", Some("1h"), true, Some("init")),
                "drop --manual",
            ),
        ];
        for (args, want) in cases {
            let e = msg(rotate(&args));
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
