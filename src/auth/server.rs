//! The Auth Service process part: first-start initialization (CA, host UUID, admin identity),
//! the TLS listener, and request handling. Authorization reads role and host ID from the
//! verified client certificate only.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_rustls::server::TlsStream;
use log::{debug, info, warn};
use serde::{Deserialize, Serialize};
use smol::net::{TcpListener, TcpStream};

use super::backend::sqlite::SqliteBackend;
use super::backend::{Backend, Item};
use super::join;
pub use super::state::AuthState;
use super::streams;
use super::tokens::TokenStore;
use crate::clock::now_unix;
use crate::config::{self, Settings};
use crate::core::inventory::Inventory;
use crate::core::limiter::Limiter;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::net::{self, Framed};
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::identity::Identity;
use crate::pki::pin::Pin;
use crate::pki::{self, Subject};
use crate::proto::AUTH_SERVER_NAME;
use crate::proto::{self, ErrorCode, Request, Response, MAX_REQUEST_FRAME, PROTOCOL_VERSION};
use crate::rt::Shutdown;
use crate::secret::new_uuid;

const CA_KEY: &str = "authorities/host";
/// A client must send its first message within this time.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cluster_name: String,
    cert_pem: String,
    key_pem: String,
}

/// A started Auth Service.
pub struct AuthServer {
    pub state: Arc<AuthState>,
    pub local_addr: SocketAddr,
    pub host_id: String,
}

/// Loads the host UUID of this data directory, creating it on first start.
pub fn load_or_create_host_uuid(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(config::HOST_UUID_FILE);
    if path.exists() {
        let s = fsutil::read_to_string(&path)?;
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let id = new_uuid();
    fsutil::write_atomic(&path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

impl AuthServer {
    /// Initializes storage and identities, binds the listener and starts serving.
    pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<AuthServer> {
        let s = settings.clone();
        let (state, host_id, server_identity) = smol::unblock(move || init(&s)).await?;
        let listener = TcpListener::bind(settings.auth.listen_addr)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot listen on auth_service.listen_addr {}: {e}",
                    settings.auth.listen_addr
                ))
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::net(settings.auth.listen_addr.to_string(), e))?;
        let acceptor = net::acceptor(net::server_config(&server_identity)?);
        info!(
            "auth service listening on {local_addr}, cluster {:?}, CA pin {}",
            state.cluster_name,
            state.ca_pins.join(",")
        );
        let (st, sd) = (state.clone(), shutdown.clone());
        let caps = net::Caps::new(net::Limits::default());
        let serve = net::serve_tls(
            listener,
            acceptor,
            caps,
            false,
            shutdown.clone(),
            move |tls, peer, slot| {
                let conn = handle_conn(tls, peer, st.clone(), sd.clone());
                // Anonymous connections keep their slot for their whole life.
                async move {
                    let _slot = slot;
                    conn.await
                }
            },
        );
        crate::rt::spawn(serve).detach();
        crate::rt::spawn(housekeeping(state.clone(), shutdown)).detach();
        Ok(AuthServer {
            state,
            local_addr,
            host_id,
        })
    }
}

/// Blocking first-start work: directories, database, CA, host UUID, identities.
fn init(s: &Settings) -> Result<(Arc<AuthState>, String, Identity)> {
    fsutil::ensure_private_dir(&s.data_dir)?;
    let backend: Arc<dyn Backend> =
        Arc::new(SqliteBackend::open(&s.data_dir.join(config::AUTH_DB_FILE))?);
    let ca = load_or_create_ca(backend.as_ref(), &s.auth.cluster_name)?;
    let ca_pins = vec![Pin::of_cert(&ca.cert_der()?)?.to_string()];
    let host_id = load_or_create_host_uuid(&s.data_dir)?;
    let tokens = TokenStore::new(backend, &s.auth.static_tokens)?;
    let state = Arc::new(AuthState {
        cluster_name: s.auth.cluster_name.clone(),
        ca,
        ca_pins,
        tokens,
        inventory: Mutex::new(Inventory::default()),
        limiter: Mutex::new(Limiter::default()),
        heartbeat_interval: s.auth.heartbeat_interval,
        advertise_addr: s.auth.advertise_addr.clone(),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
        audit: super::audit::AuditLog::open(&s.data_dir.join(config::AUDIT_LOG_FILE))?,
    });
    ensure_admin_identity(&state, &s.data_dir.join(config::ADMIN_IDENTITY_FILE))?;
    let server_identity = server_identity(&state, &host_id, s)?;
    Ok((state, host_id, server_identity))
}

