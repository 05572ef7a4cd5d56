use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn drain(l: &mut Limiter, addr: IpAddr, now: u64) {
    for _ in 0..BURST as usize {
        assert!(l.allow(addr, now), "{addr}");
    }
    assert!(!l.allow(addr, now), "{addr}");
}

#[test]
fn bursts_then_refills() {
    let mut l = Limiter::default();
    let a = ip("192.0.2.1");
    drain(&mut l, a, 0);
    assert!(l.allow(ip("192.0.2.2"), 0));
    // Half a second refills one request at 120/min.
    assert!(l.allow(a, 500));
    assert!(!l.allow(a, 500));
}

#[test]
fn ipv6_sources_are_keyed_per_64() {
    let mut l = Limiter::default();
    drain(&mut l, ip("2001:db8:1:2::1"), 0);
    // Any other address of the same /64 shares the empty bucket.
    assert!(!l.allow(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 0));
    assert!(!l.allow(ip("2001:db8:1:2:1234::99"), 0));
    // The neighbouring /64 has its own.
    assert!(l.allow(ip("2001:db8:1:3::1"), 0));
    assert_eq!(l.len(), 2);
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    let mut l = Limiter::default();
    drain(&mut l, ip("198.51.100.7"), 0);
    assert!(!l.allow(ip("::ffff:198.51.100.7"), 0));
    assert!(l.allow(ip("::ffff:198.51.100.8"), 0));
    assert_eq!(
        Source::of(ip("::ffff:10.0.0.1")),
        Source::of(ip("10.0.0.1"))
    );
    // Loopback ::1 is not 0.0.0.1.
    assert_ne!(Source::of(ip("::1")), Source::of(ip("0.0.0.1")));
}

#[test]
fn a_full_table_sends_new_sources_to_one_shared_bucket() {
    let mut l = Limiter::with_max_buckets(3);
    for i in 1..=3 {
        assert!(l.allow(ip(&format!("192.0.2.{i}")), 0));
    }
    // Sources 4.. share the overflow bucket: together they get one burst.
    for i in 0..BURST as usize {
        let addr = ip(&format!("10.{}.{}.1", i / 256, i % 256));
        assert!(l.allow(addr, 1), "{addr}");
    }
    assert!(!l.allow(ip("10.200.0.1"), 1));
    assert!(!l.allow(ip("2001:db8::1"), 1));
    assert_eq!(l.len(), 3);
    // Sources that had their own bucket keep it.
    assert!(l.allow(ip("192.0.2.1"), 1));
}

#[test]
fn idle_buckets_are_swept_at_most_once_per_interval() {
    let mut l = Limiter::with_max_buckets(100);
    for i in 0..100 {
        assert!(l.allow(ip(&format!("192.0.2.{i}")), 0));
    }
    // Full of active sources: no sweep before the interval, overflow for newcomers.
    assert!(l.allow(ip("10.0.0.1"), 1));
    assert_eq!(l.sweeps(), 0);
    // After the interval one sweep runs; nothing is idle yet, so it frees nothing, and
    // the next thousand newcomers cause no further sweep.
    let t = SWEEP_EVERY_MS;
    for i in 0..1000 {
        l.allow(ip(&format!("10.1.{}.{}", i / 256, i % 256)), t);
    }
    assert_eq!((l.sweeps(), l.len()), (1, 100));
    // Once the old buckets are idle (full again), the next sweep drops them and a new
    // source gets its own bucket again.
    let later = t + IDLE_MS + SWEEP_EVERY_MS;
    assert!(l.allow(ip("203.0.113.9"), later));
    assert_eq!((l.sweeps(), l.len()), (2, 1));
    assert!(l.allow(ip("203.0.113.10"), later));
    assert_eq!(l.len(), 2);
}

#[test]
fn the_table_never_grows_past_its_cap() {
    let mut l = Limiter::with_max_buckets(1000);
    for i in 0..5000u32 {
        let addr = IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
        l.allow(addr, u64::from(i) * 100);
        assert!(l.len() <= 1000);
    }
}

#[test]
fn failed_joins_keep_their_attempt_spent() {
    let mut l = Limiter::default();
    let a = ip("192.0.2.1");
    for i in 0..BURST as usize {
        assert!(l.begin_join(a, 0), "{i}");
    }
    assert!(!l.begin_join(a, 0));
    // A wrong guess after that passes at the attempts refill (2/s), not the joins one.
    assert!(l.begin_join(a, 500));
    assert!(!l.begin_join(a, 500));
    // Install-token checks draw on the same attempts.
    assert!(!l.allow(a, 500));
}

#[test]
fn successful_joins_are_bounded_by_the_join_bucket() {
    let mut l = Limiter::default();
    let a = ip("192.0.2.1");
    for _ in 0..JOINS.burst as usize {
        assert!(l.begin_join(a, 0));
        l.join_succeeded(a);
    }
    // Attempts are all back, joins are spent: refused until the join bucket refills.
    assert!(!l.begin_join(a, 0));
    assert!(l.allow(a, 0));
    // One second refills 20 joins.
    let through = (0..100)
        .filter(|_| {
            let ok = l.begin_join(a, 1_000);
            if ok {
                l.join_succeeded(a);
            }
            ok
        })
        .count();
    assert_eq!(through, 20);
}

#[test]
fn ca_fetches_do_not_spend_the_join_budget() {
    let mut l = Limiter::default();
    let a = ip("192.0.2.1");
    for _ in 0..CA.burst as usize {
        assert!(l.allow_ca(a, 0));
    }
    assert!(!l.allow_ca(a, 0));
    assert!(l.begin_join(a, 0));
    // 40 a second.
    assert_eq!((0..100).filter(|_| l.allow_ca(a, 1_000)).count(), 40);
}

/// 1,000 hosts behind one address, each fetching the CA then joining, retrying every 2 s
/// when refused, all join within a minute; right after, wrong guesses from that address
/// get no more than the attempts burst and refill. (A guesser running at the same time
/// would spend the attempts the fleet needs: limits are per source, not per host.)
#[test]
fn a_fleet_behind_one_address_joins_and_guesses_stay_throttled() {
    let mut l = Limiter::default();
    let a = ip("198.51.100.1");
    let mut waiting: Vec<u64> = vec![0; 1000];
    let mut now = 0;
    while !waiting.is_empty() && now <= 60_000 {
        let mut still = Vec::with_capacity(waiting.len());
        for at in waiting {
            if at > now {
                still.push(at);
            } else if l.allow_ca(a, now) && l.begin_join(a, now) {
                l.join_succeeded(a);
            } else {
                still.push(now + 2_000);
            }
        }
        waiting = still;
        now += 10;
    }
    assert!(waiting.is_empty(), "{} left after a minute", waiting.len());
    let start = now;
    let mut guesses = 0u32;
    for t in (start..start + 60_000).step_by(10) {
        if l.begin_join(a, t) {
            guesses += 1;
        }
    }
    assert!(
        f64::from(guesses) <= BURST + RATE_PER_MIN + 1.0,
        "{guesses}"
    );
    assert!(f64::from(guesses) >= BURST, "{guesses}");
}

#[test]
fn a_success_never_fills_a_bucket_past_its_burst_nor_creates_a_source() {
    let mut l = Limiter::default();
    let a = ip("192.0.2.1");
    l.join_succeeded(a);
    assert!(l.is_empty());
    assert!(l.begin_join(a, 0));
    l.join_succeeded(a);
    l.join_succeeded(a);
    for _ in 0..BURST as usize {
        assert!(l.allow(a, 0));
    }
    assert!(!l.allow(a, 0));
}
