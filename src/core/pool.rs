//! The tunnel pool: hold exactly one tunnel to every proxy in the set the proxies announce,
//! by dialing the proxy address (often a round-robin load balancer) again and again. A
//! connection that lands on a proxy already held is closed, with a short randomized pause so
//! that many agents stop colliding; landing on held proxies again and again means the balancer
//! is sticky or does not route to the proxies missing, which the operator must fix.
//! Sans-I/O: the driver dials and runs the tunnels, `now` is passed in.
//!
//! The set wanted is the union of what each held proxy last announced (its welcome, then the
//! changes its acks carry), not the last announcement heard: a proxy learns of new proxies
//! only at its next beat to auth, so its view may lag another's, and acks repeat the set only
//! when it changes, so a lagging view that replaced a full one was never corrected.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{after, Backoff};
use crate::proto::ProxyRef;

/// Names one dialed connection, chosen by the driver.
pub type ConnId = u64;

/// Dial failures back off from this…
pub const ERROR_BASE: Duration = Duration::from_millis(250);
/// …up to this.
pub const ERROR_MAX: Duration = Duration::from_secs(15);
/// Duplicate landings pause from this (uniform in [0, cap])…
pub const DUP_BASE: Duration = Duration::from_millis(40);
/// …up to this.
pub const DUP_MAX: Duration = Duration::from_secs(5);
/// Consecutive landings on held proxies after which the agent suspects sticky balancing.
pub const STICKY_HINT_AFTER: u32 = 5;
/// Proxies remembered (set entries, and proxies ever held): IDs come from verified proxies,
/// but memory is bounded anyway.
pub const MAX_PROXIES: usize = 1024;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dial the proxy address once; report `landed` or `dial_failed`.
    Dial,
    /// Keep this connection: it is now the tunnel to `proxy`. `reconnect`: a proxy held
    /// before. `held` of `known` proxies are now held.
    Hold {
        conn: ConnId,
        proxy: ProxyRef,
        reconnect: bool,
        held: usize,
        known: usize,
    },
    /// Close this connection: it landed on a proxy already held.
    Close { conn: ConnId, proxy: ProxyRef },
    /// The balancer keeps sending new connections to held proxies: it must be round-robin,
    /// and route to every proxy in `missing` (names).
    Sticky {
        held: usize,
        known: usize,
        missing: Vec<String>,
    },
    /// The dial failed; the next one comes after `delay`.
    Retry { delay: Duration },
    /// The tunnel to `name` closed; `left` tunnels remain. `shutdown`: it closed because the
    /// process stops, which is no failure.
    Lost {
        name: String,
        left: usize,
        shutdown: bool,
    },
    /// The first heartbeat relayed to auth: the node is online.
    Online,
}

/// A proxy set: ID → name.
type Set = BTreeMap<String, String>;

#[derive(Debug)]
pub struct TunnelPool {
    /// The proxy set wanted: the union of `views`, or while none is held the last set heard.
    known: Set,
    /// The set each held proxy last announced, by proxy ID.
    views: BTreeMap<String, Set>,
    /// Held tunnels: proxy ID → (connection, name).
    held: BTreeMap<String, (ConnId, String)>,
    /// Proxies held at some point: a new tunnel to one of them is a reconnect.
    ever_held: BTreeSet<String>,
    errors: Backoff,
    dups: Backoff,
    dup_streak: u32,
    next_dial: Instant,
    dialing: bool,
    ever_landed: bool,
    online: bool,
    stopping: bool,
    actions: VecDeque<Action>,
}

impl TunnelPool {
    /// A pool that dials at the first tick.
    pub fn new(now: Instant, seed: u64) -> Self {
        TunnelPool {
            known: BTreeMap::new(),
            views: BTreeMap::new(),
            held: BTreeMap::new(),
            ever_held: BTreeSet::new(),
            errors: Backoff::with_seed(ERROR_BASE, ERROR_MAX, seed),
            dups: Backoff::with_seed(DUP_BASE, DUP_MAX, seed.rotate_left(32)),
            dup_streak: 0,
            next_dial: now,
            dialing: false,
            ever_landed: false,
            online: false,
            stopping: false,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the pool wants a `tick`: the next dial, if one is wanted and none is under way.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.wants_dial() && !self.dialing && !self.stopping).then_some(self.next_dial)
    }

    /// Tunnels held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Proxies in the set.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Whether any dial reached a proxy: before that, a certificate error means a stale
    /// identity; after, a passing fault.
    pub fn ever_landed(&self) -> bool {
        self.ever_landed
    }

    /// No tunnel yet, or a proxy of the set without one.
    fn wants_dial(&self) -> bool {
        self.held.is_empty() || self.known.keys().any(|id| !self.held.contains_key(id))
    }

