//! Shared presence: on a store several auth servers share, each writes the nodes and proxies
//! it holds once per heartbeat interval, in one batch, expiring after a few intervals; then
//! reads what the others wrote and lists it beside its own (`core::presence`). So `tctl nodes
//! ls` on any auth server shows every node, a dead auth server's entries expire on their own
//! (its nodes reappear through the others as they reconnect), and the proxy set announced to
//! proxies and agents is every proxy of the cluster.

use std::sync::Arc;

use log::debug;

use super::backend::Item;
use super::state::AuthState;
use crate::clock::now_unix;
use crate::core::presence::{ProxyRecord, Remote};
use crate::error::{Error, Result};
use crate::proto::{LockTarget, NodeInfo, ProxyInfo, ProxyRef, WebTrust};
use crate::rt::Shutdown;

pub const NODES: &str = "presence/nodes/";
pub const PROXIES: &str = "presence/proxies/";

/// Intervals a record lives without being written again.
const RECORD_INTERVALS: u32 = 3;

/// The key of `auth`'s record of host `id`: one per (host, auth server), so two auth servers
/// holding one node (through different proxies) do not overwrite each other.
pub fn node_key(id: &str, auth: &str) -> String {
    format!("{NODES}{id}/{auth}")
}

/// Runs until shutdown; returns at once on a store no other server shares.
pub async fn publish(state: Arc<AuthState>, shutdown: Shutdown) {
    if !state.backend.shared() {
        return;
    }
    while shutdown.sleep(state.heartbeat_interval).await {
        let st = state.clone();
        let result = smol::unblock(move || exchange(&st)).await;
        if let Err(e) = &result {
            debug!("shared presence: {e}");
        }
        super::watch::storage_answered(result.as_ref().err());
    }
}

/// Writes this server's records and reads the others'. Blocking.
fn exchange(state: &AuthState) -> Result<()> {
    let me = &state.own.host_id;
    let (nodes, proxies) = {
        let inv = state.inventory.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = state.now_ms();
        (inv.list_local(now_ms), inv.local_proxies(now_ms))
    };
    let now = now_unix();
    let life = state.heartbeat_interval * RECORD_INTERVALS;
    // Whole seconds, rounded up, and at least two: the store's clock counts seconds.
    let expires = Some(now + (life.as_millis().div_ceil(1000) as i64).max(2));
    // Values are the listed forms (the auth server's ID is in the key): no record type of
    // their own to encode and decode.
    let mut items = Vec::with_capacity(nodes.len() + proxies.len());
    for node in nodes {
        items.push(Item {
            key: node_key(&node.uuid, me),
            value: to_json(&node)?,
            expires,
        });
    }
    for (proxy, info, web) in proxies {
        items.push(Item {
            key: format!("{PROXIES}{}/{me}", proxy.id),
            value: to_json(&(info, web))?,
            expires,
        });
    }
    state.backend.put_batch(&items)?;
    read_others(state, now)
}

/// Reads the other auth servers' records into the inventory, without hosts that are denied.
fn read_others(state: &AuthState, now: i64) -> Result<()> {
    let me = &state.own.host_id;
    let denied = |id: &str| {
        state
            .revoke
            .denial(&LockTarget::ServerId(id.to_string()), now)
            .is_some()
    };
    let now_ms = state.now_ms();
    // Expiry on the inventory's clock: what is left of the record's life from now.
    let at = |e: Option<i64>| now_ms + (e.unwrap_or(now) - now).max(0) as u64 * 1000;
    // Keys end with the writer's ID: this server's own records are skipped.
    let others = |key: &str| key.rsplit('/').next() != Some(me.as_str());
    let mut nodes = Vec::new();
    for i in state.backend.list(NODES, now)? {
        if !others(&i.key) {
            continue;
        }
        if let Ok(n) = serde_json::from_slice::<NodeInfo>(&i.value) {
            if !denied(&n.uuid) {
                nodes.push((n, at(i.expires)));
            }
        }
    }
    let mut proxies = Vec::new();
    for i in state.backend.list(PROXIES, now)? {
        if !others(&i.key) {
            continue;
        }
        if let Ok((info, web)) = serde_json::from_slice::<(ProxyInfo, WebTrust)>(&i.value) {
            if !denied(&info.uuid) {
                let proxy = ProxyRef {
                    id: info.uuid.clone(),
                    name: info.name.clone(),
                };
                proxies.push((ProxyRecord { proxy, info, web }, at(i.expires)));
            }
        }
    }
    let remote = Remote::new(nodes, proxies);
    state
        .inventory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set_remote(remote);
    Ok(())
}

/// Removes this server's record of a removed node at once (the others stop listing it when
/// they hear of the removal, and their records expire). Blocking.
pub fn forget_node(state: &AuthState, id: &str) {
    if state.backend.shared() {
        let _ = state
            .backend
            .delete(&node_key(id, &state.own.host_id), now_unix());
    }
}

/// JSON of a record (it cannot fail for these types, but a failure stays an error).
fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Storage(e.to_string()))
}
