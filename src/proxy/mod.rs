//! The Proxy Service: one TLS port (ALPN `http/1.1` for the web API, `teleport-reversetunnel`
//! for agent tunnels, `teleport-transport` for admin dials through tunnels), a link to auth that
//! carries its heartbeats and relays those of tunnelled nodes, and the tunnel registry.

pub mod dials;
pub mod link;
pub mod tunnel;
pub mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_rustls::server::TlsStream;
use log::{info, warn};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use smol::channel::{Receiver, Sender};
use smol::net::{TcpListener, TcpStream};

use crate::config::Settings;
use crate::core::limiter::Limiter;
use crate::error::{Error, Result};
use crate::join::{self, JoinSpec, Via};
use crate::mux::Opener;
use crate::net;
use crate::pki;
use crate::pki::identity::Identity;
use crate::proto::ROLE_PROXY;
use crate::proto::{ProxyRef, Request, WebTrust};
use crate::rt::Shutdown;

// The ALPN names are protocol vocabulary; this path stays for older callers.
pub use crate::proto::names::{ALPN_HTTP, ALPN_TRANSPORT, ALPN_TUNNEL};

/// Relayed beats waiting for the auth link; beyond this they are dropped (the next ones come
/// one interval later). The link drains it in batches, so it stays short; a bounded channel
/// allocates all its slots up front, so this is also memory the proxy holds from the start.
const RELAY_QUEUE: usize = 4096;

/// A node's tunnel as the proxy holds it.
pub struct TunnelEntry {
    pub node_name: String,
    pub opener: Opener,
    pub conn: u64,
}

pub struct ProxyState {
    pub me: ProxyRef,
    pub public_addr: String,
    pub web_listen_addr: SocketAddr,
    pub cluster_name: String,
    pub auth_addr: String,
    pub identity: Identity,
    pub proxies: Mutex<Vec<ProxyRef>>,
    /// Host ID -> its tunnels here, newest last. A node briefly has two when a re-dial lands on
    /// a proxy it already holds (it closes the new one right away).
    pub tunnels: Mutex<HashMap<String, Vec<TunnelEntry>>>,
    pub relay_tx: Sender<Request>,
    pub link_up: AtomicBool,
    pub heartbeat_interval_ms: AtomicU64,
    pub limiter: Mutex<Limiter>,
    pub started: Instant,
    pub next_conn: AtomicU64,
    /// What this proxy's web listener serves (reported to auth in the hello).
    pub own_web: WebTrust,
    /// The web pins of every live proxy, as last told by auth.
    pub cluster_web: Mutex<WebTrust>,
    /// Ports a user identity may dial on a node (`proxy_service.user_dial_ports`).
    pub user_dial_ports: Vec<u16>,
    /// Dials each user identity holds open here.
    pub user_dials: dials::UserDials,
}

impl ProxyState {
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.load(Ordering::Relaxed).max(100))
    }

    /// The proxy set as last told by auth; always includes this proxy.
    pub fn proxy_set(&self) -> Vec<ProxyRef> {
        let mut set = self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !set.contains(&self.me) {
            set.push(self.me.clone());
            set.sort();
        }
        set
    }

    /// Queues a message for auth; false if the link is down or the queue is full.
    pub fn relay(&self, msg: Request) -> bool {
        self.link_up.load(Ordering::Relaxed) && self.relay_tx.try_send(msg).is_ok()
    }

    pub fn tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<TunnelEntry>>> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A started Proxy Service.
/// An auth server in this same process, as the composition root hands it over: the proxy's
/// identity (issued without a token, one trust domain) and where auth listens.
pub struct LocalAuth {
    pub identity: Identity,
    pub auth_addr: String,
}

pub struct ProxyServer {
    pub state: Arc<ProxyState>,
    pub local_addr: SocketAddr,
}

