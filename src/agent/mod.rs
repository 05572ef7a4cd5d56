//! The node agent: join once with a token, then keep a heartbeat stream to auth.

pub mod heartbeat;
pub mod join;

use std::sync::Arc;

use log::info;

use crate::auth::server::AuthState;
use crate::config::Settings;
use crate::error::Result;
use crate::pki::identity::Identity;
use crate::pki::{self};
use crate::rt::Shutdown;

/// Where the node finds auth, and, in an all-in-one process, the local auth to get an identity
/// from without a token.
pub struct NodeTarget {
    pub auth_addr: String,
    pub local_auth: Option<(Arc<AuthState>, String)>,
}

/// Runs the node until shutdown. Returns an error when the node cannot join or its identity is
/// unusable; those need a person.
pub async fn run(settings: &Settings, target: NodeTarget, shutdown: Shutdown) -> Result<()> {
    let path = settings.identity_path();
    let identity = match Identity::load_optional(&path)? {
        Some(id) => {
            info!("using the identity stored in {}", path.display());
            id
        }
        None => match &target.local_auth {
            Some((state, host_id)) => {
                let id = state.issue_local_identity(
                    host_id,
                    pki::ROLE_NODE,
                    std::slice::from_ref(&settings.nodename),
                )?;
                id.save(&path)?;
                id
            }
            None => match join::join(settings, &target.auth_addr, &shutdown).await? {
                Some(id) => id,
                None => return Ok(()),
            },
        },
    };
    heartbeat::run(settings, &target.auth_addr, identity, shutdown).await
}
