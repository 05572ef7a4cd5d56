//! The cluster's host CAs as auth holds them: the current one, the next one during a rotation,
//! and the rotation state, stored together under one key so they change in one write. The
//! phase rules are in `core::rotation`; this applies their effects and answers "which CA signs
//! this" and "which CAs are trusted".

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Item};
use crate::core::rotation::{Effect, Phase, Rotation, Which};
use crate::error::{Error, Result};
use crate::pki::ca::CertAuthority;
use crate::pki::pin::Pin;
use crate::proto::{TrustInfo, ROLE_AUTH, ROLE_PROXY};

pub const CA_KEY: &str = "authorities/host";

#[derive(Serialize, Deserialize, Clone)]
struct Pair {
    cert_pem: String,
    key_pem: String,
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cluster_name: String,
    cert_pem: String,
    key_pem: String,
    #[serde(default)]
    next: Option<Pair>,
    #[serde(default)]
    rotation: Rotation,
    /// The CA the last rotation dropped (certificate only), for late renewals, and when.
    #[serde(default)]
    retired: Option<String>,
    #[serde(default)]
    retired_at: i64,
    /// Bumped by every write (the compare-and-swap orders them), so a reader tells a newer
    /// record from an older one; 0 in records written before it existed.
    #[serde(default)]
    revision: u64,
}

/// One consistent view of the CAs.
pub struct Cas {
    pub current: CertAuthority,
    pub next: Option<CertAuthority>,
    pub rotation: Rotation,
    /// The certificate of the CA the last rotation (or rollback) dropped, and when (Unix
    /// seconds): connections with its certificates may renew for a short while after.
    pub retired: Option<String>,
    pub retired_at: i64,
    /// The stored record's revision (see `StoredCa::revision`).
    revision: u64,
    current_name: Vec<u8>,
    next_name: Option<Vec<u8>>,
    /// The stored record this view was read from or written as: a change is a
    /// compare-and-swap against it, so of two auth servers moving the same rotation on at the
    /// same moment only one does.
    stored: Vec<u8>,
}

impl Cas {
    fn new(
        current: CertAuthority,
        next: Option<CertAuthority>,
        rotation: Rotation,
        retired: (Option<String>, i64),
    ) -> Result<Cas> {
        let name = |ca: &CertAuthority| crate::pki::subject_name_of(&ca.cert_der()?);
        Ok(Cas {
            current_name: name(&current)?,
            next_name: next.as_ref().map(name).transpose()?,
            current,
            next,
            rotation,
            retired: retired.0,
            retired_at: retired.1,
            revision: 0,
            stored: Vec::new(),
        })
    }

    fn which(&self, w: Which) -> &CertAuthority {
        match (w, &self.next) {
            (Which::Next, Some(n)) => n,
            _ => &self.current,
        }
    }

    /// The CA that signs a certificate for `role` now.
    pub fn signer(&self, role: &str) -> &CertAuthority {
        self.which(self.rotation.signer(is_server(role)))
    }

    /// The issuer name certificates for `role` carry when signed now.
    pub fn signer_name(&self, role: &str) -> &[u8] {
        match (self.rotation.signer(is_server(role)), &self.next_name) {
            (Which::Next, Some(n)) => n,
            _ => &self.current_name,
        }
    }

    /// Whether a certificate with this issuer name chains to a CA trusted now.
    pub fn trusts_issuer(&self, issuer: &[u8]) -> bool {
        issuer == self.current_name.as_slice()
            || (self.rotation.trusts_next() && self.next_name.as_deref() == Some(issuer))
    }

    /// The CAs trusted now: the current one, and the next one during a rotation.
    pub fn trusted(&self) -> Vec<&CertAuthority> {
        let mut out = vec![&self.current];
        if self.rotation.trusts_next() {
            out.extend(self.next.as_ref());
        }
        out
    }

    /// Signatures over `pems` and the certificate handed out with them, by each CA key auth
    /// holds: a host verifies one with a CA it already trusts before it accepts `pems`.
    pub fn vouch(&self, pems: &[String], cert_pem: &str) -> Result<Vec<String>> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .map(|ca| crate::pki::proof::sign_ca_list(&ca.key_pem, pems, cert_pem))
            .collect()
    }

    pub fn trusted_pems(&self) -> Vec<String> {
        self.trusted().iter().map(|c| c.cert_pem.clone()).collect()
    }

    /// The pins of the trusted CAs, as `tctl status` and join instructions show them.
    pub fn pins(&self) -> Vec<String> {
        self.trusted()
            .iter()
            .filter_map(|c| c.cert_der().ok())
            .filter_map(|d| Pin::of_cert(&d).ok())
            .map(|p| p.to_string())
            .collect()
    }

    /// What proxies need to judge the certificates of their tunnels.
    pub fn trust_info(&self, ttl_secs: u64) -> TrustInfo {
        let trusted = self.trusted();
        let index = |w: Which| {
            let want = self.which(w);
            trusted
                .iter()
                .position(|c| c.cert_pem == want.cert_pem)
                .unwrap_or(0)
        };
        TrustInfo {
            ca_certs: trusted.iter().map(|c| c.cert_pem.clone()).collect(),
            client_signer: index(self.rotation.signer(false)),
            server_signer: index(self.rotation.signer(true)),
            changed: self.rotation.changed,
            retired_at: self.retired_at,
            host_cert_ttl_secs: ttl_secs,
        }
    }
}

