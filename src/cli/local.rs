//! The all-in-one process: an auth server in this same process issues the identities of the
//! proxy and the node it also runs, without a token (one trust domain). Only this composition
//! root knows such a process exists; the services receive an identity and an address.

use std::path::Path;

use crate::agent::NodeTarget;
use crate::auth::AuthServer;
use crate::config::Settings;
use crate::error::Result;
use crate::net::dial_addr;
use crate::pki::identity::Identity;
use crate::proto::{ROLE_NODE, ROLE_PROXY};
use crate::proxy::{self, LocalAuth};

/// The identity stored at `path`, or a new one issued by the local auth and stored there.
fn stored_or_issued(
    auth: &AuthServer,
    path: &Path,
    role: &str,
    name: &str,
    sans: &[String],
) -> Result<Identity> {
    // One trust domain: an identity that expired or whose CA was rotated away while the
    // process was down is simply issued again.
    if let Some(id) = Identity::load_optional(path)? {
        let usable = id.not_after()? > crate::clock::now_unix()
            && id.cert_der().is_ok_and(|d| auth.state.verifies_client(&d));
        if usable {
            return Ok(id);
        }
    }
    let id = auth
        .state
        .issue_local_identity(&auth.host_id, role, name, sans)?;
    id.save(path)?;
    Ok(id)
}

/// What the local proxy needs from the local auth.
pub fn proxy(auth: &AuthServer, settings: &Settings) -> Result<LocalAuth> {
    let names = proxy::cert_names(settings);
    let path = settings.proxy_identity_path();
    Ok(LocalAuth {
        identity: stored_or_issued(auth, &path, ROLE_PROXY, &settings.nodename, &names)?,
        auth_addr: dial_addr(auth.local_addr),
    })
}

/// What the local node needs from the local auth. A node's name goes into its subject, never
/// into a SAN.
pub fn node(auth: &AuthServer, settings: &Settings) -> Result<NodeTarget> {
    let path = settings.identity_path();
    Ok(NodeTarget::Local {
        identity: stored_or_issued(auth, &path, ROLE_NODE, &settings.nodename, &[])?,
        addr: dial_addr(auth.local_addr),
    })
}
