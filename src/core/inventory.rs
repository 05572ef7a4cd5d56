//! Presence of nodes and proxies, in memory: rebuilt from heartbeats after a restart. With
//! several auth servers on a shared backend, what the others hold (`presence::Remote`) is
//! listed beside this server's own, merged by host ID. Pure logic: callers pass the monotonic
//! time in milliseconds.
//!
//! A node is online while it heartbeats directly (one stream) or through at least one proxy
//! tunnel; each path has its own expiry, so one dead proxy loses no node.

use std::collections::{BTreeMap, HashMap};

use super::presence::{merge_tunnels, ProxyRecord, Remote};
use crate::proto::{NodeInfo, ProxyInfo, ProxyRef, WebTrust};

/// What `tctl nodes ls` shows as the address of a node reached through tunnels (as Teleport).
pub const TUNNEL_ADDR: &str = "⟵ Tunnel";

#[derive(Debug, Clone)]
struct Entry {
    info: NodeInfo,
    /// The direct stream that last announced the node, and when that path expires.
    direct: Option<(u64, u64)>,
    /// Proxy ID -> expiry of the path through that proxy's tunnel.
    vias: BTreeMap<String, u64>,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.direct.is_some_and(|(_, exp)| exp > now) || self.vias.values().any(|&e| e > now)
    }
}

#[derive(Debug, Clone)]
struct ProxyEntry {
    proxy: ProxyRef,
    addr: String,
    version: String,
    expires_ms: u64,
    conn: u64,
    /// What its web listener serves (reported in its hello).
    web: WebTrust,
}

#[derive(Debug, Default)]
pub struct Inventory {
    nodes: HashMap<String, Entry>,
    proxies: HashMap<String, ProxyEntry>,
    /// What the other auth servers hold.
    remote: Remote,
}

impl Inventory {
    fn entry(&mut self, info: NodeInfo) -> &mut Entry {
        let e = self
            .nodes
            .entry(info.uuid.clone())
            .or_insert_with(|| Entry {
                info: info.clone(),
                direct: None,
                vias: BTreeMap::new(),
            });
        e.info = info;
        e
    }

    /// Records a node announced on direct stream `conn`, alive for `ttl_ms`.
    pub fn upsert(&mut self, info: NodeInfo, conn: u64, now_ms: u64, ttl_ms: u64) {
        self.entry(info).direct = Some((conn, now_ms + ttl_ms));
    }

    /// Extends a direct node's life; false if the stream no longer owns the node.
    pub fn heartbeat(&mut self, uuid: &str, conn: u64, now_ms: u64, ttl_ms: u64) -> bool {
        match self.nodes.get_mut(uuid) {
            Some(Entry {
                direct: Some((c, exp)),
                ..
            }) if *c == conn => {
                *exp = now_ms + ttl_ms;
                true
            }
            _ => false,
        }
    }

    /// Removes the direct path if stream `conn` still owns it (graceful goodbye).
    pub fn remove(&mut self, uuid: &str, conn: u64) -> bool {
        let Some(e) = self.nodes.get_mut(uuid) else {
            return false;
        };
        if e.direct.is_some_and(|(c, _)| c == conn) {
            e.direct = None;
            if e.vias.is_empty() {
                self.nodes.remove(uuid);
            }
            true
        } else {
            false
        }
    }

    /// A heartbeat relayed by proxy `proxy_id`.
    pub fn upsert_via(&mut self, mut info: NodeInfo, proxy_id: &str, now_ms: u64, ttl_ms: u64) {
        let direct_addr = self
            .nodes
            .get(&info.uuid)
            .filter(|e| e.direct.is_some())
            .map(|e| e.info.addr.clone());
        info.addr = direct_addr.unwrap_or_else(|| TUNNEL_ADDR.to_string());
        self.entry(info)
            .vias
            .insert(proxy_id.to_string(), now_ms + ttl_ms);
    }

