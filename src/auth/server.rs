//! The Auth Service process part: first-start initialization (CA, host UUID, admin identity),
//! the TLS listener, and request handling. Authorization reads role and host ID from the
//! verified client certificate only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::backend::postgres::PostgresBackend;
use super::backend::sqlite::SqliteBackend;
use super::backend::Backend;
use super::cas::CaSet;
use super::join::{self, Charge};
use super::own::Own;
use super::revoke::Revocations;
pub use super::state::AuthState;
use super::streams;
use super::tokens::TokenStore;
use crate::clock::now_unix;
use crate::config::{self, Settings};
use crate::core::inventory::Inventory;
use crate::core::limiter::Limiter;
use crate::core::rotation::CertFacts;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::net::{self, Framed};
use crate::pki::ca::Sans;
use crate::pki::live::LiveTls;
use crate::pki::{self, Subject};
use crate::proto::{self, ErrorCode, Request, Response, MAX_REQUEST_FRAME, PROTOCOL_VERSION};
use crate::rt::Shutdown;
use crate::secret::new_uuid;

/// A client must send its first message within this time.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let (s, sd) = (settings.clone(), shutdown.clone());
        let state = smol::unblock(move || init(&s, &sd)).await?;
        let listener = net::accept::bind(settings.auth.listen_addr).map_err(|e| {
            Error::Config(format!(
                "cannot listen on auth_service.listen_addr {}: {e}",
                settings.auth.listen_addr
            ))
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::net(settings.auth.listen_addr.to_string(), e))?;
        let acceptor = state.tls.server_config(vec![proto::ALPN_AUTH.to_vec()])?;
        info!(
            "auth service listening on {local_addr}, cluster {:?}, CA pin {}",
            state.cluster_name,
            state.ca_pins().join(",")
        );
        let (st, sd) = (state.clone(), shutdown.clone());
        let caps = net::Caps::new(net::Limits::default());
        let serve = net::serve_tls(
            listener,
            acceptor,
            caps,
            false,
            shutdown.clone(),
            move |tls, peer, slot| serve_conn(tls, peer, slot, st.clone(), sd.clone()),
        );
        crate::rt::spawn(serve).detach();
        let host_id = state.own.host_id.clone();
        crate::rt::spawn(super::own::keep_current(state.clone(), shutdown.clone())).detach();
        crate::rt::spawn(super::watch::watch(state.clone(), shutdown.clone())).detach();
        crate::rt::spawn(super::presence::publish(state.clone(), shutdown.clone())).detach();
        crate::rt::spawn(housekeeping(state.clone(), shutdown)).detach();
        Ok(AuthServer {
            state,
            local_addr,
            host_id,
        })
    }
}

/// The backend `teleport.storage` names, and how `tctl status` and the log name it (never
/// with a password).
fn open_backend(s: &Settings, shutdown: &Shutdown) -> Result<(Arc<dyn Backend>, String)> {
    let (backend, name): (Arc<dyn Backend>, String) = match &s.auth.storage {
        config::Storage::Sqlite => {
            let path = s.data_dir.join(config::AUTH_DB_FILE);
            let b = SqliteBackend::open(&path)?;
            (Arc::new(b), format!("sqlite {}", path.display()))
        }
        config::Storage::Postgres(params) => {
            let b = PostgresBackend::open_retrying(params.clone(), || shutdown.is_fired())?;
            (Arc::new(b), params.redacted())
        }
    };
    log::info!("auth storage: {name}");
    Ok((backend, name))
}

/// Blocking first-start work: directories, database, CAs, host UUID, identities.
fn init(s: &Settings, shutdown: &Shutdown) -> Result<Arc<AuthState>> {
    fsutil::ensure_private_dir(&s.data_dir)?;
    let (backend, storage) = open_backend(s, shutdown)?;
    let now = now_unix();
    let ca = CaSet::load_or_create(backend.clone(), &s.auth.cluster_name, now)?;
    let host_id = load_or_create_host_uuid(&s.data_dir)?;
    let revoke = Revocations::load(backend.clone(), now)?;
    let tokens = TokenStore::new(backend.clone(), &s.auth.static_tokens)?;
    let own = Own {
        host_id,
        listen_addr: s.auth.listen_addr,
        admin_path: s.data_dir.join(config::ADMIN_IDENTITY_FILE),
        admin: Mutex::new(None),
        trusted: Mutex::new(Vec::new()),
        served: Mutex::new(None),
    };
    // A placeholder until the real certificate is issued (that needs the state).
    let first = super::state::issue(
        &ca.get(),
        &Subject {
            host_id: own.host_id.clone(),
            role: crate::proto::ROLE_AUTH.to_string(),
            cluster: s.auth.cluster_name.clone(),
            node_name: String::new(),
        },
        &Sans::default(),
        s.auth.host_cert_ttl,
    )?;
    let state = Arc::new(AuthState {
        cluster_name: s.auth.cluster_name.clone(),
        ca,
        host_ttl: s.auth.host_cert_ttl,
        tokens,
        inventory: Mutex::new(Inventory::default()),
        limiter: Mutex::new(Limiter::default()),
        heartbeat_interval: s.auth.heartbeat_interval,
        advertise_addr: s.auth.advertise_addr.clone(),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
        audit: super::audit::AuditLog::open(&s.data_dir.join(config::AUDIT_LOG_FILE))?,
        revoke,
        tls: LiveTls::new(&first)?,
        renewed: Mutex::new(Default::default()),
        own,
        storage,
        backend,
    });
    super::own::refresh(&state)?;
    Ok(state)
}

