//! Every new message of the identity lifecycle (`renew` on a node's stream and on a tunnel,
//! `refresh`, `relay_renew`), sent by every role, 10x too large, malformed, repeated and never
//! finished.

use super::*;

#[test]
fn renew_on_a_nodes_stream_renews_only_that_node_and_ends_at_the_sender() {
    // Catches: signing the names a CSR asks for; renew accepted as a first message or on a
    // proxy's link; a bad CSR ending the stream or panicking auth; renewals not paced; frames
    // over the limit read whole; a half-sent frame holding the stream forever.
    let c = lifecycle::cluster("");
    let addr = c.addr();
    let node = raw::join(&c, "Node", "stream-node");
    let proxy = raw::join(&c, "Proxy", "stream-proxy");
    let user = user_identity(&c, "mallory");
    block(async {
        for (who, id) in [
            ("anonymous", None),
            ("node", Some(&node)),
            ("proxy", Some(&proxy)),
            ("user", Some(&user)),
        ] {
            let mut conn = raw::connect(&addr, id).await;
            conn.send(&raw::renew_of(&node).1).await.unwrap();
            let o = raw::outcome(&mut conn, T).await;
            assert!(
                is(&o, ErrorCode::BadParameter, "not valid as the first"),
                "{who}: {o:?}"
            );
        }
        // A proxy's link takes no `renew`: the link ends and nothing is signed.
        let mut l = raw::link(&addr, &proxy).await;
        l.send(&raw::renew_of(&proxy).1).await.unwrap();
        let o = raw::answer(&mut l, T).await;
        assert!(matches!(o, Outcome::Closed), "renew on a link: {o:?}");

        let mut s = raw::stream(&addr, &node).await;
        s.send(&Request::Renew {
            csr: "not a csr".into(),
            proof: String::new(),
        })
        .await
        .unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert!(
            is(&o, ErrorCode::BadParameter, "certificate signing request"),
            "bad CSR: {o:?}"
        );
        assert!(
            raw::beat(&mut s, 1).await,
            "the stream ended after a bad CSR"
        );
        // Attempts are paced per stream, failed or not: the next one on a stream of its own.
        // A CSR that names the admin still gets this node's certificate, as a node.
        let mut s = raw::stream(&addr, &node).await;
        let (_, csr) = new_key_and_csr("admin").unwrap();
        s.send(&Request::Renew {
            csr,
            proof: String::new(),
        })
        .await
        .unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert_eq!(raw::renewed_subject(&o), node.subject().unwrap());
        s.send(&raw::renew_of(&node).1).await.unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert!(
            is(&o, ErrorCode::RateLimited, "too soon"),
            "repeated: {o:?}"
        );
        assert!(
            raw::beat(&mut s, 2).await,
            "the stream ended after a paced renewal"
        );
        s.send_raw(&raw::frame(raw::MALFORMED)).await.unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert!(matches!(o, Outcome::Closed), "malformed frame: {o:?}");

        let mut s = raw::stream(&addr, &node).await;
        s.send_raw(&raw::too_large()).await.unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert!(matches!(o, Outcome::Closed), "too large: {o:?}");
        // Never finished: dropped after three silent 1 s intervals.
        let mut s = raw::stream(&addr, &node).await;
        s.send_raw(&raw::unfinished()).await.unwrap();
        let t = Instant::now();
        let o = raw::outcome(&mut s, T).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // Auth still serves the node.
        let mut s = raw::stream(&addr, &node).await;
        assert!(raw::beat(&mut s, 1).await);
    });
}

/// Whether a tunnel presenting `id` on `proxy` ends without a welcome or a certificate when
/// it sends a renewal of `node`.
async fn tunnel_refused(proxy: &str, id: &Identity, node: &Identity) -> Outcome {
    let Some((_m, mut ctl)) = raw::try_tunnel_raw(proxy, id).await else {
        return Outcome::Closed;
    };
    let req = raw::renew_of(node).1;
    let _ = teleport_lite::net::with_timeout(T, ctl.send(&req)).await;
    raw::outcome(&mut ctl, T).await
}

/// The answer to `req` as the first request on a new tunnel of `node`.
async fn attempt(proxy: &str, node: &Identity, req: Request) -> Outcome {
    let (_m, mut ctl) = raw::tunnel(proxy, node).await;
    ctl.send(&req).await.unwrap();
    raw::outcome(&mut ctl, T).await
}

