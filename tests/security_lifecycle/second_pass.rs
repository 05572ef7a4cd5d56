//! Second red-team pass on the lifecycle fixes: what a proxy identity (a compromised proxy
//! host, whose identity file stays current through rotations, or a rogue proxy joined with a
//! proxy token) can still do with the renewal requests and answers it relays (`mitm::Mitm`),
//! and what the fixes left to a race.
//!
//! | attack | today | fix named in the test |
//! |---|---|---|
//! | an older `ca_proof` and CA set swapped into a later renewal answer | the node trusts the retired CA again | sign the set with the certificate |
//! | a kept renewal request replayed as the host's slot reopens | the node never renews, on any path | pace per (host, path) |
//! | renewals asked for at every beat and never answered | the node skips every renewal the honest proxy asks for | no renewal over a failed tunnel |
//! | a node renewed in the second the final `standby` began | it keeps trusting the retired CA | `issued <= changed` |
//! | a symlink planted at `proxy-denials.json` | replaced, never written through (holds) | |

#[path = "second_pass/mitm.rs"]
mod mitm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mitm::{acceptor, link, minted_proxy, node_on_mitm, Mitm, Vouched};
use teleport_lite::pki;

use super::*;

/// Whether `cert_pem` was issued by the CA `ca_pem` (each CA of a cluster has its own name).
fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let cert = pki::certs_from_pem(cert_pem).unwrap().remove(0);
    let ca = pki::certs_from_pem(ca_pem).unwrap().remove(0);
    pki::facts_of(&cert).unwrap().issuer == pki::subject_name_of(&ca).unwrap()
}

fn not_after(cert_pem: &str) -> i64 {
    let der = pki::certs_from_pem(cert_pem).unwrap().remove(0);
    pki::facts_of(&der).unwrap().not_after
}

fn manual(c: &Cluster, phase: &str) {
    let out = rotate(c, phase);
    assert!(out.status.success(), "rotate {phase}: {}", text(&out));
}

#[test]
fn a_proxy_cannot_make_a_node_trust_the_retired_ca_again_with_an_older_signed_ca_set() {
    // WAS VULNERABLE (fixed). `ca_proof` signs the CA set alone: nothing ties it to the renewal it came
    // with or to a time. A proxy keeps the answer it relayed during a rotation (both CAs,
    // signed by both), and after the final standby puts that set and its signatures into a
    // later renewal answer: the node trusts the new CA, which signed it, so it accepts, and
    // trusts the retired CA again. Whoever holds the retired CA's key (it leaked: that is why
    // the operator rotated) then poses as a proxy to the node and dials its local services.
    // The same replay undoes a rollback (the node trusts the dropped CA again) and withholds a
    // newer CA during `init`. Fix: auth signs the CA set together with the certificate it
    // issues (`sign_ca_list(key, pems, tls)`: the context, each PEM, then the issued
    // certificate), and `check_vouched` verifies it over (set, the certificate it came with):
    // a set signed for another renewal no longer verifies.
    let c = lifecycle::cluster("  host_cert_ttl: 20s\n");
    let mut p = c.proxy_config("owned-proxy", "127.0.0.1", "");
    let p_addr = p.addr();
    c.start_proxy(&mut p);
    let leaked = raw::stored_ca(&c);
    let mitm = Mitm::start(c.addr(), lifecycle::proxy_identity_path(&p), echo_server());
    let mut n = node_on_mitm(&c, "retrusted", &p_addr, &mitm);
    let id_path = node_identity_path(&n);
    let stored = || lifecycle::read_identity(&id_path);

    manual(&c, "init");
    mitm.renewal();
    let during: Vouched = mitm.sh.answers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(during.0.len(), 2, "the CA set during init");
    let new_ca = during
        .0
        .iter()
        .find(|p| **p != leaked.cert_pem)
        .unwrap()
        .clone();
    manual(&c, "update_clients");
    mitm.renewal();
    manual(&c, "update_servers");
    // The proxy host's identity follows the phase (the relays below use it).
    let proxy_id = lifecycle::proxy_identity_path(&p);
    wait_for(T, "the proxy's certificate of the new CA", || {
        issued_by(&lifecycle::read_identity(&proxy_id).cert_pem, &new_ca).then_some(())
    });
    manual(&c, "standby");
    mitm.renewal();
    wait_for(T, "the node to trust the new CA alone", || {
        (stored().ca_pems == [new_ca.clone()]).then_some(())
    });

    // The next renewal (past the host's pacing gap: the node retries until then).
    *mitm.sh.swap.lock().unwrap() = Some(during);
    let before = mitm.renewal();
    mitm.wait_event(before, &["after the swapped answer"]);
    let retrusts = stored().ca_pems.contains(&leaked.cert_pem);

    let before = mitm.events().len();
    let host = raw::host_id(&lifecycle::read_identity(&proxy_id));
    let impostor = minted_proxy(&leaked, &host);
    let roots = [leaked.cert_pem.clone(), new_ca.clone()];
    *mitm.sh.impostor.lock().unwrap() = Some(acceptor(&impostor, &roots));
    let next = mitm.wait_event(
        before,
        &["handshake refused (impostor)", "tunnel hello (impostor)"],
    );
    let dialled = if next.starts_with("tunnel hello") {
        mitm.wait_event(before, &["dialled", "dial refused", "could not open"])
    } else {
        String::new()
    };
    assert!(
        !retrusts && next.starts_with("handshake refused"),
        "after the rotation's standby, one renewal relayed by a proxy with the CA set it kept \
         from init made the node trust the retired CA again (node-identity.pem holds it: \
         {retrusts}); a server with a certificate minted with the retired CA's key got: \
         {next:?}; {dialled:?}"
    );
    lifecycle::assert_running(n.proc());
    drop(p);
}

