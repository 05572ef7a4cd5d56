//! The locks and removals auth pushed, kept in the proxy's `data_dir` so that they hold across
//! a restart while auth is unreachable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use log::warn;

use super::ProxyState;
use crate::proto::{Denial, LockTarget};

/// Writes the denials to `data_dir` off the executor; a newer push is never overwritten by an
/// older one still being written.
pub fn save(state: &Arc<ProxyState>, denials: &[Denial]) {
    let generation = state.denials_saved.0.fetch_add(1, Ordering::Relaxed) + 1;
    let (st, json) = (
        state.clone(),
        serde_json::to_vec(denials).unwrap_or_default(),
    );
    crate::rt::spawn(smol::unblock(move || {
        let mut written = st.denials_saved.1.lock().unwrap_or_else(|p| p.into_inner());
        if *written >= generation {
            return;
        }
        match crate::fsutil::write_atomic(&denials_path(&st.identity_path), &json, 0o600) {
            Ok(()) => *written = generation,
            Err(e) => warn!("cannot keep the locks and removals on disk: {e}"),
        }
    }))
    .detach();
}

/// Where the denials are kept: next to the proxy's identity, in its `data_dir`.
fn denials_path(identity_path: &std::path::Path) -> std::path::PathBuf {
    let dir = identity_path.parent().unwrap_or(std::path::Path::new("."));
    dir.join(crate::config::PROXY_DENIALS_FILE)
}

/// Largest denials file read back.
const MAX_DENIALS_FILE: u64 = 64 * 1024 * 1024;

/// The denials saved by an earlier run, if any: a regular file only (never through a symlink,
/// never a FIFO that would stall the start), of a sane size.
pub fn load(identity_path: &std::path::Path) -> HashMap<LockTarget, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = denials_path(identity_path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path);
    let Ok(file) = file else {
        return HashMap::new();
    };
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let mut bytes = Vec::new();
    if !regular
        || file
            .take(MAX_DENIALS_FILE + 1)
            .read_to_end(&mut bytes)
            .is_err()
        || bytes.len() as u64 > MAX_DENIALS_FILE
    {
        warn!(
            "{} is not a readable file of locks; waiting for auth's list",
            path.display()
        );
        return HashMap::new();
    }
    match serde_json::from_slice::<Vec<Denial>>(&bytes) {
        Ok(list) => list.into_iter().map(|d| (d.target, d.message)).collect(),
        Err(e) => {
            warn!(
                "{} is unreadable ({e}); waiting for auth's list",
                path.display()
            );
            HashMap::new()
        }
    }
}
