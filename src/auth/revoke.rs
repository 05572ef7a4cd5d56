//! Who may not connect, and closing them at once: locks (`tctl lock`, optionally expiring) and
//! removed hosts (`tctl nodes rm`, kept for good so a removed host's identity never works
//! again). Auth keeps them in storage and memory, closes the matching direct streams and proxy
//! links through their kill switches, and wakes every proxy link so the proxies close the
//! matching tunnels and dials.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use log::{info, warn};
use smol::channel::{Receiver, Sender};

use super::backend::{Backend, Item};
use crate::error::{Error, Result};
use crate::proto::{Denial, LockInfo, LockTarget};
use crate::rt::{shutdown_pair, Shutdown, Trigger};

const LOCKS: &str = "locks/";
const REMOVED: &str = "removed/";
/// Removed hosts remembered at most; the oldest are forgotten first.
const MAX_REMOVED: usize = 100_000;
/// Reads of the locks a sync makes before it gives up replacing them while local changes race it.
const SYNC_TRIES: u32 = 3;

fn lock_key(t: &LockTarget) -> String {
    match t {
        LockTarget::ServerId(id) => format!("{LOCKS}server_id/{id}"),
        LockTarget::User(u) => format!("{LOCKS}user/{u}"),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Removed {
    hostname: String,
    removed: i64,
}

/// What a refused host or user is told.
pub fn lock_message(info: &LockInfo) -> String {
    let why = if info.message.is_empty() {
        "locked by an administrator".to_string()
    } else {
        info.message.clone()
    };
    format!("{} is locked: {why}", info.target)
}

pub fn removed_message(host_id: &str) -> String {
    format!(
        "host {host_id} was removed from the cluster (tctl nodes rm): its identity is revoked; \
         remove the identity file and join again with a new token"
    )
}

#[derive(Default)]
struct Inner {
    locks: BTreeMap<LockTarget, LockInfo>,
    removed: HashMap<String, i64>,
    /// Kill switches of live streams and links, by host ID.
    conns: HashMap<String, Vec<(u64, Trigger)>>,
    /// One waker per proxy link.
    links: Vec<(u64, Sender<()>)>,
    next: u64,
    /// Bumped by every local change of `locks` or `removed`: a sync whose read began before
    /// one must not replace them.
    generation: u64,
}

pub struct Revocations {
    backend: Arc<dyn Backend>,
    inner: Mutex<Inner>,
}

/// A live stream's place in the registry; dropping it leaves.
pub struct ConnGuard {
    rev: Arc<Revocations>,
    host_id: String,
    id: u64,
    /// Fires when the host is locked or removed.
    pub killed: Shutdown,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut inner = self.rev.lock();
        if let Some(list) = inner.conns.get_mut(&self.host_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                inner.conns.remove(&self.host_id);
            }
        }
    }
}

/// A proxy link's subscription to changes; dropping it leaves.
pub struct LinkGuard {
    rev: Arc<Revocations>,
    id: u64,
    /// Receives a wake-up after every change of denials or trust.
    pub changed: Receiver<()>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.rev.lock().links.retain(|(id, _)| *id != self.id);
    }
}

impl Revocations {
    /// Loads locks and removed hosts. Blocking.
    pub fn load(backend: Arc<dyn Backend>, now: i64) -> Result<Arc<Self>> {
        let inner = Inner {
            locks: read_locks(&*backend, now)?,
            removed: read_removed(&*backend, now)?,
            ..Inner::default()
        };
        Ok(Arc::new(Revocations {
            backend,
            inner: Mutex::new(inner),
        }))
    }