fn load_or_create_ca(backend: &dyn Backend, cluster_name: &str) -> Result<CertAuthority> {
    let now = now_unix();
    if let Some(item) = backend.get(CA_KEY, now)? {
        let stored: StoredCa = serde_json::from_slice(&item.value)
            .map_err(|e| Error::Storage(format!("stored CA is unreadable: {e}")))?;
        if stored.cluster_name != cluster_name {
            return Err(Error::Config(format!(
                "this data_dir holds the CA of cluster {:?}, but the config names the cluster \
                 {cluster_name:?}: set auth_service.cluster_name back, or use a new data_dir",
                stored.cluster_name
            )));
        }
        return Ok(CertAuthority {
            cert_pem: stored.cert_pem,
            key_pem: stored.key_pem,
        });
    }
    let ca = CertAuthority::generate(cluster_name)?;
    let stored = StoredCa {
        cluster_name: cluster_name.to_string(),
        cert_pem: ca.cert_pem.clone(),
        key_pem: ca.key_pem.clone(),
    };
    let item = Item {
        key: CA_KEY.into(),
        value: serde_json::to_vec(&stored).map_err(|e| Error::Storage(e.to_string()))?,
        expires: None,
    };
    if !backend.create(&item, now)? {
        // Another process created it at the same moment: use theirs.
        return load_or_create_ca(backend, cluster_name);
    }
    info!("created the host CA of cluster {cluster_name:?}");
    Ok(ca)
}

/// The admin identity that local `tctl` uses; re-issued if missing or from an older CA.
fn ensure_admin_identity(state: &AuthState, path: &Path) -> Result<()> {
    if let Ok(Some(id)) = Identity::load_optional(path) {
        if id.ca_pems.first().map(|p| p.trim()) == Some(state.ca.cert_pem.trim()) {
            return Ok(());
        }
    }
    let id = state.issue_local_identity("admin", crate::proto::ROLE_ADMIN, "", &[])?;
    id.save(path)
}

/// The certificate auth serves: always for `teleport.cluster.local`, plus local names.
fn server_identity(state: &AuthState, host_id: &str, s: &Settings) -> Result<Identity> {
    let subject = Subject {
        host_id: host_id.to_string(),
        role: crate::proto::ROLE_AUTH.to_string(),
        cluster: state.cluster_name.clone(),
        node_name: String::new(),
    };
    let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
    if !s.auth.listen_addr.ip().is_unspecified() {
        ips.push(s.auth.listen_addr.ip());
    }
    let sans = Sans {
        dns: vec![
            AUTH_SERVER_NAME.to_string(),
            "localhost".to_string(),
            format!("{host_id}.{}", state.cluster_name),
        ],
        ips,
    };
    let (key_pem, cert_pem) =
        state
            .ca
            .issue_local(&subject, &sans, Duration::from_secs(365 * 24 * 3600))?;
    Ok(Identity {
        key_pem,
        cert_pem,
        ca_pems: vec![state.ca.cert_pem.clone()],
    })
}

/// Who is on the other side, from the verified client certificate.
fn peer_subject(tls: &TlsStream<TcpStream>) -> Option<Subject> {
    let certs = tls.get_ref().1.peer_certificates()?;
    pki::subject_of(certs.first()?).ok()
}

