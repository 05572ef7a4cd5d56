//! Presence of nodes and proxies, in memory only: rebuilt from heartbeats after a restart. Pure
//! logic: callers pass the monotonic time in milliseconds.
//!
//! A node is online while it heartbeats directly (one stream) or through at least one proxy
//! tunnel; each path has its own expiry, so one dead proxy loses no node.

use std::collections::{BTreeMap, HashMap};

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

    /// Forgets a node on every path at once (removed or locked).
    pub fn forget(&mut self, uuid: &str) -> Option<NodeInfo> {
        self.nodes.remove(uuid).map(|e| e.info)
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

    /// Live nodes sorted by hostname, with the names of the proxies they hold tunnels to.
    pub fn list(&self, now_ms: u64) -> Vec<NodeInfo> {
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

    pub fn count(&self, now_ms: u64) -> usize {
        self.nodes.values().filter(|e| e.live(now_ms)).count()
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
        let mut pins: Vec<String> = live.iter().flat_map(|p| p.web.pins.clone()).collect();
        pins.sort();
        pins.dedup();
        WebTrust {
            pins,
            public: !live.is_empty() && live.iter().all(|p| p.web.public),
        }
    }

    /// Removes a proxy if link `conn` still owns it.
    pub fn remove_proxy(&mut self, id: &str, conn: u64) {
        if self.proxies.get(id).is_some_and(|p| p.conn == conn) {
            self.proxies.remove(id);
        }
    }

    /// The live proxy set, as announced to agents.
    pub fn proxy_set(&self, now_ms: u64) -> Vec<ProxyRef> {
        let mut out: Vec<ProxyRef> = self
            .proxies
            .values()
            .filter(|p| p.expires_ms > now_ms)
            .map(|p| p.proxy.clone())
            .collect();
        out.sort();
        out
    }

    pub fn list_proxies(&self, now_ms: u64) -> Vec<ProxyInfo> {
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
mod tests {
    use super::*;

    fn n(uuid: &str) -> NodeInfo {
        node_info(uuid, &format!("host-{uuid}"), "", BTreeMap::new(), "1")
    }

    fn p(id: &str) -> ProxyRef {
        ProxyRef {
            id: id.into(),
            name: format!("proxy-{id}"),
        }
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

    #[test]
    fn one_dead_proxy_loses_no_node() {
        let mut inv = Inventory::default();
        inv.upsert_proxy(p("1"), "", "1", 1, 0, 10_000);
        inv.upsert_proxy(p("2"), "", "1", 2, 0, 10_000);
        inv.upsert_via(n("a"), "1", 0, 1000);
        inv.upsert_via(n("a"), "2", 500, 1000);
        let l = inv.list(600);
        assert_eq!(l[0].tunnels, vec!["proxy-1", "proxy-2"]);
        assert_eq!(l[0].addr, TUNNEL_ADDR);
        // Proxy 1 stops relaying: the node stays, through proxy 2 only.
        let l = inv.list(1200);
        assert_eq!(l[0].tunnels, vec!["proxy-2"]);
        assert_eq!(inv.list_proxies(1200)[1].tunnels, 1);
        assert_eq!(inv.name_via("a", "2", 1200).as_deref(), Some("host-a"));
        assert_eq!(inv.name_via("a", "1", 1200), None, "proxy 1's path expired");
        inv.remove_via("a", "2");
        assert_eq!(inv.count(1200), 0);
    }

    #[test]
    fn a_forgotten_node_is_gone_on_every_path() {
        let mut inv = Inventory::default();
        inv.upsert(n("a"), 1, 0, 1000);
        inv.upsert_via(n("a"), "p", 0, 1000);
        assert_eq!(inv.find("host-a", 0).len(), 1);
        assert_eq!(inv.find("a", 0).len(), 1);
        assert_eq!(inv.forget("a").unwrap().hostname, "host-a");
        assert_eq!(inv.count(0), 0);
        assert!(inv.find("a", 0).is_empty());
    }

    #[test]
    fn web_trust_is_public_only_when_every_live_proxy_is() {
        let mut inv = Inventory::default();
        assert!(!inv.web_trust(0).public);
        inv.upsert_proxy(p("1"), "", "1", 1, 0, 1000);
        inv.upsert_proxy(p("2"), "", "1", 2, 0, 2000);
        let web = |pin: &str, public| WebTrust {
            pins: vec![pin.to_string()],
            public,
        };
        inv.set_proxy_web("1", web("b", false));
        inv.set_proxy_web("2", web("a", true));
        // A heartbeat keeps what the hello reported.
        inv.upsert_proxy(p("2"), "", "1", 2, 0, 2000);
        assert_eq!(
            inv.web_trust(0),
            WebTrust {
                pins: vec!["a".into(), "b".into()],
                public: false
            }
        );
        // Proxy 1 expires: only public proxies are left.
        assert_eq!(inv.web_trust(1500), web("a", true));
    }

    #[test]
    fn proxy_set_follows_heartbeats() {
        let mut inv = Inventory::default();
        inv.upsert_proxy(p("1"), "", "1", 7, 0, 1000);
        inv.upsert_proxy(p("2"), "", "1", 8, 500, 1000);
        assert_eq!(inv.proxy_set(900).len(), 2);
        assert_eq!(inv.proxy_set(1000), vec![p("2")]);
        inv.remove_proxy("2", 99);
        assert_eq!(inv.proxy_set(1000).len(), 1);
        inv.remove_proxy("2", 8);
        assert!(inv.proxy_set(1000).is_empty());
    }
}