    /// Reads what another auth server may have changed and applies it as a local change
    /// would: a new lock or removal closes its target's connections, and any change wakes the
    /// proxy links. Returns the server IDs newly denied (to forget from presence). Blocking.
    pub fn sync(&self, topic: &str, now: i64) -> Result<Vec<String>> {
        let all = topic == super::backend::TOPIC_ALL;
        let want_locks = all || topic == super::backend::TOPIC_LOCKS;
        // Removals only ever grow, so an older read of them is harmless.
        let removed = if all || topic == super::backend::TOPIC_REMOVED {
            Some(read_removed(&*self.backend, now)?)
        } else {
            None
        };
        let mut denied = Vec::new();
        let mut changed = false;
        let mut tries = 0;
        loop {
            tries += 1;
            // A local change made while the locks are read would be undone by replacing the
            // memory with that (older) read: note the generation first, apply only if it held.
            let seen = self.lock().generation;
            let locks = if want_locks {
                Some(read_locks(&*self.backend, now)?)
            } else {
                None
            };
            let mut inner = self.lock();
            let fresh = inner.generation == seen;
            if !fresh && tries < SYNC_TRIES {
                continue;
            }
            if let Some(locks) = locks {
                for (target, info) in &locks {
                    if inner.locks.get(target) != Some(info) {
                        denied.push(target.clone());
                    }
                }
                if fresh {
                    changed |= inner.locks != locks;
                    inner.locks = locks;
                } else {
                    // Still racing local changes: only add or refresh locks (failing closed);
                    // the local change's announcement brings the next sync.
                    for (target, info) in locks {
                        if inner.locks.get(&target) != Some(&info) {
                            changed = true;
                            inner.locks.insert(target, info);
                        }
                    }
                }
            }
            if let Some(removed) = &removed {
                for id in removed.keys() {
                    if !inner.removed.contains_key(id) {
                        denied.push(LockTarget::ServerId(id.clone()));
                    }
                }
                // Removals are for good: one this server knows stays even if the store
                // forgot it (the oldest are dropped past `MAX_REMOVED`).
                changed |= removed.len() != inner.removed.len();
                inner
                    .removed
                    .extend(removed.iter().map(|(k, v)| (k.clone(), *v)));
            }
            break;
        }
        let mut ids = Vec::new();
        for target in &denied {
            info!("{target} was locked or removed on another auth server; closing its connections");
            self.close(target);
            if let LockTarget::ServerId(id) = target {
                ids.push(id.clone());
            }
        }
        if changed || !denied.is_empty() {
            self.wake_links();
        }
        Ok(ids)
    }