#[test]
fn renew_and_refresh_on_a_tunnel_serve_only_that_node_and_end_at_the_sender() {
    // Catches: relaying a renewal whose proof is missing or by another key; a refresh that
    // takes another host's certificate or one of a CA the cluster never had (the proxy would
    // then judge the tunnel by a certificate of the attacker's choosing); tunnels for other
    // roles; unpaced renewals; a bad request ending the tunnel or stalling the proxy.
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let proxy = format!("127.0.0.1:{web}");
    let node = raw::join(&c, "Node", "tunnel-node");
    let other = raw::join(&c, "Node", "tunnel-other");
    let proxy_id = raw::join(&c, "Proxy", "tunnel-proxy");
    let user = user_identity(&c, "mallory");
    let admin = admin_identity(&c);
    block(async {
        for (who, id) in [("proxy", &proxy_id), ("user", &user), ("admin", &admin)] {
            let o = tunnel_refused(&proxy, id, &node).await;
            assert!(matches!(o, Outcome::Closed), "a tunnel as {who}: {o:?}");
        }
        let o = tunnel_refused(&proxy, &node, &node).await;
        assert!(
            matches!(o, Outcome::Closed),
            "renew before the hello: {o:?}"
        );

        // Renewals and refreshes are paced per tunnel whether they succeed or not, so each
        // refusal below is tried on a tunnel of its own.
        let (_, csr) = new_key_and_csr("x").unwrap();
        let foreign = proof::sign(&other.key_pem, &csr).unwrap();
        let o = attempt(
            &proxy,
            &node,
            Request::Renew {
                csr,
                proof: foreign,
            },
        )
        .await;
        assert!(
            is(&o, ErrorCode::AccessDenied, "not signed with the key"),
            "proof by another key: {o:?}"
        );
        let csr = "not a csr".to_string();
        let proved = proof::sign(&node.key_pem, &csr).unwrap();
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        ctl.send(&Request::Renew { csr, proof: proved })
            .await
            .unwrap();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(
            is(&o, ErrorCode::BadParameter, "certificate signing request"),
            "bad CSR: {o:?}"
        );
        assert!(
            raw::beat(&mut ctl, 1).await,
            "the tunnel ended after bad renewals"
        );
        drop((_m, ctl));
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        ctl.send(&raw::renew_of(&node).1).await.unwrap();
        let renewed = raw::outcome(&mut ctl, T).await;
        assert_eq!(raw::renewed_subject(&renewed), node.subject().unwrap());
        ctl.send(&raw::renew_of(&node).1).await.unwrap();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(
            is(&o, ErrorCode::RateLimited, "too soon"),
            "repeated: {o:?}"
        );

        let forged = CertAuthority::generate(CLUSTER_NAME)
            .unwrap()
            .issue_local(&node.subject().unwrap(), &Sans::default(), T)
            .unwrap()
            .1;
        for (what, cert) in [
            ("another host's", other.cert_pem.clone()),
            ("another CA's", forged),
            ("garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n".into()),
        ] {
            let o = attempt(&proxy, &node, Request::Refresh { cert }).await;
            assert!(
                is(
                    &o,
                    ErrorCode::BadParameter,
                    "not a valid certificate of this host"
                ),
                "refresh with {what} certificate: {o:?}"
            );
        }
        // The renewed certificate, shown on a tunnel opened with the old one.
        drop((_m, ctl));
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        let Outcome::Reply(Response::Renewed { tls, .. }) = renewed else {
            unreachable!()
        };
        ctl.send(&Request::Refresh { cert: tls }).await.unwrap();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(
            matches!(o, Outcome::Reply(Response::Refreshed { .. })),
            "{o:?}"
        );
        assert!(
            raw::beat(&mut ctl, 2).await,
            "the tunnel ended after refreshes"
        );
        ctl.send_raw(&raw::frame(r#"{"type":"refresh","cert":[]}"#))
            .await
            .unwrap();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(matches!(o, Outcome::Closed), "malformed refresh: {o:?}");

        drop((_m, ctl));
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        ctl.send_raw(&raw::too_large()).await.unwrap();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(matches!(o, Outcome::Closed), "too large: {o:?}");
        // Never finished: closed after three silent intervals (500 ms here).
        drop((_m, ctl));
        let (_m, mut ctl) = raw::tunnel(&proxy, &node).await;
        ctl.send_raw(&raw::unfinished()).await.unwrap();
        let t = Instant::now();
        let o = raw::outcome(&mut ctl, T).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // The proxy still serves another node's tunnel.
        let (_m, mut ctl) = raw::tunnel(&proxy, &other).await;
        assert!(raw::beat(&mut ctl, 1).await);
    });
}

#[test]
fn relay_renew_on_a_link_signs_only_what_the_node_proved_and_only_as_a_node() {
    // Catches: trusting the proxy for the host it names (no certificate, no proof, a proof by
    // the proxy's key, another host's ID); renewing a proxy's or a user's certificate relayed
    // as a node's, which would hand the relaying proxy a certificate of another role.
    let c = lifecycle::cluster("");
    let addr = c.addr();
    let node = raw::join(&c, "Node", "relayed-node");
    let other = raw::join(&c, "Node", "relayed-other");
    let p = raw::join(&c, "Proxy", "relay-proxy");
    let p2 = raw::join(&c, "Proxy", "relay-proxy-2");
    let user = user_identity(&c, "mallory");
    block(async {
        for (who, id) in [
            ("anonymous", None),
            ("node", Some(&node)),
            ("proxy", Some(&p)),
        ] {
            let mut conn = raw::connect(&addr, id).await;
            conn.send(&raw::relay_of(1, &node)).await.unwrap();
            let o = raw::outcome(&mut conn, T).await;
            assert!(
                is(&o, ErrorCode::BadParameter, "not valid as the first"),
                "{who}: {o:?}"
            );
        }
        let mut s = raw::stream(&addr, &node).await;
        s.send(&raw::relay_of(1, &node)).await.unwrap();
        let o = raw::outcome(&mut s, T).await;
        assert!(
            matches!(o, Outcome::Closed),
            "relay_renew on a node's stream: {o:?}"
        );

        let mut l = raw::link(&addr, &p).await;
        let with = |n: u64, host: &Identity, cert: &Identity, key: &Identity| {
            let (_, csr) = new_key_and_csr("x").unwrap();
            let proof = proof::sign(&key.key_pem, &csr).unwrap();
            Request::RelayRenew {
                id: n,
                host_id: raw::host_id(host),
                csr,
                cert: cert.cert_pem.clone(),
                proof,
            }
        };
        let bare = Request::RelayRenew {
            id: 1,
            host_id: raw::host_id(&node),
            csr: new_key_and_csr("x").unwrap().1,
            cert: String::new(),
            proof: String::new(),
        };
        let cases = [
            (bare, "no certificate came with it"),
            (with(2, &node, &node, &p), "not signed with the key"),
            (
                with(3, &other, &node, &node),
                "not a node certificate of this host",
            ),
            (
                with(4, &p2, &p2, &p2),
                "not a node certificate of this host",
            ),
            (
                with(5, &user, &user, &user),
                "not a node certificate of this host",
            ),
        ];
        for (n, (req, says)) in (1u64..).zip(cases) {
            l.send(&req).await.unwrap();
            let o = raw::relay_answer(&mut l, n).await;
            assert!(is(&o, ErrorCode::AccessDenied, says), "case {n}: {o:?}");
        }
        l.send(&raw::relay_of(6, &node)).await.unwrap();
        let o = raw::relay_answer(&mut l, 6).await;
        assert_eq!(raw::renewed_subject(&o), node.subject().unwrap());
        l.send(&raw::own_relay(7, &p)).await.unwrap();
        let o = raw::relay_answer(&mut l, 7).await;
        assert_eq!(raw::renewed_subject(&o), p.subject().unwrap());
        assert!(
            raw::beat(&mut l, 1).await,
            "the link ended after refused renewals"
        );
        l.send_raw(&raw::frame(
            r#"{"type":"relay_renew","hostID":"x","csr":"y"}"#,
        ))
        .await
        .unwrap();
        let o = raw::answer(&mut l, T).await;
        assert!(matches!(o, Outcome::Closed), "malformed relay_renew: {o:?}");

        let mut l = raw::link(&addr, &p).await;
        l.send_raw(&raw::too_large()).await.unwrap();
        let o = raw::answer(&mut l, T).await;
        assert!(matches!(o, Outcome::Closed), "too large: {o:?}");
        let mut l = raw::link(&addr, &p).await;
        l.send_raw(&raw::unfinished()).await.unwrap();
        let t = Instant::now();
        let o = raw::answer(&mut l, T).await;
        assert!(matches!(o, Outcome::Closed), "unfinished: {o:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let mut l = raw::link(&addr, &p2).await;
        assert!(raw::beat(&mut l, 1).await, "auth stopped serving links");
    });
}
