//! The user identity of `tctl auth sign --user`: what auth writes into it, that it dials nodes
//! through a proxy and does nothing else (admin commands, heartbeats, proxy links, token
//! checks, tunnels), and that it stops working when it expires.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::access::{fails_with, Access};
use common::wire::{self, cert_facts};
use common::*;
use teleport_lite::net::{self, Framed};
use teleport_lite::pki::identity::Identity;
use teleport_lite::proto::{
    ErrorCode, ProxyHello, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};

const T: Duration = Duration::from_secs(20);

fn denied(r: &Response, needle: &str) {
    match r {
        Response::Error { code, message } => {
            assert_eq!(*code, ErrorCode::AccessDenied, "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// One request on the proxy's ALPN `alpn`, presenting `id`; what came back, or the error.
fn ask_proxy(
    proxy: &str,
    id: &Identity,
    alpn: &[u8],
    req: Request,
) -> Result<Option<Response>, String> {
    smol::block_on(async {
        let cfg = wire::insecure_with_identity_alpn(id, &[alpn]);
        let tls = net::connect_tls_as(proxy, cfg, "proxy.teleport.cluster.local")
            .await
            .map_err(|e| e.to_string())?;
        let mut f = Framed::new(tls, MAX_RESPONSE_FRAME);
        f.send(&req).await.map_err(|e| e.to_string())?;
        match net::with_timeout(T, f.recv::<Response>()).await {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err("no answer in time".into()),
        }
    })
}

#[test]
fn a_user_identity_dials_nodes_and_nothing_else() {
    let (port, _h) = echo_once();
    let (other, _h2) = echo_once();
    let mut a = Access::start("web-1", &[port]);
    let path = a.sign("alice", "8h");

    // What auth wrote: 0600, role User, the name the admin chose, client usage only, no names.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let id = Identity::load(&path).unwrap();
    let facts = cert_facts(&id.cert_pem);
    assert_eq!(facts.subject.role, "User");
    assert_eq!(facts.subject.host_id, "alice");
    assert_eq!(facts.subject.cluster, CLUSTER_NAME);
    assert!(!facts.server_auth && facts.dns.is_empty());
    let life = id.not_after().unwrap() - teleport_lite::clock::now_unix();
    assert!((8 * 3600 - 60..=8 * 3600).contains(&life), "{life}");

    // It dials (from a directory with no config at all).
    let out = a.dial_as(&path, "web-1", &format!("127.0.0.1:{port}"), b"ping");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"ping");
    a.c.auth().wait_log("user \"alice\" at 127.0.0.1", T);

    // But only the ports of proxy_service.user_dial_ports: not every service on the node's
    // loopback. An admin may dial that port; a malformed address is refused for everyone.
    let out = a.dial_as(&path, "web-1", &format!("127.0.0.1:{other}"), b"ping");
    fails_with(
        &out,
        &format!("may dial only port(s) [{port}] on a node, not {other}"),
    );
    fails_with(&out, "user_dial_ports");
    let out =
        a.c.dial(&a.proxy, "web-1", &format!("127.0.0.1:{other}"), b"pong");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"pong");
    let out = a.dial_as(&path, "web-1", "127.0.0.1:22\nFAKE", b"");
    fails_with(&out, "HOST:PORT");

    // Admin commands, through tctl on the auth host: refused by auth, with the reason.
    let user = path.to_str().unwrap();
    for args in [
        &["tokens", "add", "--type=node"][..],
        &["nodes", "ls"],
        &["status"],
        &["auth", "sign", "--user=mallory", "--out=/nonexistent/m.pem"],
    ] {
        let mut all = vec!["-i", user];
        all.extend_from_slice(args);
        fails_with(
            &a.c.tctl(&all),
            "holds a user identity, which may only dial nodes",
        );
    }

    // Heartbeats, a proxy's link and token checks on auth's port.
    let hello = wire::hello("alice", Default::default());
    denied(
        &wire::ask_auth(&a.c.addr(), &hello, Some(&id)),
        "node identity",
    );
    let link = Request::ProxyHello(ProxyHello {
        version: PROTOCOL_VERSION,
        name: "alice".into(),
        public_addr: "127.0.0.1:1".into(),
        server_version: "1".into(),
        web: Default::default(),
    });
    denied(
        &wire::ask_auth(&a.c.addr(), &link, Some(&id)),
        "proxy identity",
    );
    let check = Request::CheckToken {
        version: PROTOCOL_VERSION,
        token: teleport_lite::secret::Token::new("0".repeat(32)),
        role: "node".into(),
        remote_addr: String::new(),
    };
    denied(
        &wire::ask_auth(&a.c.addr(), &check, Some(&id)),
        "proxy identity",
    );

    // A tunnel: the proxy closes it without a welcome and says why in its log.
    let Request::Hello(h) = hello else {
        unreachable!()
    };
    let got = ask_proxy(
        &a.proxy,
        &id,
        b"teleport-reversetunnel",
        Request::TunnelHello(h),
    );
    assert!(!matches!(got, Ok(Some(_))), "{got:?}");
    a.c.auth().wait_log("rejected a tunnel from 127.0.0.1", T);
    assert!(a.c.has_node("web-1") && !a.c.has_node("alice"));

    // Bad requests for identities fail before anything is signed.
    let out_path = a.c.path().join("x.pem");
    let out = format!("--out={}", out_path.display());
    for (args, why) in [
        (&["--user=-rf", "--ttl=1h"][..], "invalid user name"),
        (&["--user=a b", "--ttl=1h"], "invalid user name"),
        (&["--user=bob", "--ttl=5"], "has no unit"),
        (&["--user=bob", "--ttl=31h"], "between 1s and 30h"),
        (&["--user=bob", "--format=openssh"], "only \"file\""),
    ] {
        let mut all = vec!["auth", "sign", out.as_str()];
        all.extend_from_slice(args);
        fails_with(&a.c.tctl(&all), why);
        assert!(!out_path.exists());
    }
    // An existing file is replaced only when asked.
    let again = format!("--out={}", path.display());
    fails_with(
        &a.c.tctl(&["auth", "sign", "--user=alice", &again]),
        "pass --overwrite",
    );
    a.c.tctl_ok(&["auth", "sign", "--user=alice", &again, "--overwrite"]);
}

/// Serves one connection: echoes what it reads until end of input.
fn echo_once() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        if let Some(Ok(mut c)) = l.incoming().next() {
            let mut r = c.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut c);
        }
    });
    (port, h)
}

