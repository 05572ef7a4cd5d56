//! Admin commands (`tctl`): tokens, inventory listings, status, user identities. The caller
//! has checked that the client holds an Admin certificate; the work runs off the executor
//! (storage and signing block).

use std::sync::Arc;

use log::info;
use serde_json::Value;

use super::state::AuthState;
use super::tokens::parse_supported_roles;
use crate::clock::{self, now_unix};
use crate::error::{Error, Result};
use crate::proto::{AdminCmd, ClusterStatus, ErrorCode, Response, TokenCreated};
use crate::secret::public_id;
use crate::VERSION;

pub(super) async fn admin(state: &Arc<AuthState>, cmd: AdminCmd) -> Response {
    let st = state.clone();
    let result = smol::unblock(move || admin_blocking(&st, cmd)).await;
    result.unwrap_or_else(|e| match e {
        Error::Remote { code, message } => Response::error(code, message),
        other => Response::error(ErrorCode::Internal, other.to_string()),
    })
}

fn admin_blocking(state: &AuthState, cmd: AdminCmd) -> Result<Response> {
    let now = now_unix();
    Ok(match cmd {
        AdminCmd::TokensAdd {
            roles,
            ttl_secs,
            labels,
            uses,
        } => {
            let roles = parse_supported_roles(&roles)
                .map_err(|e| Error::remote(ErrorCode::BadParameter, e))?;
            let (token, expires) = state.tokens.add(&roles, ttl_secs, labels, uses, now)?;
            let token_id = public_id(&token.hash_hex()).to_string();
            let role_names: Vec<String> = roles.iter().map(|r| r.name().to_string()).collect();
            info!("token id {token_id} created for {}", role_names.join(","));
            state.audit.record(
                "token.created",
                &[
                    ("token_id", token_id.into()),
                    ("roles", role_names.clone().into()),
                    ("ttl_secs", ttl_secs.into()),
                    ("uses", uses.map_or(Value::Null, Value::from)),
                ],
            );
            let inv = state.inventory.lock().unwrap_or_else(|p| p.into_inner());
            let proxy_web = inv.web_trust(state.now_ms());
            let proxy_addr = inv
                .list_proxies(state.now_ms())
                .first()
                .map(|p| p.addr.clone())
                .unwrap_or_default();
            drop(inv);
            Response::TokenCreated(TokenCreated {
                token,
                roles: role_names,
                expires: clock::rfc3339(expires),
                ttl_secs,
                ca_pins: state.ca_pins(),
                auth_addr: state.advertise_addr.clone(),
                proxy_addr,
                proxy_web,
            })
        }
        AdminCmd::TokensList => Response::Tokens {
            tokens: state.tokens.list(now)?,
        },
        AdminCmd::TokensRemove { token } => {
            let (masked, token_id) = state.tokens.remove(token.expose(), now)?;
            info!("token {masked} (id {token_id}) deleted");
            state
                .audit
                .record("token.removed", &[("token_id", token_id.into())]);
            Response::TokenRemoved { masked }
        }
        AdminCmd::NodesList => Response::Nodes {
            nodes: state
                .inventory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .list(state.now_ms()),
        },
        AdminCmd::ProxiesList => Response::Proxies {
            proxies: state
                .inventory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .list_proxies(state.now_ms()),
        },
        AdminCmd::Status => Response::Status(ClusterStatus {
            cluster_name: state.cluster_name.clone(),
            version: VERSION.to_string(),
            host_ca_rotation: rotation_summary(&state.ca.get().rotation.info()),
            ca_pins: state.ca_pins(),
            rotation: Box::new(state.ca.get().rotation.info()),
            host_cert_ttl_secs: state.host_ttl_secs(),
            storage: state.storage.clone(),
            nodes_online: state
                .inventory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .count(state.now_ms()),
        }),
        AdminCmd::UserSign {
            user,
            ttl_secs,
            csr,
        } => super::users::sign(state, &user, ttl_secs, &csr)?,
        AdminCmd::NodesRemove { node } => super::lifecycle::remove_node(state, &node)?,
        AdminCmd::LockCreate {
            target,
            message,
            ttl_secs,
        } => super::lifecycle::lock(state, target, message, ttl_secs)?,
        AdminCmd::LocksList => Response::Locks {
            locks: state.revoke.locks(now),
        },
        AdminCmd::LockDelete { target } => super::lifecycle::unlock(state, target)?,
        AdminCmd::Rotate(req) => super::lifecycle::rotate(state, req)?,
        AdminCmd::AuditList { since, limit } => {
            let (events, truncated) = state.audit.list(since, audit_limit(limit)?)?;
            Response::Audit { events, truncated }
        }
    })
}

/// The one-line rotation state older `tctl status` versions print.
fn rotation_summary(r: &crate::proto::RotationInfo) -> String {
    match (r.state.as_str(), r.last_rotated) {
        ("standby", 0) => "never updated".into(),
        ("standby", at) => format!("rotated {}", clock::rfc3339(at)),
        _ => format!("{} (mode {})", r.phase, r.mode),
    }
}

/// `tctl audit ls --limit`: 0 means the default; more than the cap is refused.
fn audit_limit(limit: u32) -> Result<usize> {
    match limit {
        0 => Ok(super::audit::DEFAULT_LIST),
        n if n as usize > super::audit::MAX_LIST => Err(Error::remote(
            ErrorCode::BadParameter,
            format!(
                "--limit {n} is too large: at most {} events are listed at once; narrow it \
                 with --since",
                super::audit::MAX_LIST
            ),
        )),
        n => Ok(n as usize),
    }
}
