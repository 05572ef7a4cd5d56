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

/// Proxy `i`'s view at `t` (since the start): c joined last; a hears of it at 2 s, b at 3.5 s.
fn view(i: usize, t: Duration) -> Vec<ProxyRef> {
    let knows_c = match i {
        0 => t >= 2000 * MS,
        1 => t >= 3500 * MS,
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
    pools: Vec<TunnelPool>,
    tunnels: Vec<Tunnel>,
    /// The balancer's round-robin position, shared by every agent.
    rr: usize,
    conn: ConnId,
    dials: usize,
    /// When each agent first held every proxy.
    done: Vec<Option<Duration>>,
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
            pools,
            tunnels: Vec::new(),
            rr: 0,
            conn: 0,
            dials: 0,
            done: vec![None; agents],
        }
    }

    /// Runs until `end` (simulated): each step serves the earliest due dial or ack.
    fn run(&mut self, end: Duration) {
        loop {
            let dial = (0..self.pools.len())
                .filter_map(|i| self.pools[i].poll_timeout().map(|at| (at, i)))
                .min();
            let ack = (0..self.tunnels.len())
                .map(|k| (self.tunnels[k].next_ack, k))
                .min();
            let now = match (dial, ack) {
                (Some((at, i)), Some((ack_at, _))) if at <= ack_at => self.dial(at, i),
                (Some((at, i)), None) => self.dial(at, i),
                (_, Some((at, k))) => self.ack(at, k),
                (None, None) => return,
            };
            if now - self.t0 > end {
                return;
            }
        }
    }

    fn dial(&mut self, now: Instant, i: usize) -> Instant {
        self.pools[i].tick(now);
        while let Some(a) = self.pools[i].poll_action() {
            match a {
                Action::Dial => {
                    self.dials += 1;
                    self.conn += 1;
                    let to = self.rr % PROXIES.len();
                    self.rr += 1;
                    let t = now - self.t0;
                    let mut others = view(to, t);
                    others.retain(|x| x.id != PROXIES[to]);
                    self.pools[i].landed(now, self.conn, p(PROXIES[to]), others);
                    // The proxy reads the set it compares acks against only after the welcome
                    // went out: under load, a little later.
                    let last_sent = view(to, t + 50 * MS);
                    self.pending_tunnel(i, to, last_sent, now);
                }
                Action::Hold { held, .. } if held == PROXIES.len() => {
                    self.done[i].get_or_insert(now - self.t0);
                }
                _ => {}
            }
        }
        now
    }

    /// Records the dialed connection as a tunnel; a duplicate's is dropped at its `Close`.
    fn pending_tunnel(
        &mut self,
        agent: usize,
        proxy: usize,
        last_sent: Vec<ProxyRef>,
        now: Instant,
    ) {
        let held = self.pools[agent]
            .held
            .values()
            .any(|(c, _)| *c == self.conn);
        if held {
            self.tunnels.push(Tunnel {
                agent,
                conn: self.conn,
                proxy,
                last_sent,
                next_ack: now + 10 * MS,
            });
        }
    }

    fn ack(&mut self, now: Instant, k: usize) -> Instant {
        let t = &mut self.tunnels[k];
        let v = view(t.proxy, now - self.t0);
        if v != t.last_sent {
            t.last_sent = v.clone();
            self.pools[t.agent].announced(t.conn, v);
        }
        t.next_ack = now + BEAT;
        let agent = t.agent;
        let _ = self.dial(now, agent);
        now
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
    // The slowest waits for b's view (3.5 s) and its next ack (one beat).
    assert!(*last <= Duration::from_secs(15), "{last:?}");
    eprintln!(
        "converged after {last:?}, {} dials for {} agents",
        fleet.dials,
        fleet.pools.len()
    );
}