    /// The node said goodbye on its tunnel to `proxy_id`.
    pub fn remove_via(&mut self, uuid: &str, proxy_id: &str) {
        if let Some(e) = self.nodes.get_mut(uuid) {
            e.vias.remove(proxy_id);
            if e.vias.is_empty() && e.direct.is_none() {
                self.nodes.remove(uuid);
            }
        }
    }

    /// The name of node `uuid` if proxy `proxy_id` relays its beats now.
    pub fn name_via(&self, uuid: &str, proxy_id: &str, now_ms: u64) -> Option<String> {
        let e = self.nodes.get(uuid)?;
        e.vias
            .get(proxy_id)
            .filter(|&&exp| exp > now_ms)
            .map(|_| e.info.hostname.clone())
    }

    /// Forgets a node on every path at once (removed or locked), here and as other auth
    /// servers reported it.
    pub fn forget(&mut self, uuid: &str) -> Option<NodeInfo> {
        let remote = self.remote.nodes.remove(uuid).map(|(n, _)| n);
        self.nodes.remove(uuid).map(|e| e.info).or(remote)
    }

    /// Replaces what the other auth servers hold.
    pub fn set_remote(&mut self, remote: Remote) {
        self.remote = remote;
    }

    /// Live nodes whose UUID or name is `key`.
    pub fn find(&self, key: &str, now_ms: u64) -> Vec<NodeInfo> {
        self.list(now_ms)
            .into_iter()
            .filter(|n| n.uuid == key || n.hostname == key)
            .collect()
    }

