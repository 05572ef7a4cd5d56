//! Locks and removals: a locked or removed host, proxy or user on every path it could take.

use super::*;

#[test]
fn a_locked_or_removed_proxy_identity_can_neither_check_tokens_nor_relay_joins() {
    // WAS VULNERABLE (fixed). server.rs serves `check_token` and `register` to any Proxy certificate
    // without renew::refusal: a locked (or removed) proxy's identity still tests tokens and
    // relays joins, naming any remote_addr (so it also picks the rate-limit bucket). Fix: in
    // handle_conn, answer both with renew::refusal(&state, &s.host_id) when it is Some, as
    // ProxyHello already is.
    let c = lifecycle::cluster("");
    let locked = raw::join(&c, "Proxy", "locked-proxy");
    let removed = raw::join(&c, "Proxy", "removed-proxy");
    let token = c.token("node", "30m");
    let check = |remote: &str| Request::CheckToken {
        version: PROTOCOL_VERSION,
        token: Token::new(token.clone()),
        role: "node".into(),
        remote_addr: remote.into(),
    };
    let ok = wire::ask_auth(&c.addr(), &check("203.0.113.7"), Some(&locked));
    assert!(matches!(ok, Response::TokenOk), "before the lock: {ok:?}");
    let id = raw::host_id(&locked);
    c.tctl_ok(&[
        "lock",
        &format!("--server-id={id}"),
        "--message=stolen proxy disk",
    ]);
    c.tctl_ok(&["nodes", "rm", &raw::host_id(&removed)]);
    let mut escaped = Vec::new();
    for (who, p, says) in [
        ("locked", &locked, "stolen proxy disk"),
        ("removed", &removed, "was removed"),
    ] {
        let link = wire::ask_auth(&c.addr(), &raw::proxy_hello(), Some(p));
        assert!(
            matches!(&link, Response::Error { message, .. } if message.contains(says)),
            "the {who} proxy's link: {link:?}"
        );
        let checked = wire::ask_auth(&c.addr(), &check("203.0.113.8"), Some(p));
        let req = raw::register(&token, &format!("via-{who}"), "198.51.100.9");
        let joined = wire::ask_auth(&c.addr(), &Request::Register(req), Some(p));
        for (what, r) in [("check_token", checked), ("register", joined)] {
            if !matches!(&r, Response::Error { message, .. } if message.contains(says)) {
                escaped.push(format!("{who} proxy, {what}: {}", short(&r)));
            }
        }
    }
    assert!(
        escaped.is_empty(),
        "locked/removed proxy identities were still served: {escaped:#?}"
    );
}

/// A dial of `node` by `user` through `proxy`: the proxy's first answer.
async fn dial_as(proxy: &str, user: &Identity, node: &str) -> Outcome {
    let mut conn = raw::to_proxy(proxy, user, b"teleport-transport").await;
    conn.send(&raw::dial(node, "127.0.0.1:22")).await.unwrap();
    raw::outcome(&mut conn, T).await
}

/// Whether a host presenting `id` is refused with `says` on auth's stream, on a tunnel to
/// `proxy`, and for a renewal relayed by the proxy link `l`; what got through otherwise.
async fn paths_open(
    addr: &str,
    proxy: &str,
    l: &mut raw::Conn,
    id: &Identity,
    says: &str,
) -> Vec<String> {
    let mut open = Vec::new();
    let mut s = raw::connect(addr, Some(id)).await;
    let name = id.subject().unwrap().node_name;
    s.send(&wire::hello(&name, Default::default()))
        .await
        .unwrap();
    let o = raw::outcome(&mut s, T).await;
    if !o.message().contains(says) {
        open.push(format!("{name}: stream to auth: {o:?}"));
    }
    let (_m, mut ctl) = raw::tunnel_raw(proxy, id).await;
    let hello = Request::TunnelHello(teleport_lite::proto::StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name.clone(),
        server_version: "x".into(),
        labels: Default::default(),
        public_addr: String::new(),
    });
    ctl.send(&hello).await.unwrap();
    let o = raw::outcome(&mut ctl, T).await;
    if !o.message().contains(says) {
        open.push(format!("{name}: tunnel: {o:?}"));
    }
    l.send(&raw::relay_of(7, id)).await.unwrap();
    let o = raw::relay_answer(l, 7).await;
    if !o.message().contains(says) {
        open.push(format!("{name}: relayed renewal: {}", brief(&o)));
    }
    open
}

/// Relays a beat of `id` over the link `l` and waits until auth has handled it.
async fn relay_beat(l: &mut raw::Conn, id: &Identity, seq: u64) {
    let s = id.subject().unwrap();
    l.send(&Request::Relay(teleport_lite::proto::RelayedBeat {
        host_id: s.host_id,
        node_name: s.node_name,
        server_version: "x".into(),
        labels: Default::default(),
    }))
    .await
    .unwrap();
    assert!(raw::beat(l, seq).await, "the link ended");
}

