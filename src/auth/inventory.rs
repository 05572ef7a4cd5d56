//! Node presence, in memory only: rebuilt from heartbeats after a restart. Pure logic: callers
//! pass the monotonic time in milliseconds.

use std::collections::{BTreeMap, HashMap};

use crate::proto::NodeInfo;

#[derive(Debug, Clone)]
struct Entry {
    info: NodeInfo,
    expires_ms: u64,
    /// The stream that last announced the node; an older stream's end must not remove it.
    conn: u64,
}

#[derive(Debug, Default)]
pub struct Inventory {
    nodes: HashMap<String, Entry>,
}

impl Inventory {
    /// Records a node announced on stream `conn`, alive for `ttl_ms`.
    pub fn upsert(&mut self, info: NodeInfo, conn: u64, now_ms: u64, ttl_ms: u64) {
        self.nodes.insert(
            info.uuid.clone(),
            Entry {
                info,
                expires_ms: now_ms + ttl_ms,
                conn,
            },
        );
    }

    /// Extends a node's life; false if the stream no longer owns the node (re-announce then).
    pub fn heartbeat(&mut self, uuid: &str, conn: u64, now_ms: u64, ttl_ms: u64) -> bool {
        match self.nodes.get_mut(uuid) {
            Some(e) if e.conn == conn => {
                e.expires_ms = now_ms + ttl_ms;
                true
            }
            _ => false,
        }
    }

    /// Removes the node if stream `conn` still owns it (graceful goodbye).
    pub fn remove(&mut self, uuid: &str, conn: u64) -> bool {
        if self.nodes.get(uuid).is_some_and(|e| e.conn == conn) {
            self.nodes.remove(uuid);
            true
        } else {
            false
        }
    }

    /// Live nodes sorted by hostname.
    pub fn list(&self, now_ms: u64) -> Vec<NodeInfo> {
        let mut out: Vec<NodeInfo> = self
            .nodes
            .values()
            .filter(|e| e.expires_ms > now_ms)
            .map(|e| e.info.clone())
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.uuid.cmp(&b.uuid)));
        out
    }

    pub fn count(&self, now_ms: u64) -> usize {
        self.nodes
            .values()
            .filter(|e| e.expires_ms > now_ms)
            .count()
    }

    /// Forgets expired nodes; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.nodes.len();
        self.nodes.retain(|_, e| e.expires_ms > now_ms);
        before - self.nodes.len()
    }
}

/// Builds the listed form of a node.
pub fn node_info(
    uuid: &str,
    hostname: &str,
    addr: &str,
    labels: BTreeMap<String, String>,
    version: &str,
) -> NodeInfo {
    NodeInfo {
        hostname: hostname.to_string(),
        uuid: uuid.to_string(),
        addr: addr.to_string(),
        labels,
        version: version.to_string(),
        tunnels: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uuid: &str) -> NodeInfo {
        node_info(uuid, &format!("host-{uuid}"), "", BTreeMap::new(), "1")
    }

    #[test]
    fn nodes_expire_after_ttl_without_heartbeats() {
        let mut inv = Inventory::default();
        inv.upsert(n("a"), 1, 0, 15_000);
        assert_eq!(inv.list(14_999).len(), 1);
        assert!(inv.heartbeat("a", 1, 10_000, 15_000));
        assert_eq!(inv.list(24_999).len(), 1);
        assert_eq!(inv.list(25_000).len(), 0);
        assert_eq!(inv.expire(25_000), 1);
    }

    #[test]
    fn an_old_stream_cannot_remove_or_refresh_a_reconnected_node() {
        let mut inv = Inventory::default();
        inv.upsert(n("a"), 1, 0, 1000);
        inv.upsert(n("a"), 2, 10, 1000);
        assert!(!inv.heartbeat("a", 1, 20, 1000));
        assert!(!inv.remove("a", 1));
        assert_eq!(inv.count(20), 1);
        assert!(inv.remove("a", 2));
        assert_eq!(inv.count(20), 0);
    }
}
