//! The tunnel pool driven against simulated balancers: round-robin, sticky, failing, with
//! proxies coming and going and the clock jumping, with no socket and no sleep.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn p(id: &str) -> ProxyRef {
    ProxyRef {
        id: id.into(),
        name: format!("proxy-{id}"),
    }
}

fn set(ids: &[&str]) -> Vec<ProxyRef> {
    ids.iter().map(|id| p(id)).collect()
}

/// A pool in front of a simulated balancer: `route` picks the proxy each dial lands on,
/// among `proxies` (the live set, announced by every proxy).
struct Sim {
    pool: TunnelPool,
    now: Instant,
    conn: ConnId,
    proxies: Vec<&'static str>,
    dials: usize,
    log: Vec<Action>,
    /// Held connections: conn → proxy ID.
    held: BTreeMap<ConnId, String>,
}

impl Sim {
    fn new(proxies: &[&'static str]) -> Self {
        let now = Instant::now();
        Sim {
            pool: TunnelPool::new(now, 42),
            now,
            conn: 0,
            proxies: proxies.to_vec(),
            dials: 0,
            log: Vec::new(),
            held: BTreeMap::new(),
        }
    }

    /// Runs the pool until it wants nothing more, or `max_dials` dials were made; each dial
    /// lands where `route(dial number)` says. Time moves to each requested wake-up.
    fn run(&mut self, max_dials: usize, route: impl Fn(usize) -> &'static str) {
        let stop = self.dials + max_dials;
        while self.dials < stop {
            let Some(at) = self.pool.poll_timeout() else {
                return;
            };
            self.now = self.now.max(at);
            self.pool.tick(self.now);
            self.step(&route);
        }
    }

    fn step(&mut self, route: &impl Fn(usize) -> &'static str) {
        while let Some(a) = self.pool.poll_action() {
            if let Action::Dial = a {
                self.dials += 1;
                self.conn += 1;
                let to = route(self.dials);
                let others = self.proxies.iter().filter(|id| **id != to).map(|id| p(id));
                self.pool
                    .landed(self.now + 10 * MS, self.conn, p(to), others.collect());
            }
            if let Action::Hold { conn, proxy, .. } = &a {
                self.held.insert(*conn, proxy.id.clone());
            }
            self.log.push(a);
        }
    }

    fn conn_of(&self, id: &str) -> ConnId {
        *self.held.iter().find(|(_, p)| *p == id).unwrap().0
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.log.iter().filter(|a| f(a)).count()
    }

    fn take_log(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.log)
    }
}

fn is_close(a: &Action) -> bool {
    matches!(a, Action::Close { .. })
}

fn round_robin(ids: &'static [&'static str]) -> impl Fn(usize) -> &'static str {
    move |n| ids[(n - 1) % ids.len()]
}

#[test]
fn holds_one_tunnel_to_each_proxy_behind_a_round_robin_balancer() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.run(100, round_robin(&["a", "b", "c"]));
    assert_eq!(sim.dials, 3);
    assert_eq!((sim.pool.held(), sim.pool.known()), (3, 3));
    assert_eq!(sim.count(is_close), 0);
    let last = sim.log.last().unwrap();
    assert!(
        matches!(
            last,
            Action::Hold {
                held: 3,
                known: 3,
                reconnect: false,
                ..
            }
        ),
        "{last:?}"
    );
    assert_eq!(sim.pool.poll_timeout(), None, "nothing more to dial");
    assert!(sim.pool.ever_landed());
}

#[test]
fn duplicate_landings_are_closed_after_a_short_random_pause() {
    let mut sim = Sim::new(&["a", "b"]);
    sim.run(3, |n| ["a", "a", "b"][n - 1]);
    assert_eq!(sim.pool.held(), 2);
    let closes: Vec<_> = sim.log.iter().filter(|a| is_close(a)).collect();
    assert_eq!(
        closes,
        vec![&Action::Close {
            conn: 2,
            proxy: p("a")
        }]
    );
    // The duplicate's connection is not held: its close is not a lost tunnel.
    sim.pool.closed(2);
    assert_eq!(sim.pool.poll_action(), None);
}

#[test]
fn a_sticky_balancer_is_named_every_fifth_duplicate_and_pauses_grow() {
    let mut sim = Sim::new(&["a", "b"]);
    let t0 = sim.now;
    sim.run(11, |_| "a");
    assert_eq!(sim.pool.held(), 1);
    assert_eq!(sim.count(is_close), 10);
    let sticky: Vec<_> = sim
        .log
        .iter()
        .filter(|a| matches!(a, Action::Sticky { .. }))
        .collect();
    let named = Action::Sticky {
        held: 1,
        known: 2,
        missing: vec!["proxy-b".into()],
    };
    assert_eq!(sticky, vec![&named; 2]);
    // Ten pauses of up to 40 ms doubling to 5 s: much longer than ten dials in a row.
    let waited = sim.now - t0;
    assert!(waited > 200 * MS && waited <= 10 * DUP_MAX, "{waited:?}");
    // A landing on the missing proxy ends the streak and the pauses.
    sim.run(1, |_| "b");
    assert_eq!(sim.pool.held(), 2);
    assert_eq!(sim.pool.poll_timeout(), None);
}