#[test]
fn a_proxy_replaying_a_renewal_it_kept_cannot_keep_the_node_from_renewing_elsewhere() {
    // WAS VULNERABLE (fixed). Renewals are paced per host on auth, whatever the path: a relayed renewal
    // takes the host's slot once its certificate and proof check out, and nothing makes a
    // proof fresh or single-use. A proxy keeps one renewal request a node sent through it
    // (it answers "retry shortly") and replays it over its link every second, just as the
    // slot reopens: auth signs it again and again (for a key the proxy lacks) and refuses
    // every renewal the node sends through the honest proxy as too soon, until the node's
    // certificate expires and it must join again. Fix: pace a renewal by the path it comes
    // by: key `AuthState::renewed` by (host ID, relaying proxy's host ID, or "" for the host's
    // own stream), so a proxy can delay only renewals that go through it (a host gets at most
    // one renewal per gap per path). Worth adding: refuse, without taking a slot, a relayed
    // CSR whose key auth already certified for that host (a replay signs nothing).
    let c = lifecycle::cluster("  host_cert_ttl: 12s\n");
    let mut p = c.proxy_config("honest-proxy", "127.0.0.1", "");
    let p_addr = p.addr();
    c.start_proxy(&mut p);
    let dir = tempfile::tempdir().unwrap();
    let rogue = dir.path().join("proxy-identity.pem");
    raw::join(&c, "Proxy", "rogue-proxy").save(&rogue).unwrap();
    let mitm = Mitm::start(c.addr(), rogue.clone(), echo_server());
    // Its link keeps its own certificate current (the node's outlives the one it joined with).
    mitm.register();
    mitm.sh.withhold.store(true, Ordering::SeqCst);
    mitm.sh.ask.store(true, Ordering::SeqCst);
    let mut n = node_on_mitm(&c, "starved", &p_addr, &mitm);
    mitm.wait_event(0, &["kept a renewal"]);
    let (csr, proof, cert) = mitm.sh.kept.lock().unwrap().clone().unwrap();
    let host_id = raw::host_id(&lifecycle::read_identity(&node_identity_path(&n)));
    let expires = not_after(&cert);

    n.proc().stop();
    n.start_via_proxy(&p_addr, &c.token("node", "30m"), Some(&c.pin()));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let auth = c.addr();
    let replays = std::thread::spawn(move || {
        block(async move {
            let req = |n| Request::RelayRenew {
                id: n,
                host_id: host_id.clone(),
                csr: csr.clone(),
                cert: cert.clone(),
                proof: proof.clone(),
            };
            let (mut sent, mut taken) = (0u64, 0usize);
            let mut l = None;
            while !flag.load(Ordering::SeqCst) {
                let Some(link) = l.as_mut() else {
                    l = link(&auth, &Identity::load(&rogue).unwrap()).await;
                    if l.is_none() {
                        smol::Timer::after(Duration::from_millis(100)).await;
                    }
                    continue;
                };
                // Around each second's turn, when the host's slot reopens.
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_millis() as u64;
                if (80..950).contains(&ms) {
                    smol::Timer::after(Duration::from_millis(950 - ms)).await;
                    continue;
                }
                for _ in 0..4 {
                    sent += 1;
                    let _ = link.send(&req(sent)).await;
                }
                let got = raw::relay_answers(link, 4).await;
                taken += got.values().filter(|o| o.renewed()).count();
                if got.len() < 4 {
                    l = None;
                }
            }
            taken
        })
    });
    let renewed = wait_for(
        Duration::from_secs((expires - now_unix()).max(0) as u64 + 4),
        "the node to renew or its certificate to expire",
        || {
            let id = lifecycle::read_identity(&node_identity_path(&n));
            let now_expires = not_after(&id.cert_pem);
            (now_expires > expires || now_unix() > expires + 2).then_some(now_expires > expires)
        },
    );
    stop.store(true, Ordering::SeqCst);
    let taken = replays.join().unwrap();
    assert!(
        renewed,
        "the node could not renew over the honest proxy before its certificate expired: a \
         proxy replayed one renewal request the node once sent through it, auth signed it \
         {taken} times and refused the node's own renewals as too soon; the node logged:\n{}",
        n.proc().log_text()
    );
    drop(p);
}

