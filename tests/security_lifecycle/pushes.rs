//! What auth pushes to a proxy (`trust`, `denied`, and the interval in its hello answer), sent
//! unreadable, absurd, huge and 10x over the response limit by an auth server whose
//! certificate was minted with the cluster's CA key (taken from `auth.db`): the proxy must
//! keep serving, keep trusting the cluster, and reconnect.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_rustls::TlsAcceptor;
use teleport_lite::net::Framed;
use teleport_lite::proto::{Denial, LockTarget, TrustInfo, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME};

use super::*;

/// An auth server that runs script `k` on its `k`-th connection and serves plainly after the
/// last one; `connections` counts them.
struct FakeAuth {
    port: u16,
    connections: Arc<AtomicUsize>,
    /// Ends the plain connection being served (the proxy then reconnects).
    hang_up: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
enum Script {
    /// Unreadable and empty CA lists with signer indexes out of range, 100,000 denials (one
    /// for `locked`), then a denial of an unknown shape.
    BadTrustHugeDenied,
    /// A frame announcing ten times the response limit.
    TooLarge,
    /// Plain heartbeat answers until `hang_up`.
    Plain,
    /// A hello answer with the longest heartbeat interval there is, then the end.
    EndlessInterval,
}

const SCRIPTS: [Script; 4] = [
    Script::BadTrustHugeDenied,
    Script::TooLarge,
    Script::Plain,
    Script::EndlessInterval,
];

impl FakeAuth {
    fn start(ca: &CertAuthority, locked: String) -> FakeAuth {
        let subject = teleport_lite::pki::Subject {
            host_id: "00000000-0000-4000-8000-0000000000aa".into(),
            role: "Auth".into(),
            cluster: CLUSTER_NAME.into(),
            node_name: String::new(),
        };
        let sans = Sans {
            dns: vec!["teleport.cluster.local".into()],
            ips: Vec::new(),
        };
        let (key, cert) = ca.issue_local(&subject, &sans, T).unwrap();
        let id = Identity {
            key_pem: key,
            cert_pem: cert,
            ca_pems: vec![ca.cert_pem.clone()],
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(teleport_lite::net::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![id.cert_der().unwrap()], id.key_der().unwrap())
            .unwrap();
        cfg.alpn_protocols = vec![b"teleport-auth".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let hang_up = Arc::new(AtomicBool::new(false));
        let (count, hang) = (connections.clone(), hang_up.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let k = count.fetch_add(1, Ordering::SeqCst);
                let script = SCRIPTS.get(k).copied().unwrap_or(Script::Plain);
                let (acceptor, hang, locked) = (acceptor.clone(), hang.clone(), locked.clone());
                std::thread::spawn(move || {
                    smol::block_on(async move {
                        let tcp = smol::Async::new(tcp).unwrap();
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let conn = Framed::new(tls, MAX_REQUEST_FRAME);
                            serve(conn, script, &hang, &locked).await;
                        }
                    })
                });
            }
        });
        FakeAuth {
            port,
            connections,
            hang_up,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve<S>(mut conn: Framed<S>, script: Script, hang_up: &AtomicBool, locked: &str)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let Some(Request::ProxyHello(_)) = raw::outcome_req(&mut conn).await else {
        return;
    };
    // The proxy judges its link dead after three intervals without a frame: 1 s each, so a
    // loaded machine (the whole suite on 2 cores) does not end the link before the pushes.
    let interval = match script {
        Script::EndlessInterval => u64::MAX,
        _ => 1000,
    };
    let ack = Response::HelloAck {
        cluster_name: CLUSTER_NAME.into(),
        server_version: "1".into(),
        heartbeat_interval_ms: interval,
        proxies: Vec::new(),
    };
    if conn.send(&ack).await.is_err() || matches!(script, Script::EndlessInterval) {
        return;
    }
    // Built before the beats it follows: building 100,000 denials takes a debug build long
    // enough to miss the proxy's beat deadline, which would end the link before the push.
    let bytes = match script {
        Script::BadTrustHugeDenied => bad_pushes(locked),
        Script::TooLarge => {
            let mut b = ((10 * MAX_RESPONSE_FRAME) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(&[b'{'; 65536]);
            b
        }
        _ => Vec::new(),
    };
    let mut pushed = false;
    while let Some(Request::Heartbeat { seq }) = raw::outcome_req(&mut conn).await {
        let ack = Response::HeartbeatAck {
            seq,
            proxies: Vec::new(),
            relayed: true,
            renew: false,
            quiet: false,
        };
        if conn.send(&ack).await.is_err() || hang_up.swap(false, Ordering::SeqCst) {
            return;
        }
        if !pushed {
            pushed = true;
            if conn.send_raw(&bytes).await.is_err() {
                return;
            }
        }
    }
}

fn bad_pushes(locked: &str) -> Vec<u8> {
    let trust = |ca_certs: Vec<String>| {
        Response::Trust(TrustInfo {
            ca_certs,
            client_signer: 7,
            server_signer: usize::MAX,
            changed: i64::MIN,
            retired_at: i64::MAX,
            host_cert_ttl_secs: u64::MAX,
        })
    };
    let mut denials: Vec<Denial> = (0..100_000u32)
        .map(|i| Denial {
            target: LockTarget::ServerId(format!("00000000-0000-4000-8000-{i:012}")),
            message: "x".repeat(64),
        })
        .collect();
    denials.push(Denial {
        target: LockTarget::ServerId(locked.into()),
        message: "pushed lock".into(),
    });
    let mut b = encode(&trust(vec!["-----BEGIN CERTIFICATE-----\nAAAA\n".into()]));
    b.extend(encode(&trust(Vec::new())));
    b.extend(encode(&Response::Denied { denials }));
    b.extend(raw::frame(
        r#"{"type":"denied","denials":[{"target":{"bogus":1},"message":""}]}"#,
    ));
    b
}

/// The tunnel of `id` to `proxy`: the welcome, or the refusal's message.
async fn tunnel_answer(proxy: &str, id: &Identity) -> Result<(), String> {
    let (_m, mut ctl) = raw::tunnel_raw(proxy, id).await;
    let name = id.subject().unwrap().node_name;
    ctl.send(&Request::TunnelHello(teleport_lite::proto::StreamHello {
        version: PROTOCOL_VERSION,
        node_name: name,
        server_version: "x".into(),
        labels: Default::default(),
        public_addr: String::new(),
    }))
    .await
    .unwrap();
    match raw::outcome(&mut ctl, T).await {
        Outcome::Reply(Response::TunnelWelcome { .. }) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn a_proxy_survives_unreadable_absurd_and_oversized_pushes_from_auth() {
    // Catches: a signer index or an empty CA list from auth panicking the proxy or leaving it
    // trusting nothing; a frame announcing more than the response limit allocated up front;
    // a push of an unknown shape ending the proxy instead of its link; a hello interval that
    // overflows a timer; a huge denial list not applied.
    let c = lifecycle::cluster("");
    let mut p = c.proxy_config("pushed-proxy", "127.0.0.1:1", "");
    c.start_proxy(&mut p);
    p.proc().stop();
    let good = raw::join(&c, "Node", "good-node");
    let locked = raw::join(&c, "Node", "pushed-locked");
    let fake = FakeAuth::start(&raw::stored_ca(&c), raw::host_id(&locked));
    let yaml = fs::read_to_string(&p.config).unwrap();
    let yaml = yaml.replace(
        &format!("auth_server: {}", c.addr()),
        &format!("auth_server: {}", fake.addr()),
    );
    fs::write(&p.config, yaml).unwrap();
    p.start();
    // The bad pushes, then the oversized one, each end only the link; the third link is plain.
    wait_for(T, "the proxy's third link to the fake auth", || {
        (fake.connections() >= 3).then_some(())
    });
    let proxy = p.addr();
    let (good_tunnel, locked_tunnel) = block(async {
        (
            tunnel_answer(&proxy, &good).await,
            tunnel_answer(&proxy, &locked).await,
        )
    });
    assert_eq!(
        good_tunnel,
        Ok(()),
        "the proxy stopped trusting the cluster"
    );
    assert!(
        locked_tunnel
            .as_ref()
            .is_err_and(|e| e.contains("pushed lock")),
        "the huge denial list was not applied: {locked_tunnel:?}; the proxy's log:\n{}",
        p.proc().log_text()
    );
    fake.hang_up.store(true, Ordering::SeqCst);
    wait_for(
        T,
        "the proxy to reconnect after the endless interval",
        || (fake.connections() >= 5).then_some(()),
    );
    lifecycle::assert_running(p.proc());
    assert_eq!(block(tunnel_answer(&proxy, &good)), Ok(()));
}