pub fn is_server(role: &str) -> bool {
    role == ROLE_AUTH || role == ROLE_PROXY
}

/// The CAs, shared by every task of auth; changed only through `apply`.
pub struct CaSet {
    cluster_name: String,
    backend: Arc<dyn Backend>,
    cas: RwLock<Arc<Cas>>,
}

impl CaSet {
    /// Loads the CAs, creating the first one on a new cluster. Blocking.
    pub fn load_or_create(backend: Arc<dyn Backend>, cluster_name: &str, now: i64) -> Result<Self> {
        let cas = match backend.get(CA_KEY, now)? {
            Some(item) => decode(&item.value, cluster_name)?,
            None => {
                let ca = CertAuthority::generate(cluster_name)?;
                let mut cas = Cas::new(ca, None, Rotation::default(), (None, 0))?;
                cas.revision = 1;
                let item = encode(cluster_name, &cas)?;
                if backend.create(&item, now)? {
                    log::info!("created the host CA of cluster {cluster_name:?}");
                    cas.stored = item.value;
                    cas
                } else {
                    // Another process created it at the same moment: use theirs.
                    let item = backend
                        .get(CA_KEY, now)?
                        .ok_or_else(|| Error::Storage("the stored CA vanished".into()))?;
                    decode(&item.value, cluster_name)?
                }
            }
        };
        Ok(CaSet {
            cluster_name: cluster_name.to_string(),
            backend,
            cas: RwLock::new(Arc::new(cas)),
        })
    }

