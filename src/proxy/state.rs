//! What every part of a running proxy shares: its identity and TLS, the tunnels it holds, the
//! queue to auth, and what auth last told it (proxy set, web pins, trust, denials).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use smol::channel::Sender;

use super::dials;
use crate::core::limiter::Limiter;
use crate::core::rotation::{self, CertFacts};
use crate::mux::Opener;
use crate::pki;
use crate::pki::identity::Identity;
use crate::pki::live::LiveTls;
use crate::proto::{LockTarget, ProxyRef, Request, Response, TrustInfo, WebTrust};
use crate::rt::Trigger;

/// Auth's trust as pushed, with the issuer name of each CA.
pub struct Judge {
    pub info: TrustInfo,
    names: Vec<Vec<u8>>,
}

impl Judge {
    pub fn new(info: TrustInfo) -> crate::error::Result<Judge> {
        let mut names = Vec::new();
        for pem in &info.ca_certs {
            for der in pki::certs_from_pem(pem)? {
                names.push(pki::subject_name_of(&der)?);
            }
        }
        Ok(Judge { info, names })
    }

    /// Whether a tunnel whose node certificate is `cert` may go on; why not otherwise.
    pub fn still_valid(&self, cert: &CertFacts, now: i64) -> Result<(), String> {
        if cert.not_after <= now {
            return Err(format!(
                "its certificate expired at {}",
                crate::clock::rfc3339(cert.not_after)
            ));
        }
        if !self.names.contains(&cert.issuer)
            && !rotation::may_renew_late(self.info.retired_at, now)
        {
            return Err("its certificate is from a CA the cluster no longer trusts".into());
        }
        Ok(())
    }

    /// Whether a node certificate `cert` must be renewed now.
    pub fn must_renew(&self, cert: &CertFacts, now: i64) -> bool {
        let signer = self
            .names
            .get(self.info.client_signer)
            .map(Vec::as_slice)
            .unwrap_or_default();
        rotation::must_renew(
            cert,
            signer,
            self.info.changed,
            self.info.host_cert_ttl_secs,
            now,
        )
    }
}

/// A node's tunnel as the proxy holds it.
pub struct TunnelEntry {
    pub node_name: String,
    pub opener: Opener,
    pub conn: u64,
    /// Closes the tunnel (its host was locked or removed).
    pub kill: Trigger,
}

pub struct ProxyState {
    pub me: ProxyRef,
    pub public_addr: String,
    pub web_listen_addr: SocketAddr,
    pub cluster_name: String,
    /// The auth servers, and the one the link and the web API use now.
    pub auth: crate::join::servers::AuthAddrs,
    /// This proxy's identity, replaced at each renewal (and stored at `identity_path`).
    pub identity: RwLock<Identity>,
    pub identity_path: PathBuf,
    /// The certificate served and the CAs tunnels' certificates must chain to.
    pub tls: Arc<LiveTls>,
    /// How auth judges certificates now (from its `Trust` push).
    pub trust: RwLock<Option<Judge>>,
    /// Hosts and users that may not connect (auth's `Denied` push).
    pub denied: RwLock<HashMap<LockTarget, String>>,
    /// Renewals relayed to auth, awaiting their answer, by request ID.
    pub pending: Mutex<HashMap<u64, Sender<Response>>>,
    pub next_request: AtomicU64,
    /// Wakes this proxy's own renewal (auth asked for it in a heartbeat answer).
    pub renew_now: Sender<()>,
    /// Pushes of denials seen, and the last one written to disk.
    pub denials_saved: (AtomicU64, Mutex<u64>),
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

impl ProxyState {
    /// This proxy's identity now.
    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why `target` may not connect, if it may not.
    pub fn denial(&self, target: &LockTarget) -> Option<String> {
        self.denied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    /// Sends a request to auth over the link and waits (at most `timeout`) for its answer.
    pub async fn ask_over_link(
        &self,
        make: impl FnOnce(u64) -> Request,
        timeout: Duration,
    ) -> Response {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = smol::channel::bounded(1);
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                return busy();
            }
            pending.insert(id, tx);
        }
        let answer = if self.relay(make(id)) {
            crate::net::with_timeout(timeout, rx.recv())
                .await
                .and_then(|r| r.ok())
        } else {
            None
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        answer.unwrap_or_else(busy)
    }

    /// Hands an answer from auth to the request waiting for it.
    pub fn answered(&self, id: u64, answer: Response) {
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.try_send(answer);
        }
    }
}

/// Requests to auth a proxy may have waiting at once.
const MAX_PENDING: usize = 1024;

fn busy() -> Response {
    Response::error(
        crate::proto::ErrorCode::Unavailable,
        "the proxy could not reach auth in time; retry shortly",
    )
}