    /// Tells the other auth servers; a failure only delays them to their next poll.
    fn announce(&self, topic: &str) {
        if let Err(e) = self.backend.notify(topic) {
            warn!("could not announce a change of {topic} to other auth servers: {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why `target` may not connect at `now`, if it may not.
    pub fn denial(&self, target: &LockTarget, now: i64) -> Option<String> {
        let inner = self.lock();
        if let LockTarget::ServerId(id) = target {
            if inner.removed.contains_key(id) {
                return Some(removed_message(id));
            }
        }
        inner
            .locks
            .get(target)
            .filter(|l| l.expires.map_or(true, |e| e > now))
            .map(lock_message)
    }

    /// Whether `host_id` was removed (its identity is gone for good, unlike a lock).
    pub fn is_removed(&self, host_id: &str) -> bool {
        self.lock().removed.contains_key(host_id)
    }

    /// Everything denied at `now`, for proxies.
    pub fn denials(&self, now: i64) -> Vec<Denial> {
        let inner = self.lock();
        let mut out: Vec<Denial> = inner
            .locks
            .values()
            .filter(|l| l.expires.map_or(true, |e| e > now))
            .map(|l| Denial {
                target: l.target.clone(),
                message: lock_message(l),
            })
            .collect();
        out.extend(inner.removed.keys().map(|id| Denial {
            target: LockTarget::ServerId(id.clone()),
            message: removed_message(id),
        }));
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    pub fn locks(&self, now: i64) -> Vec<LockInfo> {
        self.lock()
            .locks
            .values()
            .filter(|l| l.expires.map_or(true, |e| e > now))
            .cloned()
            .collect()
    }

    /// Stores a lock (replacing one on the same target) and closes the target's connections.
    /// Blocking.
    pub fn add_lock(&self, info: LockInfo) -> Result<()> {
        let item = Item {
            key: lock_key(&info.target),
            value: serde_json::to_vec(&info).map_err(|e| Error::Storage(e.to_string()))?,
            expires: info.expires,
        };
        self.backend.put(&item)?;
        let target = info.target.clone();
        {
            let mut inner = self.lock();
            inner.generation += 1;
            inner.locks.insert(target.clone(), info);
        }
        self.enforce(&target);
        self.announce(super::backend::TOPIC_LOCKS);
        Ok(())
    }

    /// Removes a lock; whether there was one. Blocking.
    pub fn remove_lock(&self, target: &LockTarget, now: i64) -> Result<bool> {
        self.backend.delete(&lock_key(target), now)?;
        let had = {
            let mut inner = self.lock();
            inner.generation += 1;
            inner.locks.remove(target).is_some()
        };
        self.wake_links();
        self.announce(super::backend::TOPIC_LOCKS);
        Ok(had)
    }

    /// Revokes a host for good and closes its connections. Blocking.
    pub fn remove_host(&self, host_id: &str, hostname: &str, now: i64) -> Result<()> {
        let item = Item {
            key: format!("{REMOVED}{host_id}"),
            value: serde_json::to_vec(&Removed {
                hostname: hostname.to_string(),
                removed: now,
            })
            .map_err(|e| Error::Storage(e.to_string()))?,
            expires: None,
        };
        self.backend.put(&item)?;
        {
            let mut inner = self.lock();
            inner.generation += 1;
            inner.removed.insert(host_id.to_string(), now);
            if inner.removed.len() > MAX_REMOVED {
                if let Some(oldest) = inner
                    .removed
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(id, _)| id.clone())
                {
                    inner.removed.remove(&oldest);
                    let _ = self.backend.delete(&format!("{REMOVED}{oldest}"), now);
                }
            }
        }
        self.enforce(&LockTarget::ServerId(host_id.to_string()));
        self.announce(super::backend::TOPIC_REMOVED);
        Ok(())
    }

    /// Forgets locks that expired; wakes the links if any did.
    pub fn expire(&self, now: i64) {
        let gone = {
            let mut inner = self.lock();
            let before = inner.locks.len();
            inner
                .locks
                .retain(|_, l| l.expires.map_or(true, |e| e > now));
            let gone = before != inner.locks.len();
            if gone {
                inner.generation += 1;
            }
            gone
        };
        if gone {
            self.wake_links();
        }
    }

    /// Closes `target`'s streams and links here and tells every proxy.
    fn enforce(&self, target: &LockTarget) {
        self.close(target);
        self.wake_links();
    }

    /// Closes `target`'s streams and links here.
    fn close(&self, target: &LockTarget) {
        if let LockTarget::ServerId(id) = target {
            let list = self.lock().conns.remove(id);
            for (_, trigger) in list.into_iter().flatten() {
                trigger.fire();
            }
        }
    }

    /// Wakes every proxy link so it sends what changed (denials, trust).
    pub fn wake_links(&self) {
        for (_, tx) in &self.lock().links {
            let _ = tx.try_send(());
        }
    }

    /// Registers a live stream or link of `host_id`.
    pub fn register(self: &Arc<Self>, host_id: &str) -> ConnGuard {
        let (trigger, killed) = shutdown_pair();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner
            .conns
            .entry(host_id.to_string())
            .or_default()
            .push((id, trigger));
        ConnGuard {
            rev: self.clone(),
            host_id: host_id.to_string(),
            id,
            killed,
        }
    }

    /// Subscribes a proxy link to changes.
    pub fn subscribe(self: &Arc<Self>) -> LinkGuard {
        let (tx, rx) = smol::channel::bounded(1);
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.links.push((id, tx));
        LinkGuard {
            rev: self.clone(),
            id,
            changed: rx,
        }
    }
}

fn read_locks(backend: &dyn Backend, now: i64) -> Result<BTreeMap<LockTarget, LockInfo>> {
    Ok(backend
        .list(LOCKS, now)?
        .iter()
        .filter_map(|item| serde_json::from_slice::<LockInfo>(&item.value).ok())
        .map(|info| (info.target.clone(), info))
        .collect())
}

fn read_removed(backend: &dyn Backend, now: i64) -> Result<HashMap<String, i64>> {
    Ok(backend
        .list(REMOVED, now)?
        .iter()
        .filter_map(|item| {
            let r = serde_json::from_slice::<Removed>(&item.value).ok()?;
            Some((item.key.trim_start_matches(REMOVED).to_string(), r.removed))
        })
        .collect())
}

#[cfg(test)]
#[path = "revoke_tests.rs"]
mod tests;