    /// The current view; cheap to take, consistent while held.
    pub fn get(&self) -> Arc<Cas> {
        self.cas.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the stored record and adopts it if another auth server changed it. Blocking.
    /// Returns the new view, or `None` when nothing changed.
    pub fn sync(&self, now: i64) -> Result<Option<Arc<Cas>>> {
        for _ in 0..2 {
            // The read is made without the lock, so a local step may commit and show a newer
            // record meanwhile: adopting the read then would move the rotation (and trust)
            // backwards. A view unchanged since before the read is not newer than the read
            // (views are shown only once stored); otherwise only a higher revision is adopted.
            let seen = self.get();
            let item = self
                .backend
                .get(CA_KEY, now)?
                .ok_or_else(|| Error::Storage("the stored CA vanished".into()))?;
            if seen.stored == item.value {
                return Ok(None);
            }
            let cas = decode(&item.value, &self.cluster_name)?;
            let mut guard = self.cas.write().unwrap_or_else(|p| p.into_inner());
            if guard.stored == item.value {
                return Ok(None);
            }
            if Arc::ptr_eq(&guard, &seen) || cas.revision > guard.revision {
                let cas = Arc::new(cas);
                *guard = cas.clone();
                return Ok(Some(cas));
            }
            // The view moved on during the read (a record without revisions cannot say which
            // is newer): read again.
        }
        Ok(None)
    }

    /// Changes the rotation with `step` and applies its effect (a new CA, a promotion, a
    /// dropped CA); stored before it is visible, and announced to the other auth servers.
    /// Blocking. Returns the new view, or `None` when `step` made no change. Fails when
    /// another auth server changed the record since this one read it (see `try_apply`).
    pub fn apply(
        &self,
        step: impl FnOnce(&mut Rotation) -> std::result::Result<Option<Effect>, String>,
    ) -> Result<Option<Arc<Cas>>> {
        match self.try_apply(step)? {
            Applied::Changed(cas) => Ok(Some(cas)),
            Applied::Unchanged => Ok(None),
            Applied::Stale => Err(Error::Storage(STALE.into())),
        }
    }

    /// Like `apply`, telling a stale view apart.
    pub fn try_apply(
        &self,
        step: impl FnOnce(&mut Rotation) -> std::result::Result<Option<Effect>, String>,
    ) -> Result<Applied> {
        // No lock is held while the new CA is generated and stored: readers on the executor
        // never wait for the database. Two local steps from one view race in the store like
        // two servers' do.
        let guard = self.get();
        let mut rotation = guard.rotation.clone();
        let effect = match step(&mut rotation)
            .map_err(|e| Error::remote(crate::proto::ErrorCode::BadParameter, e))?
        {
            Some(e) => e,
            None => return Ok(Applied::Unchanged),
        };
        let mut retired = (guard.retired.clone(), guard.retired_at);
        let now = rotation.changed;
        let (current, next) = match effect {
            Effect::GenerateNext => {
                // Unique even for rotations started in the same second: certificates are told
                // apart by their issuer's name.
                let generation = format!("{}-{}", rotation.started, crate::secret::new_uuid());
                let next = CertAuthority::generate_named(&self.cluster_name, Some(&generation))?;
                (guard.current.clone(), Some(next))
            }
            Effect::Promote => {
                let next = guard.next.clone().ok_or_else(|| {
                    Error::Storage("a rotation reached standby without a new CA".into())
                })?;
                retired = (Some(guard.current.cert_pem.clone()), now);
                (next, None)
            }
            Effect::DropNext => {
                retired = (guard.next.as_ref().map(|n| n.cert_pem.clone()), now);
                (guard.current.clone(), None)
            }
            Effect::None => (guard.current.clone(), guard.next.clone()),
        };
        let mut cas = Cas::new(current, next, rotation, retired)?;
        cas.revision = guard.revision + 1;
        let item = encode(&self.cluster_name, &cas)?;
        let expected = Item {
            key: CA_KEY.into(),
            value: guard.stored.clone(),
            expires: None,
        };
        if !self.backend.compare_and_swap(&expected, &item, now)? {
            return Ok(Applied::Stale);
        }
        cas.stored = item.value;
        let cas = Arc::new(cas);
        {
            let mut view = self.cas.write().unwrap_or_else(|p| p.into_inner());
            // Unless the watcher adopted another record meanwhile: its next pass (at once, on
            // our announcement) settles which one is stored.
            if view.stored == guard.stored {
                *view = cas.clone();
            }
        }
        if let Err(e) = self.backend.notify(super::backend::TOPIC_CA) {
            log::warn!("could not announce the rotation to other auth servers: {e}");
        }
        Ok(Applied::Changed(cas))
    }

    /// Moves a semi-automatic rotation on when its next phase is due. Blocking. When another
    /// auth server moved it first, this one leaves it to the watcher to adopt.
    pub fn advance(&self, now: i64) -> Result<Option<(Phase, Arc<Cas>)>> {
        let mut moved = None;
        let applied = self.try_apply(|r| {
            Ok(r.advance(now).map(|(phase, effect)| {
                moved = Some(phase);
                effect
            }))
        })?;
        Ok(match applied {
            Applied::Changed(c) => moved.map(|p| (p, c)),
            Applied::Unchanged | Applied::Stale => None,
        })
    }
}

/// What `try_apply` did.
pub enum Applied {
    Changed(Arc<Cas>),
    Unchanged,
    /// Another auth server changed the stored record first; nothing was written.
    Stale,
}

const STALE: &str = "another auth server changed the CA rotation at the same moment; retry";

fn decode(value: &[u8], cluster_name: &str) -> Result<Cas> {
    let stored: StoredCa = serde_json::from_slice(value)
        .map_err(|e| Error::Storage(format!("stored CA is unreadable: {e}")))?;
    if stored.cluster_name != cluster_name {
        return Err(Error::Config(format!(
            "this data_dir holds the CA of cluster {:?}, but the config names the cluster \
             {cluster_name:?}: set auth_service.cluster_name back, or use a new data_dir",
            stored.cluster_name
        )));
    }
    let current = CertAuthority {
        cert_pem: stored.cert_pem,
        key_pem: stored.key_pem,
    };
    let next = stored.next.map(|p| CertAuthority {
        cert_pem: p.cert_pem,
        key_pem: p.key_pem,
    });
    let mut cas = Cas::new(
        current,
        next,
        stored.rotation,
        (stored.retired, stored.retired_at),
    )?;
    cas.revision = stored.revision;
    cas.stored = value.to_vec();
    Ok(cas)
}

fn encode(cluster_name: &str, cas: &Cas) -> Result<Item> {
    let stored = StoredCa {
        cluster_name: cluster_name.to_string(),
        cert_pem: cas.current.cert_pem.clone(),
        key_pem: cas.current.key_pem.clone(),
        next: cas.next.as_ref().map(|n| Pair {
            cert_pem: n.cert_pem.clone(),
            key_pem: n.key_pem.clone(),
        }),
        rotation: cas.rotation.clone(),
        retired: cas.retired.clone(),
        retired_at: cas.retired_at,
        revision: cas.revision,
    };
    Ok(Item {
        key: CA_KEY.into(),
        value: serde_json::to_vec(&stored).map_err(|e| Error::Storage(e.to_string()))?,
        expires: None,
    })
}

#[cfg(test)]
#[path = "cas_tests.rs"]
mod tests;