#[test]
fn a_proxy_that_never_answers_renewals_cannot_keep_the_node_from_renewing_over_another() {
    // WAS VULNERABLE (fixed) (agent). A node renews over one tunnel at a time (`Renewer::busy`), and
    // over whichever tunnel's proxy asks first (`renew` in a heartbeat answer). A proxy in
    // the node's set (a compromised proxy, or a rogue one joined with a proxy token) asks for
    // a renewal at every beat and never answers: the node waits 10 s (`ANSWER_TIMEOUT`),
    // then asks again at once, so every renewal the honest proxy asks for finds another
    // under way and is skipped without a word, until the certificate expires and the node
    // must join again. One such proxy does it to every node behind the load balancer. Fix
    // (agent/renew.rs): `Renewer::renew_over` remembers the path (`via`) of the last renewal
    // that failed or went unanswered (not one answered `rate_limited`) and, for a minute or
    // while another tunnel is held, renews over any other path but that one, whatever its
    // proxy asks.
    let c = lifecycle::cluster("  host_cert_ttl: 18s\n");
    let lb_port = free_port();
    let mut p = c.proxy_config("honest-proxy", &format!("127.0.0.1:{lb_port}"), "");
    let p_addr = p.addr();
    c.start_proxy(&mut p);
    let dir = tempfile::tempdir().unwrap();
    let rogue = dir.path().join("proxy-identity.pem");
    raw::join(&c, "Proxy", "rogue-proxy").save(&rogue).unwrap();
    let mitm = Mitm::start(c.addr(), rogue, echo_server());
    mitm.sh.hold.store(true, Ordering::SeqCst);
    mitm.sh.ask.store(true, Ordering::SeqCst);
    mitm.register();
    let lb = HaProxy::start_on(lb_port, &[p.port, mitm.port], "roundrobin");
    lb.wait_up(2);
    let pin = c.pin();
    let mut n = Node::new("skipped");
    n.start_via_proxy(&p_addr, &c.token("node", "30m"), Some(&pin));
    c.wait_tunnels("skipped", 1, T);
    let id_path = node_identity_path(&n);
    let expires = not_after(&lifecycle::read_identity(&id_path).cert_pem);
    n.proc().stop();
    n.start_via_proxy(&lb.addr(), &c.token("node", "30m"), Some(&pin));
    mitm.wait_event(0, &["held a renewal"]);
    let renewed = wait_for(
        Duration::from_secs((expires - now_unix()).max(0) as u64 + 4),
        "the node to renew or its certificate to expire",
        || {
            let now_expires = not_after(&lifecycle::read_identity(&id_path).cert_pem);
            (now_expires > expires || now_unix() > expires + 2).then_some(now_expires > expires)
        },
    );
    let held = mitm
        .events()
        .iter()
        .filter(|e| *e == "held a renewal")
        .count();
    assert!(
        renewed,
        "the node did not renew before its certificate expired, though it held a tunnel to \
         an honest proxy: a proxy that asked for a renewal at every beat held {held} renewal \
         requests unanswered; the node logged:\n{}",
        n.proc().log_text()
    );
    drop(p);
}

