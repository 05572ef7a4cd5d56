//! What lives where in `data_dir`: one place for every file name, so the installer's checks,
//! the docs (docs/operations.md, "Files in data_dir") and the services agree.

use std::path::{Path, PathBuf};

/// The node's identity (key, certificate, cluster CA).
pub const NODE_IDENTITY_FILE: &str = "node-identity.pem";
/// The admin identity auth writes for `tctl` on the auth host.
pub const ADMIN_IDENTITY_FILE: &str = "admin-identity.pem";
/// The proxy's identity.
pub const PROXY_IDENTITY_FILE: &str = "proxy-identity.pem";
/// The host UUID auth assigned at the join.
pub const HOST_UUID_FILE: &str = "host_uuid";
/// Auth's database: the cluster CA and tokens (the installer never removes it).
pub const AUTH_DB_FILE: &str = "auth.db";
/// The locks and removals a proxy last heard of from auth, so a proxy restarted while auth is
/// unreachable still refuses them.
pub const PROXY_DENIALS_FILE: &str = "proxy-denials.json";
/// Auth's audit log: one JSON event per line (`tctl audit ls`).
pub const AUDIT_LOG_FILE: &str = "audit.log";

pub fn node_identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(NODE_IDENTITY_FILE)
}

pub fn proxy_identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PROXY_IDENTITY_FILE)
}

pub fn admin_identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_IDENTITY_FILE)
}
