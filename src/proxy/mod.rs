//! The Proxy Service: one TLS port (ALPN `http/1.1` for the web API, `teleport-reversetunnel`
//! for agent tunnels, `teleport-transport` for admin dials through tunnels), a link to auth that
//! carries its heartbeats and relays those of tunnelled nodes, and the tunnel registry.

mod control;
mod denials;
pub mod dials;
pub mod link;
mod renew;
pub mod state;
pub mod tunnel;
pub mod web;

pub use state::{ProxyState, TunnelEntry};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use log::{info, warn};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use smol::channel::Receiver;

use crate::config::Settings;
use crate::core::limiter::Limiter;
use crate::error::{Error, Result};
use crate::join::servers::AuthAddrs;
use crate::join::{self, JoinSpec, Via};
use crate::net;
use crate::pki;
use crate::pki::identity::Identity;
use crate::pki::live::LiveTls;
use crate::proto::ROLE_PROXY;
use crate::proto::{ProxyRef, Request, WebTrust};
use crate::rt::Shutdown;

// The ALPN names are protocol vocabulary; this path stays for older callers.
pub use crate::proto::names::{ALPN_HTTP, ALPN_TRANSPORT, ALPN_TUNNEL};

/// Relayed beats waiting for the auth link; beyond this they are dropped (the next ones come
/// one interval later). The link drains it in batches, so it stays short; a bounded channel
/// allocates all its slots up front, so this is also memory the proxy holds from the start.
const RELAY_QUEUE: usize = 4096;

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
        let (identity, auth) = match local_auth {
            Some(l) => (l.identity, AuthAddrs::new(vec![l.auth_addr], 0)),
            None => {
                let mut all = settings.auth_servers.clone();
                if all.is_empty() {
                    all.extend(settings.auth_server.clone());
                }
                if all.is_empty() {
                    return Err(Error::Config("the proxy needs auth_server".into()));
                }
                // Several auth servers: the first that can be reached, in order; the link
                // moves on to the next when the one in use dies.
                let Some(first) = crate::join::servers::first_reachable(&all, 0, &shutdown).await
                else {
                    return Ok(None);
                };
                let auth = AuthAddrs::new(all, first);
                let auth_addr = auth.current().to_owned();
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
                (id, auth)
            }
        };
        let subject = identity.subject()?;
        if subject.role != ROLE_PROXY {
            return Err(Error::Config(format!(
                "{} does not hold a proxy identity; remove it and join with a proxy token",
                path.display()
            )));
        }
        let listener = crate::net::accept::bind(settings.proxy.web_listen_addr).map_err(|e| {
            Error::Config(format!(
                "cannot listen on proxy_service.web_listen_addr {}: {e}",
                settings.proxy.web_listen_addr
            ))
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::net(settings.proxy.web_listen_addr.to_string(), e))?;
        crate::join::check_not_expired(&identity, &path)?;
        let tls = LiveTls::new(&identity)?;
        let acceptor = server_config(&tls, settings)?;
        let own_web = web_trust(&identity, settings)?;
        let (relay_tx, relay_rx) = smol::channel::bounded(RELAY_QUEUE);
        let (renew_now, renew_rx) = smol::channel::bounded(1);
        // Locks and removals heard before a restart hold until auth says otherwise.
        let denied = denials::load(&path);
        let state = Arc::new(ProxyState {
            me: ProxyRef {
                id: subject.host_id.clone(),
                name: settings.nodename.clone(),
            },
            public_addr: settings.proxy.public_addr.clone(),
            web_listen_addr: local_addr,
            cluster_name: subject.cluster.clone(),
            auth,
            identity: RwLock::new(identity),
            identity_path: path,
            tls,
            trust: RwLock::new(None),
            denied: RwLock::new(denied),
            denials_saved: (AtomicU64::new(0), Mutex::new(0)),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            renew_now,
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
        crate::rt::spawn(renew::run(state.clone(), renew_rx, shutdown.clone())).detach();
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
    cluster: Arc<LiveTls>,
    public: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertBySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match (hello.server_name(), &self.public) {
            (Some(crate::proto::PROXY_SERVER_NAME), _) | (_, None) => {
                Some(self.cluster.current_cert())
            }
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

/// The web listener's TLS: the cluster-issued certificate (renewed in place) to tunnel clients,
/// the operator's keypair, if any, to everyone else.
fn server_config(live: &Arc<LiveTls>, settings: &Settings) -> Result<Arc<ServerConfig>> {
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
    let resolver = Arc::new(CertBySni {
        cluster: live.clone(),
        public,
    });
    let alpn = vec![
        ALPN_TUNNEL.to_vec(),
        ALPN_TRANSPORT.to_vec(),
        ALPN_HTTP.to_vec(),
    ];
    live.server_config_with(alpn, resolver)
}

/// Serves one connection by ALPN. `peer` is the client (from the PROXY header when enabled);
/// `slot` is its place under the anonymous-connection caps, held for as long as it runs
/// (already released when the client presented a verified certificate).
///
/// Thousands of these idle as tunnels, and a task is as big as its largest wait: the short
/// lived web and dial branches run boxed.
async fn dispatch(
    tls: crate::net::ServerTls,
    peer: SocketAddr,
    slot: net::Slot,
    state: Arc<ProxyState>,
    shutdown: Shutdown,
) {
    let _slot = slot;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let facts = der.and_then(|c| Some((pki::facts_of(c).ok()?, pki::der_to_pem(c))));
    let subject = der
        .and_then(|c| pki::subject_of(c).ok())
        .filter(|s| s.cluster == state.cluster_name);
    match alpn.as_deref() {
        Some(ALPN_TUNNEL) => match (subject, facts) {
            (Some(s), Some(f)) if s.role == crate::proto::ROLE_NODE => {
                net::keepalive(tls.get_ref().0);
                tunnel::serve(tls, s, f, peer, state, shutdown).await
            }
            _ => warn!(
                "rejected a tunnel from {peer}: it presented no node certificate of cluster {:?}",
                state.cluster_name
            ),
        },
        // Dials are what a user identity (tctl auth sign) is for; admins may dial too.
        Some(ALPN_TRANSPORT) => match subject {
            Some(s) if s.role == crate::proto::ROLE_ADMIN || s.role == crate::proto::ROLE_USER => {
                Box::pin(tunnel::serve_dial(tls, peer, state, &s)).await
            }
            _ => warn!(
                "rejected a transport connection from {peer}: an admin or user identity is \
                 required"
            ),
        },
        _ => Box::pin(web::serve(tls, peer, state)).await,
    }
}

/// Drains relayed messages; used by the link.
pub type RelayRx = Receiver<Request>;

#[cfg(test)]
mod task_size_tests {
    use super::*;

    /// Every idle tunnel is one such task: its size is part of the proxy's memory per tunnel.
    /// It was 58 KB when the handler future was held three times over (issue 11).
    #[test]
    fn a_tunnel_task_stays_small() {
        fn task<Fut: std::future::Future<Output = ()>>(
            _: &impl Fn(net::ServerTls, SocketAddr, net::Slot, Arc<ProxyState>, Shutdown) -> Fut,
        ) -> usize {
            net::accept::task_size::<fn(net::ServerTls, SocketAddr, net::Slot) -> Fut, Fut>()
        }
        let size = task(&dispatch);
        assert!(size <= 4096, "a connection's task is {size} bytes");
    }
}
