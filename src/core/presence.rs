//! What other auth servers on a shared backend report of their nodes and proxies, as this one
//! last read it: the inventory lists it beside its own. Pure: records are decoded elsewhere,
//! expiries are converted to the inventory's monotonic milliseconds when they are set.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::proto::{NodeInfo, ProxyInfo, ProxyRef, WebTrust};

/// One auth server's record of a node it holds (a direct stream or relayed beats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The host ID of the auth server that wrote it.
    pub auth: String,
    pub node: NodeInfo,
}

/// One auth server's record of a proxy linked to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRecord {
    pub auth: String,
    pub proxy: ProxyRef,
    pub info: ProxyInfo,
    #[serde(default)]
    pub web: WebTrust,
}

/// The other auth servers' nodes and proxies, merged by host ID.
#[derive(Debug, Default)]
pub struct Remote {
    pub(super) nodes: HashMap<String, (NodeInfo, u64)>,
    pub(super) proxies: HashMap<String, (ProxyRecord, u64)>,
}

impl Remote {
    /// Builds the view from records expiring at `expires_ms` (the inventory's clock). Two
    /// auth servers holding one node (each through its own proxies) give one entry with the
    /// tunnels of both and the later expiry.
    pub fn new(
        nodes: impl IntoIterator<Item = (NodeRecord, u64)>,
        proxies: impl IntoIterator<Item = (ProxyRecord, u64)>,
    ) -> Remote {
        let mut r = Remote::default();
        for (rec, exp) in nodes {
            match r.nodes.get_mut(&rec.node.uuid) {
                Some((info, e)) => {
                    merge_tunnels(info, &rec.node.tunnels);
                    *e = (*e).max(exp);
                }
                None => {
                    r.nodes.insert(rec.node.uuid.clone(), (rec.node, exp));
                }
            }
        }
        for (rec, exp) in proxies {
            let newer = r.proxies.get(&rec.proxy.id).map_or(true, |(_, e)| *e < exp);
            if newer {
                r.proxies.insert(rec.proxy.id.clone(), (rec, exp));
            }
        }
        r
    }

    pub(super) fn live_nodes(&self, now_ms: u64) -> impl Iterator<Item = &NodeInfo> {
        self.nodes
            .values()
            .filter(move |(_, e)| *e > now_ms)
            .map(|(n, _)| n)
    }

    pub(super) fn live_proxies(&self, now_ms: u64) -> impl Iterator<Item = &ProxyRecord> {
        self.proxies
            .values()
            .filter(move |(_, e)| *e > now_ms)
            .map(|(p, _)| p)
    }

    pub(super) fn expire(&mut self, now_ms: u64) {
        self.nodes.retain(|_, (_, e)| *e > now_ms);
        self.proxies.retain(|_, (_, e)| *e > now_ms);
    }
}

/// Adds tunnels `info` does not list yet, keeping them sorted.
pub(super) fn merge_tunnels(info: &mut NodeInfo, more: &[String]) {
    for t in more {
        if !info.tunnels.contains(t) {
            info.tunnels.push(t.clone());
        }
    }
    info.tunnels.sort();
}