#[test]
fn a_locked_or_removed_host_and_a_locked_user_are_refused_on_every_path() {
    // Catches: a lock checked on one path only (auth's stream but not tunnels, or not
    // relayed renewals); beats relayed by a proxy that keep a locked host listed; a removal
    // undone by unlocking; a user lock that a newly signed identity of the user escapes.
    let web = free_port();
    let c = Cluster::start_with_proxy(false, web);
    let (addr, proxy) = (c.addr(), format!("127.0.0.1:{web}"));
    let locked = raw::join(&c, "Node", "locked-node");
    let removed = raw::join(&c, "Node", "removed-node");
    let p = raw::join(&c, "Proxy", "relaying-proxy");
    let mallory = user_identity(&c, "mallory");
    let mut l = block(raw::link(&addr, &p));
    // Before: relayed beats list both nodes, and mallory's dial reaches the tunnel lookup.
    block(async {
        relay_beat(&mut l, &locked, 1).await;
        relay_beat(&mut l, &removed, 2).await;
    });
    assert!(lifecycle::is_listed(&c, "locked-node") && lifecycle::is_listed(&c, "removed-node"));
    let o = block(dial_as(&proxy, &mallory, "nowhere"));
    assert!(is(&o, ErrorCode::NotFound, "no tunnel"), "{o:?}");

    let lock = |target: &str| {
        c.tctl_ok(&["lock", target, "--message=incident 42"]);
    };
    lock(&format!("--server-id={}", raw::host_id(&locked)));
    lock("--user=mallory");
    c.tctl_ok(&["nodes", "rm", &raw::host_id(&removed)]);
    wait_for(T, "the proxy to hear of mallory's lock", || {
        block(dial_as(&proxy, &mallory, "nowhere"))
            .message()
            .contains("incident 42")
            .then_some(())
    });
    let mut open = block(async {
        let mut open = paths_open(&addr, &proxy, &mut l, &locked, "incident 42").await;
        open.extend(paths_open(&addr, &proxy, &mut l, &removed, "was removed").await);
        relay_beat(&mut l, &locked, 3).await;
        relay_beat(&mut l, &removed, 4).await;
        open
    });
    for name in ["locked-node", "removed-node"] {
        if lifecycle::is_listed(&c, name) {
            open.push(format!("{name} is listed after beats relayed for it"));
        }
    }
    let again = user_identity(&c, "mallory");
    let o = block(dial_as(&proxy, &again, "nowhere"));
    if !o.message().contains("incident 42") {
        open.push(format!("a new identity of mallory dialled: {o:?}"));
    }
    // A removal is no lock: unlocking the host changes nothing.
    let _ = c.tctl(&["unlock", &format!("--server-id={}", raw::host_id(&removed))]);
    let still = block(paths_open(&addr, &proxy, &mut l, &removed, "was removed"));
    open.extend(still.into_iter().map(|s| format!("after an unlock: {s}")));
    assert!(open.is_empty(), "paths left open: {open:#?}");
}

#[test]
fn a_proxy_restarted_while_auth_is_down_still_refuses_locked_users_and_removed_hosts() {
    // WAS VULNERABLE (fixed). A proxy holds auth's denials (locks, removals) in memory only and starts
    // with none (proxy::ProxyServer::start, `denied: HashMap::new()`): restarted while auth
    // is unreachable (an outage, or an attacker cutting the proxy off from auth), it lets a
    // locked user dial and a removed host open a tunnel until its link comes back. Fix: store
    // each `denied` push (and `trust`) atomically in the proxy's data_dir and load it at start
    // (control::denials_changed writes, ProxyServer::start reads), so a restart keeps the last
    // known denials.
    let mut c = lifecycle::cluster("");
    let mut p = c.proxy_config("restarting-proxy", "127.0.0.1:1", "");
    c.start_proxy(&mut p);
    let proxy = p.addr();
    let mallory = user_identity(&c, "mallory");
    let removed = raw::join(&c, "Node", "removed-node");
    c.tctl_ok(&["nodes", "rm", &raw::host_id(&removed)]);
    c.tctl_ok(&["lock", "--user=mallory", "--message=incident 43"]);
    wait_for(T, "the proxy to hear of mallory's lock", || {
        block(dial_as(&proxy, &mallory, "nowhere"))
            .message()
            .contains("incident 43")
            .then_some(())
    });
    c.auth().kill9();
    p.proc().stop();
    p.start();
    wait_for(T, "the restarted proxy to listen", || {
        std::net::TcpStream::connect(&proxy).ok()
    });
    let dial = block(dial_as(&proxy, &mallory, "nowhere"));
    let tunnel = block(async {
        let (_m, mut ctl) = raw::tunnel_raw(&proxy, &removed).await;
        let hello = Request::TunnelHello(teleport_lite::proto::StreamHello {
            version: PROTOCOL_VERSION,
            node_name: "removed-node".into(),
            server_version: "x".into(),
            labels: Default::default(),
            public_addr: String::new(),
        });
        ctl.send(&hello).await.unwrap();
        raw::outcome(&mut ctl, T).await
    });
    assert!(
        dial.message().contains("incident 43") && tunnel.message().contains("was removed"),
        "restarted while auth was down, the proxy answered the locked user's dial with {dial:?} \
         and the removed host's tunnel with {}",
        match &tunnel {
            Outcome::Reply(Response::TunnelWelcome { .. }) => "a welcome".to_string(),
            other => format!("{other:?}"),
        }
    );
}