    pub fn tick(&mut self, now: Instant) {
        // A clock that jumped back must not delay the next dial beyond one backoff.
        self.next_dial = self.next_dial.min(after(now, ERROR_MAX.max(DUP_MAX)));
        if let Some(at) = self.poll_timeout() {
            if now >= at {
                self.dialing = true;
                self.actions.push_back(Action::Dial);
            }
        }
    }

    /// The held tunnel `conn` announced its proxy's view of the set (empty: unchanged).
    pub fn announced(&mut self, conn: ConnId, set: Vec<ProxyRef>) {
        if set.is_empty() {
            return;
        }
        if let Some(id) = self.held_id(conn) {
            self.views.insert(id, bounded(set));
            self.rebuild_known();
        }
    }

    /// The union of the held proxies' views (each proxy is in its own view); while nothing is
    /// held, the set stays as last heard, so that the agent knows what it is missing.
    fn rebuild_known(&mut self) {
        if self.views.is_empty() {
            return;
        }
        let mut known = Set::new();
        for (id, name) in self.views.values().flatten() {
            if known.len() >= MAX_PROXIES {
                break;
            }
            known.insert(id.clone(), name.clone());
        }
        self.known = known;
    }

    fn held_id(&self, conn: ConnId) -> Option<String> {
        self.held
            .iter()
            .find(|(_, (c, _))| *c == conn)
            .map(|(id, _)| id.clone())
    }

    /// Names of the proxies in the set that no tunnel reaches.
    fn missing(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|(id, _)| !self.held.contains_key(*id))
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// A dial landed on `proxy`, which announced `others` as the rest of the set.
    pub fn landed(&mut self, now: Instant, conn: ConnId, proxy: ProxyRef, others: Vec<ProxyRef>) {
        self.dialing = false;
        self.ever_landed = true;
        self.errors.reset();
        let mut set = others;
        set.truncate(MAX_PROXIES - 1);
        set.push(proxy.clone());
        // With nothing held, the welcome is all the agent knows. A duplicate's welcome is not
        // taken as its proxy's view: that view must stay what the held tunnel was told (its
        // welcome, then its acks' changes), or a set that flapped between two acks would
        // stick, never to be corrected by an ack.
        let view = bounded(set);
        if self.views.is_empty() {
            self.known = view.clone();
        }
        if self.stopping {
            self.actions.push_back(Action::Close { conn, proxy });
            return;
        }
        if self.held.contains_key(&proxy.id) {
            self.dup_streak += 1;
            self.actions.push_back(Action::Close { conn, proxy });
            if self.dup_streak % STICKY_HINT_AFTER == 0 && self.wants_dial() {
                self.actions.push_back(Action::Sticky {
                    held: self.held.len(),
                    known: self.known.len(),
                    missing: self.missing(),
                });
            }
            self.next_dial = after(now, self.dups.next_delay_full());
            return;
        }
        self.dup_streak = 0;
        self.dups.reset();
        let reconnect = self.ever_held.contains(&proxy.id);
        if !reconnect && self.ever_held.len() < MAX_PROXIES {
            self.ever_held.insert(proxy.id.clone());
        }
        self.held
            .insert(proxy.id.clone(), (conn, proxy.name.clone()));
        self.views.insert(proxy.id.clone(), view);
        self.rebuild_known();
        self.actions.push_back(Action::Hold {
            conn,
            proxy,
            reconnect,
            held: self.held.len(),
            known: self.known.len().max(self.held.len()),
        });
        self.next_dial = now;
    }

    /// The dial failed before a proxy welcomed us.
    pub fn dial_failed(&mut self, now: Instant) {
        self.dialing = false;
        let delay = self.errors.next_delay();
        self.next_dial = after(now, delay);
        self.actions.push_back(Action::Retry { delay });
    }

    /// A tunnel's heartbeat was acknowledged; `relayed`: the proxy passed it on to auth.
    pub fn acked(&mut self, relayed: bool) {
        if relayed && !self.online {
            self.online = true;
            self.actions.push_back(Action::Online);
        }
    }

    /// A held tunnel ended. A connection that is not held (closed as a duplicate) is ignored.
    pub fn closed(&mut self, conn: ConnId) {
        let Some(id) = self.held_id(conn) else {
            return;
        };
        self.views.remove(&id);
        self.rebuild_known();
        if let Some((_, name)) = self.held.remove(&id) {
            self.actions.push_back(Action::Lost {
                name,
                left: self.held.len(),
                shutdown: self.stopping,
            });
        }
    }

    /// The process stops: no more dials; tunnels that close from now on are no failure.
    pub fn shutdown(&mut self) {
        self.stopping = true;
    }
}

/// A set as announced, bounded: IDs come from verified proxies, but memory is bounded anyway.
fn bounded(set: Vec<ProxyRef>) -> Set {
    set.into_iter()
        .take(MAX_PROXIES)
        .map(|p| (p.id, p.name))
        .collect()
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pool_fleet_tests.rs"]
mod fleet_tests;