    fn proxy_name(&self, id: &str) -> String {
        self.proxies
            .get(id)
            .map(|p| p.proxy.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Live nodes of every auth server sorted by hostname, with the names of the proxies they
    /// hold tunnels to.
    pub fn list(&self, now_ms: u64) -> Vec<NodeInfo> {
        let mut out = self.list_local(now_ms);
        let mut at: HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, n)| (n.uuid.clone(), i))
            .collect();
        for n in self.remote.live_nodes(now_ms) {
            match at.get(&n.uuid) {
                Some(&i) => merge_tunnels(&mut out[i], &n.tunnels),
                None => {
                    at.insert(n.uuid.clone(), out.len());
                    out.push(n.clone());
                }
            }
        }
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.uuid.cmp(&b.uuid)));
        out
    }

    /// Live nodes this auth server holds, as `list` shows them.
    pub fn list_local(&self, now_ms: u64) -> Vec<NodeInfo> {
        let mut out: Vec<NodeInfo> = self
            .nodes
            .values()
            .filter(|e| e.live(now_ms))
            .map(|e| {
                let mut info = e.info.clone();
                info.tunnels = e
                    .vias
                    .iter()
                    .filter(|(_, &exp)| exp > now_ms)
                    .map(|(id, _)| self.proxy_name(id))
                    .collect();
                info.tunnels.sort();
                info
            })
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.uuid.cmp(&b.uuid)));
        out
    }

    /// Live nodes of every auth server.
    pub fn count(&self, now_ms: u64) -> usize {
        let remote_only = self
            .remote
            .live_nodes(now_ms)
            .filter(|n| !self.nodes.get(&n.uuid).is_some_and(|e| e.live(now_ms)))
            .count();
        self.nodes.values().filter(|e| e.live(now_ms)).count() + remote_only
    }

    /// Records a proxy's heartbeat on link `conn`.
    pub fn upsert_proxy(
        &mut self,
        proxy: ProxyRef,
        addr: &str,
        version: &str,
        conn: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) {
        let web = self
            .proxies
            .get(&proxy.id)
            .map(|p| p.web.clone())
            .unwrap_or_default();
        self.proxies.insert(
            proxy.id.clone(),
            ProxyEntry {
                proxy,
                addr: addr.to_string(),
                version: version.to_string(),
                expires_ms: now_ms + ttl_ms,
                conn,
                web,
            },
        );
    }

    /// Records what proxy `id`'s web listener serves (after `upsert_proxy`).
    pub fn set_proxy_web(&mut self, id: &str, web: WebTrust) {
        if let Some(p) = self.proxies.get_mut(id) {
            p.web = web;
        }
    }

    /// The web pins of every live proxy; `public` only if each serves a publicly trusted
    /// certificate (then a plain `curl` works against any of them).
    pub fn web_trust(&self, now_ms: u64) -> WebTrust {
        let live: Vec<&ProxyEntry> = self
            .proxies
            .values()
            .filter(|p| p.expires_ms > now_ms)
            .collect();
        let remote: Vec<&ProxyRecord> = self.remote_proxies(now_ms).collect();
        let webs = || {
            live.iter()
                .map(|p| &p.web)
                .chain(remote.iter().map(|p| &p.web))
        };
        let mut pins: Vec<String> = webs().flat_map(|w| w.pins.clone()).collect();
        pins.sort();
        pins.dedup();
        WebTrust {
            pins,
            public: webs().next().is_some() && webs().all(|w| w.public),
        }
    }

    /// Removes a proxy if link `conn` still owns it.
    pub fn remove_proxy(&mut self, id: &str, conn: u64) {
        if self.proxies.get(id).is_some_and(|p| p.conn == conn) {
            self.proxies.remove(id);
        }
    }

    /// Proxies other auth servers hold that are not linked here.
    fn remote_proxies(&self, now_ms: u64) -> impl Iterator<Item = &ProxyRecord> {
        self.remote.live_proxies(now_ms).filter(move |r| {
            !self
                .proxies
                .get(&r.proxy.id)
                .is_some_and(|p| p.expires_ms > now_ms)
        })
    }

    /// The live proxy set of the whole cluster, as announced to agents.
    pub fn proxy_set(&self, now_ms: u64) -> Vec<ProxyRef> {
        let mut out: Vec<ProxyRef> = self
            .proxies
            .values()
            .filter(|p| p.expires_ms > now_ms)
            .map(|p| p.proxy.clone())
            .chain(self.remote_proxies(now_ms).map(|r| r.proxy.clone()))
            .collect();
        out.sort();
        out
    }

    /// Live proxies of every auth server.
    pub fn list_proxies(&self, now_ms: u64) -> Vec<ProxyInfo> {
        let mut out = self.list_local_proxies(now_ms);
        out.extend(self.remote_proxies(now_ms).map(|r| r.info.clone()));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The proxies linked here, with what they serve, for the shared presence records.
    pub fn local_proxies(&self, now_ms: u64) -> Vec<(ProxyRef, ProxyInfo, WebTrust)> {
        self.list_local_proxies(now_ms)
            .into_iter()
            .filter_map(|info| {
                let p = self.proxies.get(&info.uuid)?;
                Some((p.proxy.clone(), info, p.web.clone()))
            })
            .collect()
    }

    fn list_local_proxies(&self, now_ms: u64) -> Vec<ProxyInfo> {
        let mut out: Vec<ProxyInfo> = self
            .proxies
            .values()
            .filter(|p| p.expires_ms > now_ms)
            .map(|p| ProxyInfo {
                name: p.proxy.name.clone(),
                uuid: p.proxy.id.clone(),
                addr: p.addr.clone(),
                version: p.version.clone(),
                tunnels: self
                    .nodes
                    .values()
                    .filter(|e| e.vias.get(&p.proxy.id).is_some_and(|&exp| exp > now_ms))
                    .count(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Forgets expired paths, nodes and proxies; returns how many nodes went away.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.proxies.retain(|_, p| p.expires_ms > now_ms);
        self.remote.expire(now_ms);
        let before = self.nodes.len();
        for e in self.nodes.values_mut() {
            e.vias.retain(|_, exp| *exp > now_ms);
            if e.direct.is_some_and(|(_, exp)| exp <= now_ms) {
                e.direct = None;
            }
        }
        self.nodes
            .retain(|_, e| e.direct.is_some() || !e.vias.is_empty());
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
#[path = "inventory_tests.rs"]
mod tests;
