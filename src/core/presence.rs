//! What other auth servers on a shared backend report of their nodes and proxies, as this one
//! last read it: the inventory lists it beside its own. Pure: records are decoded elsewhere,
//! expiries are converted to the inventory's monotonic milliseconds when they are set.

use std::collections::HashMap;

use crate::proto::{NodeInfo, ProxyInfo, ProxyRef, WebTrust};

/// One auth server's record of a proxy linked to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRecord {
    pub proxy: ProxyRef,
    pub info: ProxyInfo,
    pub web: WebTrust,
}

/// The other auth servers' nodes and proxies, merged by host ID.
#[derive(Debug, Default)]
pub struct Remote {
    pub(super) nodes: HashMap<String, (NodeInfo, u64)>,
    pub(super) proxies: HashMap<String, (ProxyRecord, u64)>,
}

impl Remote {
    /// Builds the view from records (the nodes and proxies other auth servers hold) expiring
    /// at the given times (the inventory's clock). Two auth servers holding one node (each
    /// through its own proxies) give one entry with the tunnels of both and the later expiry.
    pub fn new(nodes: Vec<(NodeInfo, u64)>, proxies: Vec<(ProxyRecord, u64)>) -> Remote {
        let mut r = Remote::default();
        for (node, exp) in nodes {
            match r.nodes.get_mut(&node.uuid) {
                Some((info, e)) => {
                    merge_tunnels(info, &node.tunnels);
                    *e = (*e).max(exp);
                }
                None => {
                    r.nodes.insert(node.uuid.clone(), (node, exp));
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

/// Adds tunnels `info` does not list yet, keeping the (sorted) list sorted.
pub(super) fn merge_tunnels(info: &mut NodeInfo, more: &[String]) {
    for t in more {
        if let Err(at) = info.tunnels.binary_search(t) {
            info.tunnels.insert(at, t.clone());
        }
    }
}