/// When auth signed a certificate (Unix seconds).
fn issued(cert_pem: &str) -> i64 {
    let der = pki::certs_from_pem(cert_pem).unwrap().remove(0);
    pki::facts_of(&der).unwrap().issued
}

#[test]
fn a_node_that_renewed_in_the_second_a_rotation_ended_still_drops_the_retired_ca() {
    // WAS VULNERABLE (fixed) (a race, no attacker needed). Auth asks a host to renew after a phase change
    // when its certificate was issued *before* the change, in whole seconds (`must_renew`:
    // `cert.issued < changed`). A node that renewed for `update_servers` in the very second
    // the final `standby` began (an operator or script running the last phases back to back)
    // is never asked again: it keeps trusting the retired CA until its next renewal, two
    // thirds of `host_cert_ttl` later (16 h by default), and whoever holds that CA's key
    // poses as auth or a proxy to it meanwhile. The same tie skips a node's renewal for
    // `init` (it does not learn the new CA until the next phase). Fix: compare with
    // `cert.issued <= changed` in `rotation::must_renew` (and `l <= changed` in
    // `host_may_renew`, so that renewal is not refused as too soon), or keep `changed` in
    // milliseconds.
    let c = lifecycle::cluster("");
    let (mut n, _) = lifecycle::direct_node(&c, "same-second", &lifecycle::diag_addr());
    c.wait_node("same-second", T);
    let path = node_identity_path(&n);
    let stored = || lifecycle::read_identity(&path);
    // The second after the one `cert` was issued in: a phase beginning then asks the node to
    // renew.
    let next_second = |cert: &str| {
        let at = issued(cert);
        wait_for(T, "the next second", || (now_unix() > at).then_some(()));
    };
    let renewed = |phase: &str, before: &str| {
        wait_for(T, &format!("the node to renew for {phase}"), || {
            Some(stored().cert_pem).filter(|c| c != before)
        })
    };
    for _ in 0..5 {
        let old = raw::stored_ca(&c).cert_pem;
        let mut cert = stored().cert_pem;
        for phase in ["init", "update_clients", "update_servers"] {
            next_second(&cert);
            manual(&c, phase);
            cert = renewed(phase, &cert);
        }
        let second = issued(&cert);
        let before = now_unix();
        manual(&c, "standby");
        let tie = before == second && now_unix() == second;
        let new_ca = raw::stored_ca(&c).cert_pem;
        let dropped = || (stored().ca_pems == [new_ca.clone()]).then_some(());
        if !tie {
            // The standby came a second later: the usual path, asked again at once.
            wait_for(T, "the node to drop the retired CA", dropped);
            continue;
        }
        let start = Instant::now();
        while dropped().is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            dropped().is_some(),
            "the node renewed for update_servers in the second the final standby began \
             ({second}); 5 s later (heartbeats every second) node-identity.pem still trusts \
             the retired CA: {}",
            stored().ca_pems.contains(&old)
        );
        lifecycle::assert_running(n.proc());
        return;
    }
    panic!("the standby never began in the second of the node's last renewal");
}

#[test]
fn a_proxy_keeps_its_denials_private_and_never_writes_them_through_a_planted_symlink() {
    // Holds today; catches a `save_denials` that writes in place (`fs::write`, following a
    // symlink planted at `proxy-denials.json` onto a file elsewhere) or with the default mode
    // (0644: every local user reads who is locked and why). Reading the file at start follows
    // a symlink and has no size cap, but only the data_dir's owner (0700) can plant one there,
    // and what the proxy writes is bounded by the frames auth pushes.
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start_with_proxy(false, free_port());
    let file = c.path().join("auth/proxy-denials.json");
    wait_for(T, "the proxy to keep its denials on disk", || {
        file.exists().then_some(())
    });
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("not-the-proxys");
    fs::write(&target, "untouched").unwrap();
    fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    c.tctl_ok(&["lock", "--user=mallory", "--message=planted"]);
    wait_for(T, "the lock on disk", || {
        let text = fs::read_to_string(&file).ok()?;
        text.contains("mallory").then_some(())
    });
    let meta = fs::symlink_metadata(&file).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the proxy wrote its denials through the symlink planted at {}",
        file.display()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "proxy-denials.json is mode {mode:o}");
}
