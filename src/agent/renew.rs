//! The node's identity while it runs: renewed over a heartbeat stream or one tunnel, with a new
//! key each time, stored atomically; every other tunnel then shows the new certificate to its
//! proxy (`Refresh`) so no tunnel is re-established. New connections use the newest identity.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use log::info;
use rustls::ClientConfig;

use crate::clock::{now_unix, rfc3339};
use crate::diag::METRICS;
use crate::error::{Error, Result};
use crate::join::renew;
use crate::net::Framed;
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::proto::{Request, Response};

/// How long the far side has to answer a renewal or a refresh.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Renewer {
    identity: RwLock<Identity>,
    path: PathBuf,
    /// Counts renewals: a tunnel that showed an older certificate refreshes.
    generation: AtomicU64,
    busy: AtomicBool,
    /// The path whose last renewal failed or went unanswered, and when: with another path
    /// held, it is not used for `AVOID_FAILED` (a proxy that asks for renewals and never
    /// answers them cannot keep the node from renewing over the others).
    failed: Mutex<Option<(String, Instant)>>,
    /// Tunnels held now (0 on a direct stream, the only path).
    paths: AtomicUsize,
}

/// How long a path whose renewal failed is skipped while another is held.
const AVOID_FAILED: Duration = Duration::from_secs(60);

/// Counts a tunnel as a path for renewals while it lives.
pub struct PathGuard(Arc<Renewer>);

impl Drop for PathGuard {
    fn drop(&mut self) {
        self.0.paths.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears the busy flag however a renewal ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Renewer {
    pub fn new(identity: Identity, path: PathBuf) -> Arc<Renewer> {
        let expiry = identity.not_after().unwrap_or_default();
        METRICS.cert_expiry_node.store(expiry, Ordering::Relaxed);
        Arc::new(Renewer {
            identity: RwLock::new(identity),
            path,
            generation: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            failed: Mutex::new(None),
            paths: AtomicUsize::new(0),
        })
    }

    /// Registers a tunnel as a path for renewals until the guard is dropped.
    pub fn path(self: &Arc<Self>) -> PathGuard {
        self.paths.fetch_add(1, Ordering::AcqRel);
        PathGuard(self.clone())
    }

    /// Whether `via` failed lately while another path is there to try.
    fn avoided(&self, via: &str) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let recent = failed
            .as_ref()
            .is_some_and(|(v, at)| v == via && at.elapsed() < AVOID_FAILED);
        recent && self.paths.load(Ordering::Acquire) > 1
    }

    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the certificate is two thirds into its life.
    pub fn due(&self) -> bool {
        now_unix() >= renew::due_at(&self.identity())
    }

    /// A client config with the newest identity, trusting its CAs, for a server of `role`.
    pub fn client_config(&self, role: ServerRole) -> Result<Arc<ClientConfig>> {
        let id = self.identity();
        verify::client_config(&id.ca_ders()?, Some(&id), role)
    }

    /// Renews over `conn` (a heartbeat stream or a tunnel's control stream, between beats).
    /// `Ok(false)`: another renewal is under way elsewhere.
    pub async fn renew_over<S>(&self, conn: &mut Framed<S>, via: &str) -> Result<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.avoided(via) || self.busy.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let _busy = Busy(&self.busy);
        let renewed = self.renew(conn, via).await;
        let counter = match &renewed {
            Ok(()) => &METRICS.cert_renewals,
            Err(_) => &METRICS.cert_renewal_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match &renewed {
            Ok(()) => *failed = None,
            // "Too soon" is pacing, not a fault of the path.
            Err(Error::Remote {
                code: crate::proto::ErrorCode::RateLimited,
                ..
            }) => {}
            Err(_) => *failed = Some((via.to_string(), Instant::now())),
        }
        drop(failed);
        renewed.map(|()| true)
    }

    async fn renew<S>(&self, conn: &mut Framed<S>, via: &str) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let current = self.identity();
        let id = current.clone();
        let (key, csr, proof) = smol::unblock(move || -> Result<_> {
            let (key, csr) = renew::csr(&id, true)?;
            let proof = crate::pki::proof::sign(&id.key_pem, &csr)?;
            Ok((key, csr, proof))
        })
        .await?;
        conn.send(&Request::Renew { csr, proof })
            .await
            .map_err(|e| Error::net(via, e))?;
        let answer = answer(conn, via).await?;
        let path = self.path.clone();
        let renewed = smol::unblock(move || renew::apply(&current, key, answer, &path)).await?;
        let until = renewed.not_after()?;
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = renewed;
        self.generation.fetch_add(1, Ordering::AcqRel);
        METRICS.cert_expiry_node.store(until, Ordering::Relaxed);
        info!(
            "renewed the host certificate over {via}; valid until {}",
            rfc3339(until)
        );
        Ok(())
    }

    /// Shows the newest certificate to the proxy at the end of `conn`.
    pub async fn refresh_over<S>(&self, conn: &mut Framed<S>, via: &str) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cert = self.identity().cert_pem;
        conn.send(&Request::Refresh { cert })
            .await
            .map_err(|e| Error::net(via, e))?;
        match answer(conn, via).await? {
            Response::Refreshed { .. } => Ok(()),
            Response::Error { code, message } => Err(Error::Remote { code, message }),
            other => Err(crate::net::rpc::unexpected(other)),
        }
    }
}

/// Logs a failed renewal or refresh: a "too soon" answer (another tunnel renewed a moment
/// ago, or a phase began right after the last renewal) is retried at the next beat and is no
/// news; anything else is a warning.
pub fn log_failure(what: &str, via: &str, e: &Error) {
    let soon = matches!(
        e,
        Error::Remote {
            code: crate::proto::ErrorCode::RateLimited,
            ..
        }
    );
    if soon {
        log::debug!("{what} over {via} was deferred: {e}");
    } else {
        log::warn!("{what} over {via} failed: {e}");
    }
}

async fn answer<S>(conn: &mut Framed<S>, via: &str) -> Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match crate::net::with_timeout(ANSWER_TIMEOUT, conn.recv::<Response>()).await {
        Some(Ok(Some(r))) => Ok(r),
        Some(Ok(None)) => Err(Error::net(via, "the stream closed")),
        Some(Err(e)) => Err(e),
        None => Err(Error::net(via, "no answer in time")),
    }
}
