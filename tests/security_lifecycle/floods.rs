//! Renewal, refresh and relayed-renewal floods: what auth or a proxy signs, fsyncs and checks
//! for one host.

use super::*;

#[test]
fn renewal_floods_sign_at_most_once_per_pacing_gap_per_host_whatever_the_connection() {
    // WAS VULNERABLE (fixed). Auth paces renewals per connection only (rotation::may_renew_again in
    // streams.rs and proxy/control.rs), and not at all on a proxy's link: a proxy identity
    // makes auth sign (and fsync a cert.issued event) for itself 64 at a time, replays one
    // relayed node renewal as often as it likes, and a node identity gets one renewal per
    // new stream. Fix: pace per host ID on auth (a map host -> last renewal in AuthState,
    // checked in renew::sign before signing, answered RateLimited with TOO_SOON).
    let c = lifecycle::cluster("");
    let addr = c.addr();
    let node = raw::join(&c, "Node", "flood-node");
    let p = raw::join(&c, "Proxy", "flood-proxy");
    let (own, replayed, reconnected) = block(async {
        let mut l = raw::link(&addr, &p).await;
        for n in 1..=64 {
            l.send(&raw::own_relay(n, &p)).await.unwrap();
        }
        let answers = raw::relay_answers(&mut l, 64).await;
        let own = answers.values().filter(|o| o.renewed()).count();
        let Request::RelayRenew {
            host_id,
            csr,
            cert,
            proof,
            ..
        } = raw::relay_of(0, &node)
        else {
            unreachable!()
        };
        for n in 100..132 {
            let again = Request::RelayRenew {
                id: n,
                host_id: host_id.clone(),
                csr: csr.clone(),
                cert: cert.clone(),
                proof: proof.clone(),
            };
            l.send(&again).await.unwrap();
        }
        let answers = raw::relay_answers(&mut l, 32).await;
        let replayed = answers.values().filter(|o| o.renewed()).count();
        let mut reconnected = 0;
        for _ in 0..16 {
            let mut s = raw::stream(&addr, &node).await;
            s.send(&raw::renew_of(&node).1).await.unwrap();
            reconnected += usize::from(raw::outcome(&mut s, T).await.renewed());
        }
        (own, replayed, reconnected)
    });
    let issued = lifecycle::events(&lifecycle::audit(&c), "cert.issued").len();
    assert!(
        own <= 2 && replayed <= 1 && reconnected <= 2,
        "within seconds (pacing allows one renewal per host per 10 s) auth signed {own} of 64 \
         renewals a proxy asked for itself, {replayed} of 32 replays of one relayed node \
         renewal, and {reconnected} of 16 renewals on new streams of one node; each was also \
         an fsynced audit event ({issued} cert.issued events)"
    );
}

#[test]
fn refresh_and_renewal_floods_on_a_tunnel_are_paced_like_heartbeat_floods() {
    // WAS VULNERABLE (fixed) (cost, not trust). proxy/control.rs paces only renewals that succeed, and
    // refreshes not at all: one tunnel gets a thousand refreshes verified (a chain check
    // each) and hundreds of failed renewals relayed to auth (a chain and a proof check there
    // each) per second, where a heartbeat flood is cut off after 20 early beats. Fix: in
    // control::run, take every `renew` and `refresh` through one pacer (at most one per
    // rotation::may_renew_again gap, answered RateLimited otherwise; a refresh only with a
    // certificate other than the one the tunnel is judged by), set the pacing time on every
    // attempt rather than on success, and close the tunnel after MAX_EARLY_BEATS answers in
    // a row that were rate limited, as proto::pace does for beats.
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let proxy = format!("127.0.0.1:{web}");
    let node = raw::join(&c, "Node", "flooding-node");
    let (refreshed, relayed) = block(async {
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        let refresh = Request::Refresh {
            cert: node.cert_pem.clone(),
        };
        let batch: Vec<u8> = (0..200).flat_map(|_| encode(&refresh)).collect();
        ctl.send_raw(&batch).await.unwrap();
        let mut refreshed = 0;
        for _ in 0..200 {
            match raw::outcome(&mut ctl, T).await {
                Outcome::Reply(Response::Refreshed { .. }) => refreshed += 1,
                Outcome::Reply(_) => {}
                _ => break,
            }
        }
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        let (_, csr) = new_key_and_csr("x").unwrap();
        let bad = Request::Renew {
            csr,
            proof: proof::sign(&node.key_pem, "another csr").unwrap(),
        };
        let batch: Vec<u8> = (0..100).flat_map(|_| encode(&bad)).collect();
        ctl.send_raw(&batch).await.unwrap();
        let mut relayed = 0;
        for _ in 0..100 {
            let o = raw::outcome(&mut ctl, T).await;
            if !matches!(o, Outcome::Reply(_)) {
                break;
            }
            relayed += usize::from(o.message().contains("the renewal of host"));
        }
        (refreshed, relayed)
    });
    assert!(
        refreshed <= 2 && relayed <= 2,
        "one tunnel had {refreshed} of 200 back-to-back refreshes verified and {relayed} of \
         100 back-to-back bad renewals relayed to auth and checked there"
    );
}
