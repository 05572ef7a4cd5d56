//! Several auth servers on one shared store behave as one: this task hears what the others
//! announce (locks, removed hosts, the CA set) and, every few seconds in case an announcement
//! was lost, reads them again; what changed is applied with the same effects a local change
//! has (`Revocations::sync`, `own::sync_ca`). It also decides readiness: while the store does
//! not answer, auth is not ready but keeps serving what it holds in memory.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use super::backend::{TOPIC_ALL, TOPIC_CA, TOPIC_LOCKS, TOPIC_REMOVED};
use super::state::AuthState;
use crate::clock::now_unix;
use crate::error::Result;
use crate::rt::Shutdown;

/// The safety net: everything is read again this often, announced or not.
pub const POLL: Duration = Duration::from_secs(3);

enum Wake {
    Topic(String),
    Poll,
    Stop,
}

/// Runs until shutdown; returns at once on a store no other server shares.
pub async fn watch(state: Arc<AuthState>, shutdown: Shutdown) {
    if !state.backend.shared() {
        return;
    }
    let mut rx = state.backend.watch();
    loop {
        let wake = futures_lite::future::or(
            async {
                match &rx {
                    Some(r) => match r.recv().await {
                        Ok(t) => Wake::Topic(t),
                        Err(_) => Wake::Poll,
                    },
                    None => std::future::pending().await,
                }
            },
            async {
                if shutdown.sleep(POLL).await {
                    Wake::Poll
                } else {
                    Wake::Stop
                }
            },
        )
        .await;
        let mut topics = match wake {
            Wake::Stop => return,
            Wake::Poll => vec![TOPIC_ALL.to_string()],
            Wake::Topic(t) => vec![t],
        };
        if rx.as_ref().is_some_and(|r| r.is_closed() && r.is_empty()) {
            rx = None;
        }
        // Whatever else arrived meanwhile is handled in the same pass.
        while let Some(t) = rx.as_ref().and_then(|r| r.try_recv().ok()) {
            topics.push(t);
        }
        let st = state.clone();
        let result = smol::unblock(move || sync(&st, &topics)).await;
        storage_answered(result.as_ref().err());
    }
}

/// Reads and applies the topics that changed. Blocking.
fn sync(state: &AuthState, topics: &[String]) -> Result<()> {
    let has = |t: &str| topics.iter().any(|x| x == t || x == TOPIC_ALL);
    let now = now_unix();
    let revocations = match (has(TOPIC_LOCKS), has(TOPIC_REMOVED)) {
        (true, true) => Some(TOPIC_ALL),
        (true, false) => Some(TOPIC_LOCKS),
        (false, true) => Some(TOPIC_REMOVED),
        (false, false) => None,
    };
    if let Some(topic) = revocations {
        let denied = state.revoke.sync(topic, now)?;
        if !denied.is_empty() {
            let mut inv = state.inventory.lock().unwrap_or_else(|p| p.into_inner());
            for id in &denied {
                inv.forget(id);
            }
        }
    }
    if has(TOPIC_CA) {
        super::own::sync_ca(state, now)?;
    }
    Ok(())
}

/// Records whether the store answered: readiness follows it, and the log says when it
/// changes (never each retry).
pub fn storage_answered(err: Option<&crate::error::Error>) {
    match err {
        Some(e) => {
            let why = format!("the auth storage does not answer: {e}");
            if crate::diag::set_storage_down(Some(&why)) {
                warn!("{why}; not ready, serving what is in memory until it returns");
            }
        }
        None => {
            if crate::diag::set_storage_down(None) {
                info!("the auth storage answers again; ready");
            }
        }
    }
}