/// Names the proxy's certificate must carry: its public address, hostname and loopback.
pub fn cert_names(settings: &Settings) -> Vec<String> {
    let mut names = vec![
        net::host_of(&settings.proxy.public_addr).to_string(),
        crate::config::hostname(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.sort();
    names.dedup();
    names
}

impl ProxyServer {
    pub async fn start(
        settings: &Settings,
        local_auth: Option<LocalAuth>,
        shutdown: Shutdown,
    ) -> Result<Option<ProxyServer>> {
        let path = settings.proxy_identity_path();
        let (identity, auth_addr) = match local_auth {
            Some(l) => (l.identity, l.auth_addr),
            None => {
                let mut auth_addr = settings
                    .auth_server
                    .clone()
                    .ok_or_else(|| Error::Config("the proxy needs auth_server".into()))?;
                // --auth-server repeated: the first that can be reached, in order.
                let all = &settings.auth_servers;
                match crate::join::servers::first_reachable(all, 0, &shutdown).await {
                    Some(i) if i < all.len() => auth_addr = all[i].clone(),
                    Some(_) => {}
                    None => return Ok(None),
                }
                let id = match Identity::load_optional(&path)? {
                    Some(id) => id,
                    None => {
                        let spec = JoinSpec {
                            role: ROLE_PROXY,
                            identity_path: path.clone(),
                            dns_names: cert_names(settings),
                            labels: Default::default(),
                        };
                        match join::join(settings, &spec, &Via::Auth(auth_addr.clone()), &shutdown)
                            .await?
                        {
                            Some(id) => id,
                            None => return Ok(None),
                        }
                    }
                };
                (id, auth_addr)
            }
        };
        let subject = identity.subject()?;
        if subject.role != ROLE_PROXY {
            return Err(Error::Config(format!(
                "{} does not hold a proxy identity; remove it and join with a proxy token",
                path.display()
            )));
        }
        let listener = TcpListener::bind(settings.proxy.web_listen_addr)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot listen on proxy_service.web_listen_addr {}: {e}",
                    settings.proxy.web_listen_addr
                ))
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::net(settings.proxy.web_listen_addr.to_string(), e))?;
        let acceptor = net::acceptor(server_config(&identity, settings)?);
        let own_web = web_trust(&identity, settings)?;
        let (relay_tx, relay_rx) = smol::channel::bounded(RELAY_QUEUE);
        let state = Arc::new(ProxyState {
            me: ProxyRef {
                id: subject.host_id.clone(),
                name: settings.nodename.clone(),
            },
            public_addr: settings.proxy.public_addr.clone(),
            web_listen_addr: local_addr,
            cluster_name: subject.cluster.clone(),
            auth_addr,
            identity,
            proxies: Mutex::new(Vec::new()),
            tunnels: Mutex::new(HashMap::new()),
            relay_tx,
            link_up: AtomicBool::new(false),
            heartbeat_interval_ms: AtomicU64::new(5000),
            limiter: Mutex::new(Limiter::default()),
            started: Instant::now(),
            next_conn: AtomicU64::new(1),
            own_web,
            cluster_web: Mutex::new(WebTrust::default()),
            user_dial_ports: settings.proxy.user_dial_ports.clone(),
            user_dials: dials::UserDials::default(),
        });
        info!(
            "proxy service {:?} listening on {local_addr} (public address {}{})",
            state.me.name,
            state.public_addr,
            if settings.proxy.proxy_protocol {
                ", PROXY protocol v2 required"
            } else {
                ""
            }
        );
        crate::rt::spawn(link::run(state.clone(), relay_rx, shutdown.clone())).detach();
        let (st, sd) = (state.clone(), shutdown.clone());
        // With proxy_protocol the address from the load balancer's PROXY header is `peer`
        // for the caps, the join rate limits and the logs.
        let caps = net::Caps::new(net::Limits::default());
        let pp = settings.proxy.proxy_protocol;
        let serve = net::serve_tls(
            listener,
            acceptor,
            caps,
            pp,
            shutdown,
            move |tls, peer, slot| dispatch(tls, peer, slot, st.clone(), sd.clone()),
        );
        crate::rt::spawn(serve).detach();
        Ok(Some(ProxyServer { state, local_addr }))
    }
}

/// Serves the proxy's CA-issued certificate to tunnel clients (SNI = the proxy server name)
/// and, when configured, the operator's keypair to everyone else.
#[derive(Debug)]
struct CertBySni {
    cluster: Arc<CertifiedKey>,
    public: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertBySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match (hello.server_name(), &self.public) {
            (Some(crate::proto::PROXY_SERVER_NAME), _) | (_, None) => Some(self.cluster.clone()),
            (_, Some(public)) => Some(public.clone()),
        }
    }
}