async fn handle_conn(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) {
    let subject = peer_subject(&tls).filter(|s| s.cluster == state.cluster_name);
    let mut conn = Framed::new(tls, MAX_REQUEST_FRAME);
    let first = match net::with_timeout(FIRST_MESSAGE_TIMEOUT, conn.recv::<Request>()).await {
        Some(Ok(Some(req))) => req,
        Some(Ok(None)) | None => return,
        Some(Err(e)) => {
            debug!("bad first message from {peer}: {e}");
            let _ = conn
                .send(&Response::error(ErrorCode::BadParameter, e.to_string()))
                .await;
            return;
        }
    };
    let reply = match first {
        Request::GetCa { version } | Request::Admin { version, .. }
            if version != PROTOCOL_VERSION =>
        {
            proto::version_mismatch(version)
        }
        Request::GetCa { .. } => match join::rate_limit(&state, peer.ip()) {
            Some(refusal) => refusal,
            None => Response::Ca {
                cluster_name: state.cluster_name.clone(),
                certs: vec![state.ca.cert_pem.clone()],
            },
        },
        // Joins relayed by a proxy are limited by the address the proxy saw, so neither the
        // number of proxies nor the load balancer in front of them changes the budget.
        Request::Register(req) => {
            let by_proxy = subject
                .as_ref()
                .is_some_and(|s| s.role == crate::proto::ROLE_PROXY);
            let source = join::real_source(peer.ip(), by_proxy, &req.remote_addr);
            let label = if by_proxy {
                format!("{source} via proxy {peer}")
            } else {
                peer.to_string()
            };
            match join::rate_limit(&state, source) {
                Some(refusal) => refusal,
                None => join::register(&state, req, &label).await,
            }
        }
        Request::Admin { cmd, .. } => match &subject {
            Some(s) if s.role == crate::proto::ROLE_ADMIN => super::admin::admin(&state, cmd).await,
            Some(s) if s.role == crate::proto::ROLE_USER => Response::error(
                ErrorCode::AccessDenied,
                format!(
                    "{:?} holds a user identity, which may only dial nodes through a proxy \
                     (tctl nodes dial, ssh): admin commands need the admin identity of the \
                     auth host",
                    s.host_id
                ),
            ),
            _ => Response::error(
                ErrorCode::AccessDenied,
                "admin commands need the admin identity: run tctl on the auth host or pass \
                 --identity",
            ),
        },
        Request::CheckToken {
            version,
            token,
            role,
            remote_addr,
        } => match &subject {
            Some(s) if s.role == crate::proto::ROLE_PROXY && version == PROTOCOL_VERSION => {
                let source = join::real_source(peer.ip(), true, &remote_addr);
                match join::rate_limit(&state, source) {
                    Some(refusal) => refusal,
                    None => {
                        let from = format!("{source} via proxy {peer}");
                        join::check_token(&state, token, &role, &from).await
                    }
                }
            }
            Some(_) if version != PROTOCOL_VERSION => proto::version_mismatch(version),
            _ => Response::error(
                ErrorCode::AccessDenied,
                "token checks need a proxy identity",
            ),
        },
        Request::ProxyHello(hello) => match subject {
            Some(s) if s.role == crate::proto::ROLE_PROXY => {
                return streams::proxy_link(conn, hello, s, peer, state, shutdown).await;
            }
            _ => Response::error(
                ErrorCode::AccessDenied,
                "a proxy link needs a proxy identity issued by this cluster",
            ),
        },
        Request::Hello(hello) => match subject {
            Some(s) if s.role == crate::proto::ROLE_NODE => {
                return streams::heartbeat_stream(conn, hello, s, peer, state, shutdown).await;
            }
            _ => Response::error(
                ErrorCode::AccessDenied,
                "a heartbeat stream needs a node identity issued by this cluster",
            ),
        },
        Request::Heartbeat { .. }
        | Request::Goodbye
        | Request::Relay(_)
        | Request::RelayGoodbye { .. }
        | Request::TunnelHello(_)
        | Request::Renew { .. }
        | Request::Refresh { .. }
        | Request::RelayRenew { .. }
        | Request::Dial { .. } => Response::error(
            ErrorCode::BadParameter,
            "this message is not valid as the first one on a connection to auth",
        ),
    };
    let _ = conn.send(&reply).await;
    conn.close().await;
}

/// Periodic cleanup: expired nodes from memory, expired tokens from storage.
async fn housekeeping(state: Arc<AuthState>, shutdown: Shutdown) {
    let mut tick = 0u64;
    while shutdown.sleep(Duration::from_secs(1)).await {
        let (gone, online) = {
            let mut inv = state.inventory.lock().unwrap_or_else(|p| p.into_inner());
            let gone = inv.expire(state.now_ms());
            (gone, inv.count(state.now_ms()))
        };
        crate::diag::METRICS
            .nodes_online
            .store(online as i64, std::sync::atomic::Ordering::Relaxed);
        if gone > 0 {
            info!("{gone} node(s) stopped heartbeating and were removed");
        }
        tick += 1;
        if tick % 60 == 0 {
            let st = state.clone();
            if let Err(e) = smol::unblock(move || st.tokens.purge(now_unix())).await {
                warn!("purging expired tokens failed: {e}");
            }
        }
    }
}

pub use crate::net::dial_addr;

pub use crate::config::admin_identity_path;