/// Who is on the other side, from the verified client certificate: its subject, what renewal
/// decisions need of it, and its names.
fn peer_subject(tls: &crate::net::ServerTls) -> Option<(Subject, CertFacts, Sans)> {
    let der = tls.get_ref().1.peer_certificates()?.first()?;
    Some((
        pki::subject_of(der).ok()?,
        pki::facts_of(der).ok()?,
        pki::sans_of(der).ok()?,
    ))
}

/// One connection's task. Anonymous connections keep their slot for their whole life.
///
/// Thousands of these idle as node streams, and a task's allocation is as big as its largest
/// wait, for its whole life: the opening (first message, one-shot requests) runs boxed and is
/// freed before the long-lived stream it hands over starts, so an idle node costs this small
/// future and its boxed stream only.
async fn serve_conn(
    tls: crate::net::ServerTls,
    peer: SocketAddr,
    slot: net::Slot,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) {
    let _slot = slot;
    let stream = Box::pin(handle_conn(tls, peer, state, shutdown)).await;
    if let Some(stream) = stream {
        stream.await
    }
}

/// A connection's long-lived part: a node's heartbeat stream or a proxy's link.
type Stream = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Answers the first message; returns the stream it opens, if any, for the caller to run.
async fn handle_conn(
    tls: crate::net::ServerTls,
    peer: SocketAddr,
    state: Arc<AuthState>,
    shutdown: Shutdown,
) -> Option<Stream> {
    let verified = peer_subject(&tls).filter(|(s, _, _)| s.cluster == state.cluster_name);
    let (subject, cert, sans) = match verified {
        Some((s, c, n)) => (Some(s), Some(c), n),
        None => (None, None, Sans::default()),
    };
    let mut conn = Framed::new(tls, MAX_REQUEST_FRAME);
    let first = match net::with_timeout(FIRST_MESSAGE_TIMEOUT, conn.recv::<Request>()).await {
        Some(Ok(Some(req))) => req,
        Some(Ok(None)) | None => return None,
        Some(Err(e)) => {
            debug!("bad first message from {peer}: {e}");
            let _ = conn
                .send(&Response::error(ErrorCode::BadParameter, e.to_string()))
                .await;
            return None;
        }
    };
    // Rare requests run boxed: this task's size is that of its largest branch, and thousands
    // of them idle as node streams.
    let reply = match first {
        Request::GetCa { version } | Request::Admin { version, .. }
            if version != PROTOCOL_VERSION =>
        {
            proto::version_mismatch(version)
        }
        Request::GetCa { .. } => match join::rate_limit(&state, peer.ip(), Charge::Ca) {
            Some(refusal) => refusal,
            None => Response::Ca {
                cluster_name: state.cluster_name.clone(),
                certs: state.trusted_pems(),
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
            // A locked or removed proxy relays nothing.
            let denied = subject
                .as_ref()
                .filter(|_| by_proxy)
                .and_then(|s| super::renew::refusal(&state, &s.host_id));
            match denied.or_else(|| join::rate_limit(&state, source, Charge::Join)) {
                Some(refusal) => refusal,
                None => {
                    let answer = Box::pin(join::register(&state, req, &label)).await;
                    if matches!(answer, Response::Registered { .. }) {
                        join::joined(&state, source);
                    }
                    answer
                }
            }
        }
        Request::Admin { cmd, .. } => match &subject {
            Some(s) if s.role == crate::proto::ROLE_ADMIN => {
                Box::pin(super::admin::admin(&state, cmd)).await
            }
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
                let denied = super::renew::refusal(&state, &s.host_id);
                match denied.or_else(|| join::rate_limit(&state, source, Charge::Check)) {
                    Some(refusal) => refusal,
                    None => {
                        let from = format!("{source} via proxy {peer}");
                        Box::pin(join::check_token(&state, token, &role, &from)).await
                    }
                }
            }
            Some(_) if version != PROTOCOL_VERSION => proto::version_mismatch(version),
            _ => Response::error(
                ErrorCode::AccessDenied,
                "token checks need a proxy identity",
            ),
        },
        Request::ProxyHello(hello) => match (subject, cert) {
            (Some(s), Some(c)) if s.role == crate::proto::ROLE_PROXY => {
                let link = super::link::proxy_link(conn, hello, s, c, sans, peer, state, shutdown);
                return Some(Box::pin(link));
            }
            _ => Response::error(
                ErrorCode::AccessDenied,
                "a proxy link needs a proxy identity issued by this cluster",
            ),
        },
        Request::Hello(hello) => match (subject, cert) {
            (Some(s), Some(c)) if s.role == crate::proto::ROLE_NODE => {
                let stream = streams::heartbeat_stream(conn, hello, s, c, peer, state, shutdown);
                return Some(Box::pin(stream));
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
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle node stream is one such task and its boxed stream: their sizes are part of
    /// auth's memory per node. The task was 62 KB when it held the handler three times over
    /// (issue 11).
    #[test]
    fn a_node_stream_task_stays_small() {
        fn task<Fut: std::future::Future<Output = ()>>(
            _: &impl Fn(net::ServerTls, SocketAddr, net::Slot, Arc<AuthState>, Shutdown) -> Fut,
        ) -> usize {
            net::accept::task_size::<fn(net::ServerTls, SocketAddr, net::Slot) -> Fut, Fut>()
        }
        fn ret7<A, B, C, D, E, F, G, R>(_: &impl Fn(A, B, C, D, E, F, G) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let conn = task(&serve_conn);
        let stream = ret7(&streams::heartbeat_stream::<net::ServerTls>);
        assert!(conn <= 1536, "a connection's task is {conn} bytes");
        assert!(stream <= 3072, "a boxed node stream is {stream} bytes");
    }
}