#[test]
fn an_expired_user_identity_is_refused_at_the_handshake() {
    let a = Access::start("web-2", &[22]);
    let path = a.sign("carol", "2s");
    let id = Identity::load(&path).unwrap();
    let not_after = id.not_after().unwrap();
    wait_for(Duration::from_secs(10), "the identity to expire", || {
        (teleport_lite::clock::now_unix() > not_after).then_some(())
    });

    // tctl says so before it connects.
    let out = a.dial_as(&path, "web-2", "127.0.0.1:22", b"");
    fails_with(&out, "expired at");
    fails_with(&out, "tctl auth sign");

    // The proxy and auth refuse it themselves, whatever the client checks.
    let dial = Request::Dial {
        version: PROTOCOL_VERSION,
        node: "web-2".into(),
        addr: "127.0.0.1:22".into(),
    };
    let got = ask_proxy(&a.proxy, &id, b"teleport-transport", dial);
    let err = got.expect_err("the proxy answered an expired identity");
    assert!(err.contains("CertificateExpired"), "{err}");
    let got = smol::block_on(async {
        let cfg = wire::insecure_with_identity_alpn(&id, &[]);
        let tls = net::connect_tls(&a.c.addr(), cfg)
            .await
            .map_err(|e| e.to_string())?;
        let mut f = Framed::new(tls, MAX_RESPONSE_FRAME);
        f.send(&Request::GetCa {
            version: PROTOCOL_VERSION,
        })
        .await
        .map_err(|e| e.to_string())?;
        f.recv::<Response>().await.map_err(|e| e.to_string())
    });
    let err = got.expect_err("auth answered an expired identity");
    assert!(err.contains("CertificateExpired"), "{err}");
}