#[test]
fn a_lost_tunnel_is_redialed_and_counted_as_a_reconnect() {
    let mut sim = Sim::new(&["a", "b"]);
    sim.run(10, round_robin(&["a", "b"]));
    sim.take_log();
    let conn_a = sim.conn_of("a");
    sim.pool.closed(conn_a);
    sim.pool.closed(conn_a);
    let lost = Action::Lost {
        name: "proxy-a".into(),
        left: 1,
        shutdown: false,
    };
    assert_eq!(sim.pool.poll_action(), Some(lost));
    assert_eq!(
        sim.pool.poll_action(),
        None,
        "a second close of the same tunnel is ignored"
    );
    assert!(
        sim.pool.poll_timeout().unwrap() <= sim.now + 10 * MS,
        "redial at once"
    );
    sim.run(10, |_| "a");
    assert!(matches!(
        sim.take_log()[..],
        [
            Action::Dial,
            Action::Hold {
                reconnect: true,
                held: 2,
                ..
            }
        ]
    ));
}

#[test]
fn the_proxy_set_grows_shrinks_and_is_replaced() {
    let mut sim = Sim::new(&["a"]);
    sim.run(10, |_| "a");
    assert_eq!((sim.pool.held(), sim.pool.poll_timeout()), (1, None));
    let conn_a = sim.conn_of("a");
    // Grows: a new proxy joins; a heartbeat ack announces it.
    sim.proxies = vec!["a", "b"];
    sim.pool.announced(conn_a, set(&["a", "b"]));
    sim.run(10, round_robin(&["a", "b"]));
    assert_eq!((sim.pool.held(), sim.pool.known()), (2, 2));
    // An empty set in an ack means "unchanged".
    sim.pool.announced(conn_a, Vec::new());
    assert_eq!(sim.pool.known(), 2);
    // Shrinks: b leaves the set. Its tunnel ends by itself when b goes; nothing to dial.
    sim.pool.announced(conn_a, set(&["a"]));
    assert_eq!((sim.pool.held(), sim.pool.poll_timeout()), (2, None));
    sim.pool.closed(sim.conn_of("b"));
    assert_eq!(sim.pool.known(), 1);
    assert_eq!(sim.pool.poll_timeout(), None, "b is no longer wanted");
    // Replaced: all new proxies; the old tunnel stays until it closes.
    sim.proxies = vec!["c", "d"];
    sim.pool.announced(conn_a, set(&["c", "d"]));
    sim.run(10, round_robin(&["c", "d"]));
    assert_eq!((sim.pool.held(), sim.pool.known()), (3, 2));
    assert_eq!(sim.pool.poll_timeout(), None);
    // a's own view no longer counts once its tunnel closes.
    sim.pool.closed(conn_a);
    assert_eq!((sim.pool.held(), sim.pool.known()), (2, 2));
    assert_eq!(sim.pool.poll_timeout(), None);
    // An announcement by a connection that is not held (a closed duplicate) is ignored.
    sim.pool.announced(999, set(&["x"]));
    assert_eq!(sim.pool.known(), 2);
}

#[test]
fn dial_failures_back_off_and_a_landing_resets_the_backoff() {
    let now = Instant::now();
    let mut pool = TunnelPool::new(now, 9);
    let mut delays = Vec::new();
    let mut t = now;
    for _ in 0..10 {
        pool.tick(t);
        assert_eq!(pool.poll_action(), Some(Action::Dial));
        pool.tick(t);
        assert_eq!(pool.poll_action(), None, "one dial at a time");
        pool.dial_failed(t);
        let Some(Action::Retry { delay }) = pool.poll_action() else {
            panic!("no retry");
        };
        delays.push(delay);
        t = pool.poll_timeout().unwrap();
    }
    assert!(!pool.ever_landed());
    assert!(
        // Full jitter: the window grows, so some late delay is long.
        delays[0] <= ERROR_BASE && delays[5..].iter().max().unwrap() >= &(ERROR_MAX / 2),
        "{delays:?}"
    );
    assert!(delays.iter().all(|d| *d <= ERROR_MAX));
    pool.tick(t);
    pool.poll_action();
    pool.landed(t, 1, p("a"), Vec::new());
    pool.poll_action();
    pool.closed(1);
    pool.poll_action();
    pool.tick(t);
    assert_eq!(pool.poll_action(), Some(Action::Dial));
    pool.dial_failed(t);
    let Some(Action::Retry { delay }) = pool.poll_action() else {
        panic!("no retry");
    };
    assert!(delay <= ERROR_BASE, "{delay:?}");
}

