//! A fleet of pools behind one simulated round-robin balancer, against proxies whose views of
//! the set lag (each learns of a new proxy only at its next beat to auth) and that announce
//! the set as the real proxy does: in the welcome, then in acks only when it changed. Time is
//! simulated; nothing sleeps.

use super::*;

const MS: Duration = Duration::from_millis(1);
const PROXIES: [&str; 3] = ["a", "b", "c"];
const BEAT: Duration = Duration::from_secs(5);

fn p(id: &str) -> ProxyRef {
    ProxyRef {
        id: id.into(),
        name: format!("proxy-{id}"),
    }
}

/// Proxy `i`'s view at `t` (since the start): c joined last; b hears of it at 2 s, a at 3.5 s.
fn view(i: usize, t: Duration) -> Vec<ProxyRef> {
    let knows_c = match i {
        0 => t >= 3500 * MS,
        1 => t >= 2000 * MS,
        _ => true,
    };
    let n = if knows_c { 3 } else { 2 };
    PROXIES[..n].iter().map(|id| p(id)).collect()
}

struct Tunnel {
    agent: usize,
    conn: ConnId,
    proxy: usize,
    last_sent: Vec<ProxyRef>,
    next_ack: Instant,
}

struct Fleet {
    t0: Instant,
    clock: Instant,
    pools: Vec<TunnelPool>,
    tunnels: Vec<Tunnel>,
    /// Dials under way: (lands at, agent, connection, proxy index).
    dialing: Vec<(Instant, usize, ConnId, usize)>,
    /// The balancer's round-robin position, shared by every agent.
    rr: usize,
    conn: ConnId,
    dials: usize,
    /// When each agent first held every proxy.
    done: Vec<Option<Duration>>,
}

/// What comes next in simulated time.
enum Next {
    Dial(usize),
    Land(usize),
    Ack(usize),
}

impl Fleet {
    /// `agents` pools whose first dials are spread over `spread` (joins finish one by one).
    fn new(agents: usize, spread: Duration) -> Fleet {
        let t0 = Instant::now();
        let pools = (0..agents)
            .map(|i| TunnelPool::new(t0 + spread * i as u32 / agents as u32, i as u64 + 1))
            .collect();
        Fleet {
            t0,
            clock: t0,
            pools,
            tunnels: Vec::new(),
            dialing: Vec::new(),
            rr: 0,
            conn: 0,
            dials: 0,
            done: vec![None; agents],
        }
    }

    /// Runs until `end` (simulated), serving the earliest due dial, landing or ack each step.
    fn run(&mut self, end: Duration) {
        loop {
            let dials = (0..self.pools.len())
                .filter_map(|i| self.pools[i].poll_timeout().map(|at| (at, Next::Dial(i))));
            let lands = (0..self.dialing.len()).map(|k| (self.dialing[k].0, Next::Land(k)));
            let acks = (0..self.tunnels.len()).map(|k| (self.tunnels[k].next_ack, Next::Ack(k)));
            let Some((at, next)) = dials.chain(lands).chain(acks).min_by_key(|(at, _)| *at) else {
                return;
            };
            // A dial wanted since before now happens now: time never runs backwards.
            let now = at.max(self.clock);
            self.clock = now;
            if now - self.t0 > end {
                return;
            }
            match next {
                Next::Dial(i) => {
                    self.pools[i].tick(now);
                    self.serve(now, i);
                }
                Next::Land(k) => self.land(now, k),
                Next::Ack(k) => self.ack(now, k),
            }
        }
    }

    /// Carries out agent `i`'s actions. A dial takes the balancer's next slot at once and
    /// lands 20..300 ms later (handshakes under load), so many agents' dials overlap.
    fn serve(&mut self, now: Instant, i: usize) {
        while let Some(a) = self.pools[i].poll_action() {
            match a {
                Action::Dial => {
                    self.dials += 1;
                    self.conn += 1;
                    let to = self.rr % PROXIES.len();
                    self.rr += 1;
                    let latency = MS * (20 + (self.conn * 7919 % 281) as u32);
                    self.dialing.push((now + latency, i, self.conn, to));
                }
                Action::Hold { held, .. } if held == PROXIES.len() => {
                    self.done[i].get_or_insert(now - self.t0);
                }
                _ => {}
            }
        }
    }

    fn land(&mut self, now: Instant, k: usize) {
        let (_, agent, conn, to) = self.dialing.swap_remove(k);
        let t = now - self.t0;
        let mut others = view(to, t);
        others.retain(|x| x.id != PROXIES[to]);
        self.pools[agent].landed(now, conn, p(PROXIES[to]), others);
        let held = self.pools[agent].held.values().any(|(c, _)| *c == conn);
        if held {
            // The proxy reads the set it compares acks against only after the welcome went
            // out: under load, a little later.
            self.tunnels.push(Tunnel {
                agent,
                conn,
                proxy: to,
                last_sent: view(to, t + 50 * MS),
                next_ack: now + 10 * MS,
            });
        }
        self.serve(now, agent);
    }

    fn ack(&mut self, now: Instant, k: usize) {
        let t = &mut self.tunnels[k];
        let v = view(t.proxy, now - self.t0);
        if v != t.last_sent {
            t.last_sent = v.clone();
            self.pools[t.agent].announced(t.conn, v);
        }
        t.next_ack = now + BEAT;
        let agent = t.agent;
        self.serve(now, agent);
    }
}

#[test]
fn a_fleet_behind_one_round_robin_balancer_converges_while_proxy_views_lag() {
    let mut fleet = Fleet::new(300, 1500 * MS);
    fleet.run(Duration::from_secs(30));
    let stuck: Vec<_> = (0..fleet.pools.len())
        .filter(|&i| fleet.pools[i].held() < PROXIES.len())
        .map(|i| (i, fleet.pools[i].held(), fleet.pools[i].known()))
        .collect();
    assert!(stuck.is_empty(), "agents (index, held, known): {stuck:?}");
    let last = fleet.done.iter().flatten().max().unwrap();
    // The slowest waits for a's view (3.5 s), its next ack (one beat), then lands on c.
    assert!(*last <= Duration::from_secs(30), "{last:?}");
    eprintln!(
        "converged after {last:?}, {} dials for {} agents",
        fleet.dials,
        fleet.pools.len()
    );
}
