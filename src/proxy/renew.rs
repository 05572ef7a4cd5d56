//! The proxy renews its own certificate over its link to auth: at two thirds of its life, or
//! at once when auth asks (a rotation phase began). It keeps its key, so the curl pins of its
//! web certificate in install lines already printed stay valid; the new certificate is stored
//! atomically and served from the next handshake on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use smol::channel::Receiver;

use super::ProxyState;
use crate::clock::now_unix;
use crate::join::renew;
use crate::proto::Request;
use crate::rt::Shutdown;

/// How long auth has to answer a renewal.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed renewal.
const RETRY: Duration = Duration::from_secs(5);

pub async fn run(state: Arc<ProxyState>, asked: Receiver<()>, shutdown: Shutdown) {
    let m = &crate::diag::METRICS;
    let first = state.identity().not_after().unwrap_or_default();
    m.cert_expiry_proxy.store(first, Ordering::Relaxed);
    loop {
        let due = renew::due_at(&state.identity());
        let wait = Duration::from_secs(due.saturating_sub(now_unix()).max(0) as u64);
        let woke = futures_lite::future::or(async { shutdown.sleep(wait).await }, async {
            asked.recv().await.is_ok()
        })
        .await;
        if !woke || shutdown.is_fired() {
            return;
        }
        if !state.link_up.load(Ordering::Relaxed) {
            if !shutdown.sleep(Duration::from_secs(1)).await {
                return;
            }
            continue;
        }
        let renewed = renew_once(&state).await;
        let counter = match &renewed {
            Ok(()) => &m.cert_renewals,
            Err(_) => &m.cert_renewal_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = renewed {
            warn!(
                "renewing the proxy's certificate failed: {e}; retrying in {}s",
                RETRY.as_secs()
            );
            if !shutdown.sleep(RETRY).await {
                return;
            }
        }
    }
}

async fn renew_once(state: &Arc<ProxyState>) -> crate::error::Result<()> {
    let current = state.identity();
    let id = current.clone();
    let (key, csr) = smol::unblock(move || renew::csr(&id, false)).await?;
    let host_id = state.me.id.clone();
    let answer = state
        .ask_over_link(
            // Its own: the link's TLS already proved the key.
            |id| Request::RelayRenew {
                id,
                host_id,
                csr,
                cert: String::new(),
                proof: String::new(),
            },
            ANSWER_TIMEOUT,
        )
        .await;
    let path = state.identity_path.clone();
    let renewed = smol::unblock(move || renew::apply(&current, key, answer, &path)).await?;
    state.tls.set_cert(&renewed)?;
    let until = renewed.not_after()?;
    crate::diag::METRICS
        .cert_expiry_proxy
        .store(until, Ordering::Relaxed);
    *state.identity.write().unwrap_or_else(|p| p.into_inner()) = renewed;
    info!(
        "renewed the host certificate of proxy {:?}; valid until {}",
        state.me.name,
        crate::clock::rfc3339(until)
    );
    Ok(())
}