#[test]
fn clock_jumps_neither_stall_nor_burst_the_dials() {
    let t0 = Instant::now() + Duration::from_secs(7200);
    let mut pool = TunnelPool::new(t0, 3);
    for _ in 0..8 {
        pool.tick(pool.poll_timeout().unwrap());
        pool.poll_action();
        pool.dial_failed(pool.poll_timeout().unwrap_or(t0));
        pool.poll_action();
    }
    // Back two hours: the next dial is at most one backoff away from the new now.
    let back = t0 - Duration::from_secs(7200);
    pool.tick(back);
    assert_eq!(pool.poll_action(), None);
    let at = pool.poll_timeout().unwrap();
    assert!(at <= back + ERROR_MAX, "{:?}", at - back);
    // Forward a month: one dial, not one per missed backoff.
    let month = t0 + Duration::from_secs(86_400 * 30);
    pool.tick(month);
    pool.tick(month);
    assert_eq!(pool.poll_action(), Some(Action::Dial));
    assert_eq!(pool.poll_action(), None);
}

#[test]
fn shutdown_stops_dialing_and_closes_are_no_failures() {
    let mut sim = Sim::new(&["a", "b"]);
    sim.run(10, round_robin(&["a", "b"]));
    sim.take_log();
    sim.pool.shutdown();
    sim.pool.closed(sim.conn_of("a"));
    let bye = Action::Lost {
        name: "proxy-a".into(),
        left: 1,
        shutdown: true,
    };
    assert_eq!(sim.pool.poll_action(), Some(bye));
    assert_eq!(sim.pool.poll_timeout(), None, "no redial while stopping");
    // A dial that was under way lands after the shutdown: closed, not held.
    sim.pool.landed(sim.now, 99, p("a"), Vec::new());
    assert!(matches!(
        sim.pool.poll_action(),
        Some(Action::Close { conn: 99, .. })
    ));
    assert_eq!(sim.pool.held(), 1);
}

#[test]
fn online_when_the_first_beat_reaches_auth() {
    let mut pool = TunnelPool::new(Instant::now(), 1);
    pool.acked(false);
    assert_eq!(
        pool.poll_action(),
        None,
        "acked by a proxy whose link to auth is down"
    );
    pool.acked(true);
    assert_eq!(pool.poll_action(), Some(Action::Online));
    pool.acked(true);
    assert_eq!(pool.poll_action(), None);
}

#[test]
fn a_huge_announced_set_is_bounded() {
    let mut pool = TunnelPool::new(Instant::now(), 1);
    let ids: Vec<String> = (0..MAX_PROXIES * 3).map(|i| format!("p{i}")).collect();
    let big: Vec<ProxyRef> = ids
        .iter()
        .map(|id| ProxyRef {
            id: id.clone(),
            name: id.clone(),
        })
        .collect();
    pool.landed(Instant::now(), 1, p("x"), big.clone());
    assert_eq!(pool.known(), MAX_PROXIES);
    assert!(
        pool.known.contains_key("x"),
        "the proxy that answered is always in the set"
    );
    pool.announced(1, big);
    assert_eq!(pool.known(), MAX_PROXIES);
}

/// The bug behind agents stuck at 2 of 3 proxies: a proxy whose own view of the set lags
/// (it learns of new proxies only at its next link beat to auth, and a welcome computed
/// before that announces the old set) replaced the set another proxy had announced in full.
/// The agent then held "all" proxies of the shrunken set and stopped dialing, and nothing
/// repeated the full set: acks carry the set only when the proxy's view changes.
#[test]
fn a_proxy_announcing_a_lagging_set_does_not_hide_a_proxy_another_announced() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    // Lands on a, which knows all three; then on b, whose view still lacks c.
    sim.run(1, |_| "a");
    sim.pool.tick(sim.now);
    let _ = sim.pool.poll_action();
    sim.pool.landed(sim.now, 50, p("b"), set(&["a"]));
    assert_eq!(sim.pool.held(), 2);
    assert!(
        sim.pool.poll_timeout().is_some(),
        "held {} of known {}: c, announced by a, must still be dialed",
        sim.pool.held(),
        sim.pool.known()
    );
    sim.run(10, round_robin(&["a", "b", "c"]));
    assert_eq!((sim.pool.held(), sim.pool.known()), (3, 3));
}

/// A duplicate's welcome may catch a proxy's set in a brief flap that its held tunnel's acks
/// never saw; taken as that proxy's view, it would stick (acks only repeat changes).
#[test]
fn a_duplicate_landing_does_not_change_what_its_proxy_announced() {
    let mut sim = Sim::new(&["a", "c"]);
    sim.run(10, round_robin(&["a", "c"]));
    assert_eq!((sim.pool.held(), sim.pool.known()), (2, 2));
    // c's tunnel closes; a duplicate on a says, mid-flap, that a knows only itself.
    sim.pool.closed(sim.conn_of("c"));
    let at = sim.pool.poll_timeout().expect("c is redialed");
    sim.pool.tick(at);
    assert!(matches!(sim.pool.poll_action(), Some(Action::Lost { .. })));
    assert_eq!(sim.pool.poll_action(), Some(Action::Dial));
    sim.pool.landed(at, 77, p("a"), Vec::new());
    assert_eq!(sim.pool.known(), 2, "c is still wanted");
    assert!(sim.pool.poll_timeout().is_some());
}