/// The curl pins of every certificate the web listener may serve: the cluster-issued one and,
/// with `https_keypairs`, the operator's (then served to every web client).
fn web_trust(identity: &Identity, settings: &Settings) -> Result<WebTrust> {
    let mut pins = vec![pki::webpin::of_cert(&identity.cert_der()?)?];
    if let Some((cert, _)) = &settings.proxy.https_keypair {
        let leaf = pki::certs_from_pem(&crate::fsutil::read_to_string(cert)?)
            .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?
            .remove(0);
        pins.push(pki::webpin::of_cert(&leaf)?);
    }
    Ok(WebTrust {
        pins,
        public: settings.proxy.https_keypair.is_some(),
    })
}

impl ProxyState {
    /// The `--pinnedpubkey` argument for curl in install scripts: this proxy's web pins and
    /// every other live proxy's (a load balancer may send each download elsewhere). Empty when
    /// every proxy serves a publicly trusted certificate: then plain curl verifies them.
    pub fn curl_pins(&self) -> String {
        let cluster = self
            .cluster_web
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if self.own_web.public && (cluster.public || cluster.pins.is_empty()) {
            return String::new();
        }
        let mut all = cluster.pins;
        all.extend(self.own_web.pins.iter().cloned());
        pki::webpin::curl_arg(&all)
    }
}

fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>> {
    let signing = net::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::Pki(format!("unusable private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

fn server_config(identity: &Identity, settings: &Settings) -> Result<Arc<ServerConfig>> {
    let roots = {
        let mut store = rustls::RootCertStore::empty();
        for ca in identity.ca_ders()? {
            store
                .add(ca)
                .map_err(|e| Error::Pki(format!("unusable CA certificate: {e}")))?;
        }
        Arc::new(store)
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, net::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Pki(format!("cannot build client verifier: {e}")))?;
    let cluster = certified_key(vec![identity.cert_der()?], identity.key_der()?)?;
    let public = match &settings.proxy.https_keypair {
        None => None,
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> =
                pki::certs_from_pem(&crate::fsutil::read_to_string(cert)?)
                    .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_slice(crate::fsutil::read_to_string(key)?.as_bytes())
                .map_err(|e| {
                    Error::Config(format!("{}: cannot parse private key: {e}", key.display()))
                })?;
            Some(certified_key(certs, key)?)
        }
    };
    let mut config = ServerConfig::builder_with_provider(net::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Pki(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(CertBySni { cluster, public }));
    config.alpn_protocols = vec![
        ALPN_TUNNEL.to_vec(),
        ALPN_TRANSPORT.to_vec(),
        ALPN_HTTP.to_vec(),
    ];
    Ok(Arc::new(config))
}

/// Serves one connection by ALPN. `peer` is the client (from the PROXY header when enabled);
/// `slot` is its place under the anonymous-connection caps, held for as long as it runs
/// (already released when the client presented a verified certificate).
async fn dispatch(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    slot: net::Slot,
    state: Arc<ProxyState>,
    shutdown: Shutdown,
) {
    let _slot = slot;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| pki::subject_of(c).ok())
        .filter(|s| s.cluster == state.cluster_name);
    match alpn.as_deref() {
        Some(ALPN_TUNNEL) => match subject {
            Some(s) if s.role == crate::proto::ROLE_NODE => {
                tunnel::serve(tls, s, peer, state, shutdown).await
            }
            _ => warn!(
                "rejected a tunnel from {peer}: it presented no node certificate of cluster {:?}",
                state.cluster_name
            ),
        },
        // Dials are what a user identity (tctl auth sign) is for; admins may dial too.
        Some(ALPN_TRANSPORT) => match subject {
            Some(s) if s.role == crate::proto::ROLE_ADMIN || s.role == crate::proto::ROLE_USER => {
                tunnel::serve_dial(tls, peer, state, &s).await
            }
            _ => warn!(
                "rejected a transport connection from {peer}: an admin or user identity is \
                 required"
            ),
        },
        _ => web::serve(tls, peer, state).await,
    }
}

/// Drains relayed messages; used by the link.
pub type RelayRx = Receiver<Request>;
