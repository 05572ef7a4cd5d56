//! Admin commands of the identity lifecycle: remove a node, lock and unlock, rotate the host
//! CA. Each is audited and takes effect on every connection at once (see `revoke`, `own`).
//! Blocking: called from `admin_blocking`.

use log::info;

use super::cas::Applied;
use super::own::phase_changed;
use super::state::AuthState;
use crate::clock::{self, now_unix};
use crate::core::rotation::{Phase, DEFAULT_GRACE_SECS};
use crate::error::{Error, Result};
use crate::proto::{ErrorCode, LockInfo, LockTarget, Response, RotateRequest};

/// Longest lock message.
const MAX_MESSAGE: usize = 256;
/// Longest grace period of a rotation: a year.
const MAX_GRACE_SECS: u64 = 8760 * 3600;

fn bad(msg: impl Into<String>) -> Error {
    Error::remote(ErrorCode::BadParameter, msg)
}

/// `tctl nodes rm`: by UUID, or by a name exactly one node has.
pub fn remove_node(state: &AuthState, key: &str) -> Result<Response> {
    let now_ms = state.now_ms();
    let found = state
        .inventory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .find(key, now_ms);
    let (uuid, hostname) = match found.as_slice() {
        [one] => (one.uuid.clone(), one.hostname.clone()),
        [] if crate::proto::limits::is_uuid_shaped(key) => (key.to_string(), String::new()),
        [] => {
            return Err(Error::remote(
                ErrorCode::NotFound,
                format!(
                    "no online node is named {:?}: give its UUID (tctl nodes ls) to remove an \
                     offline node",
                    printable(key)
                ),
            ))
        }
        many => {
            return Err(bad(format!(
                "{} nodes are named {:?}: remove one by its UUID (tctl nodes ls)",
                many.len(),
                printable(key)
            )))
        }
    };
    state.revoke.remove_host(&uuid, &hostname, now_unix())?;
    state
        .inventory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .forget(&uuid);
    super::presence::forget_node(state, &uuid);
    state.audit.record(
        "node.removed",
        &[
            ("host_id", uuid.as_str().into()),
            ("node_name", hostname.as_str().into()),
        ],
    );
    info!("node {hostname:?} ({uuid}) removed; its identity is revoked");
    Ok(Response::NodeRemoved { hostname, uuid })
}

fn printable(s: &str) -> String {
    s.chars().take(80).filter(|c| !c.is_control()).collect()
}

fn check_target(target: &LockTarget) -> Result<()> {
    match target {
        LockTarget::ServerId(id) if crate::proto::limits::is_uuid_shaped(id) => Ok(()),
        LockTarget::ServerId(id) => Err(bad(format!(
            "--server-id must be a host UUID (tctl nodes ls, tctl proxies ls), not {:?}",
            printable(id)
        ))),
        LockTarget::User(u) => super::users::check_user_name(u).map_err(bad),
    }
}

/// `tctl lock`.
pub fn lock(
    state: &AuthState,
    target: LockTarget,
    message: String,
    ttl_secs: Option<u64>,
) -> Result<Response> {
    check_target(&target)?;
    if message.len() > MAX_MESSAGE || message.chars().any(char::is_control) {
        return Err(bad(format!(
            "--message must be at most {MAX_MESSAGE} printable characters"
        )));
    }
    if ttl_secs == Some(0) || ttl_secs.is_some_and(|t| t > MAX_GRACE_SECS) {
        return Err(bad("--ttl must be between 1s and 8760h"));
    }
    let now = now_unix();
    let info = LockInfo {
        target: target.clone(),
        message,
        created: now,
        expires: ttl_secs.map(|t| now + t as i64),
    };
    state.revoke.add_lock(info.clone())?;
    if let LockTarget::ServerId(id) = &target {
        state
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(id);
        super::presence::forget_node(state, id);
    }
    state.audit.record(
        "lock.created",
        &[
            ("target", target.to_string().into()),
            ("message", info.message.as_str().into()),
            ("expires", info.expires.map(clock::rfc3339).into()),
        ],
    );
    info!("lock created on {target}");
    Ok(Response::LockCreated(info))
}

/// `tctl unlock`.
pub fn unlock(state: &AuthState, target: LockTarget) -> Result<Response> {
    if !state.revoke.remove_lock(&target, now_unix())? {
        return Err(Error::remote(
            ErrorCode::NotFound,
            format!("there is no lock on {target} (tctl locks ls)"),
        ));
    }
    state
        .audit
        .record("lock.deleted", &[("target", target.to_string().into())]);
    info!("lock on {target} removed");
    Ok(Response::LockDeleted { target })
}

/// `tctl auth rotate`.
pub fn rotate(state: &AuthState, req: RotateRequest) -> Result<Response> {
    if req.ca_type != "host" {
        return Err(bad(format!(
            "--type={:?}: only the host CA exists in this build; use --type=host",
            printable(&req.ca_type)
        )));
    }
    let now = now_unix();
    let (phase, mode) = if req.manual {
        let phase = req
            .phase
            .as_deref()
            .ok_or_else(|| bad("--manual needs --phase"))
            .and_then(|p| Phase::parse(p).map_err(bad))?;
        apply_fresh(state, now, |r| r.manual(phase, now).map(Some))?;
        (phase, "manual")
    } else {
        let grace = req.grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
        if grace > MAX_GRACE_SECS {
            return Err(bad("--grace-period must be at most 8760h"));
        }
        apply_fresh(state, now, |r| r.start_auto(grace, now).map(Some))?;
        (Phase::Init, "auto")
    };
    phase_changed(state, phase, mode);
    Ok(Response::Rotation(state.ca.get().rotation.info()))
}

/// Applies a rotation step to the newest stored CA set: when another auth server changed it
/// since this one read it, adopts theirs (with its effects) and decides again.
fn apply_fresh(
    state: &AuthState,
    now: i64,
    step: impl Fn(
        &mut crate::core::rotation::Rotation,
    ) -> std::result::Result<Option<crate::core::rotation::Effect>, String>,
) -> Result<()> {
    for _ in 0..3 {
        match state.ca.try_apply(&step)? {
            Applied::Changed(_) | Applied::Unchanged => return Ok(()),
            Applied::Stale => {
                super::own::sync_ca(state, now)?;
            }
        }
    }
    Err(Error::Storage(
        "the CA rotation kept changing on other auth servers; retry".into(),
    ))
}
