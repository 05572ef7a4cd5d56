//! Auth's own identities: the certificate it serves and the admin identity `tctl` uses on the
//! auth host. Both live `host_cert_ttl` and are re-issued here at two thirds of their life and
//! whenever a rotation phase changes which CA signs or is trusted, with no restart: the server
//! certificate is swapped under the listener, the admin identity file is replaced atomically.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{info, warn};

use super::state::{issue, AuthState};
use crate::clock::now_unix;
use crate::core::rotation::{self, Phase};
use crate::error::Result;
use crate::pki::ca::Sans;
use crate::pki::identity::Identity;
use crate::pki::Subject;
use crate::proto::{AUTH_SERVER_NAME, ROLE_ADMIN, ROLE_AUTH};
use crate::rt::Shutdown;

/// Auth's own identities and what it needs to re-issue them.
pub struct Own {
    pub host_id: String,
    pub listen_addr: SocketAddr,
    /// Where the admin identity `tctl` uses on this host lives (empty: none, in unit tests).
    pub admin_path: PathBuf,
    /// The admin identity last written or read, so the check each second reads no file.
    pub admin: Mutex<Option<Identity>>,
    /// The CA certificates the listener was last told to trust.
    pub trusted: Mutex<Vec<String>>,
    /// The certificate auth serves (`None` until the first is issued).
    pub served: Mutex<Option<Identity>>,
}

impl Own {
    fn server_subject(&self, state: &AuthState) -> Subject {
        Subject {
            host_id: self.host_id.clone(),
            role: ROLE_AUTH.to_string(),
            cluster: state.cluster_name.clone(),
            node_name: String::new(),
        }
    }

    /// The certificate auth serves: always for `teleport.cluster.local`, plus local names.
    pub fn server_identity(&self, state: &AuthState) -> Result<Identity> {
        let mut ips: Vec<IpAddr> = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
        if !self.listen_addr.ip().is_unspecified() {
            ips.push(self.listen_addr.ip());
        }
        let sans = Sans {
            dns: vec![
                AUTH_SERVER_NAME.to_string(),
                "localhost".to_string(),
                format!("{}.{}", self.host_id, state.cluster_name),
            ],
            ips,
        };
        issue(
            &state.ca.get(),
            &self.server_subject(state),
            &sans,
            state.host_ttl,
        )
    }

    /// Writes a new admin identity. Blocking.
    pub fn write_admin(&self, state: &AuthState) -> Result<Identity> {
        let id = state.issue_local_identity("admin", ROLE_ADMIN, "", &[])?;
        id.save(&self.admin_path)?;
        *self.admin.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        Ok(id)
    }

    /// The admin identity on disk if it is current (trusted CAs, signer, not due), else a new
    /// one. Blocking.
    pub fn ensure_admin(&self, state: &AuthState) -> Result<()> {
        let known = self.admin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let current = match known {
            Some(id) if self.admin_path.exists() => Some(id),
            _ => Identity::load_optional(&self.admin_path).ok().flatten(),
        };
        if let Some(id) = current {
            if !due(state, &id, ROLE_ADMIN) {
                *self.admin.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
                return Ok(());
            }
        }
        self.write_admin(state).map(|_| ())
    }
}

/// Whether one of auth's own identities must be re-issued now.
fn due(state: &AuthState, id: &Identity, role: &str) -> bool {
    let cas = state.ca.get();
    let facts = match id.cert_der().and_then(|d| crate::pki::facts_of(&d)) {
        Ok(f) => f,
        Err(_) => return true,
    };
    id.ca_pems != cas.trusted_pems()
        || rotation::must_renew(
            &facts,
            cas.signer_name(role),
            cas.rotation.changed,
            state.host_ttl_secs(),
            now_unix(),
        )
}

/// Re-issues what is due after a phase change or with age, in an order that never leaves
/// `tctl` refused: the trust of the listener, the certificate it serves, then the admin
/// identity. Blocking.
pub fn refresh(state: &AuthState) -> Result<()> {
    let own = &state.own;
    let pems = state.trusted_pems();
    let mut last = own.trusted.lock().unwrap_or_else(|p| p.into_inner());
    if *last != pems {
        let mut trusted = Vec::new();
        for pem in &pems {
            trusted.extend(crate::pki::certs_from_pem(pem)?);
        }
        state.tls.set_trust(&trusted)?;
        *last = pems;
    }
    drop(last);
    let mut served = own.served.lock().unwrap_or_else(|p| p.into_inner());
    if served.as_ref().map_or(true, |s| due(state, s, ROLE_AUTH)) {
        let id = own.server_identity(state)?;
        state.tls.set_cert(&id)?;
        info!(
            "renewed the host certificate auth serves; valid until {}",
            crate::clock::rfc3339(id.not_after()?)
        );
        *served = Some(id);
    }
    drop(served);
    if own.admin_path.as_os_str().is_empty() {
        return Ok(());
    }
    own.ensure_admin(state)
}

/// Every second: moves a semi-automatic rotation on, and keeps auth's own certificates and
/// the admin identity current.
pub async fn keep_current(state: Arc<AuthState>, shutdown: Shutdown) {
    while shutdown.sleep(Duration::from_secs(1)).await {
        let st = state.clone();
        let result = smol::unblock(move || -> Result<()> {
            if let Some((phase, _)) = st.ca.advance(now_unix())? {
                phase_changed(&st, phase, "auto");
            }
            refresh(&st)
        })
        .await;
        if let Err(e) = result {
            warn!("keeping auth's certificates current failed: {e}; retrying");
        }
        state.revoke.expire(now_unix());
    }
}

/// Logs and audits a rotation phase change made here, then applies it (`ca_changed`).
/// Blocking.
pub fn phase_changed(state: &AuthState, phase: Phase, mode: &str) {
    info!(
        "host CA rotation: phase {} ({mode}); CA pins now {}",
        phase.name(),
        state.ca_pins().join(",")
    );
    state.audit.record(
        "ca.rotation",
        &[("phase", phase.name().into()), ("mode", mode.into())],
    );
    ca_changed(state);
}

/// What every change of the CA set causes, made here or adopted from another auth server:
/// auth's own certificates follow at once (not at the next second's check), and every proxy
/// link is woken to push the new trust (heartbeat acks then carry `renew` by themselves).
/// Blocking.
pub fn ca_changed(state: &AuthState) {
    if let Err(e) = refresh(state) {
        warn!("auth's own certificates will follow the new phase at the next check: {e}");
    }
    state.revoke.wake_links();
}

/// Adopts a CA set another auth server stored, with the effects of a local change. Blocking.
pub fn sync_ca(state: &AuthState, now: i64) -> Result<bool> {
    let Some(cas) = state.ca.sync(now)? else {
        return Ok(false);
    };
    info!(
        "host CA rotation: phase {} (set by another auth server); CA pins now {}",
        cas.rotation.phase.name(),
        state.ca_pins().join(",")
    );
    ca_changed(state);
    Ok(true)
}
