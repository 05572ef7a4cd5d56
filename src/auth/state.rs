//! The state every part of a running Auth Service shares: CAs, tokens, inventory, limiter,
//! locks, and the certificate auth serves.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cas::{CaSet, Cas};
use super::revoke::Revocations;
use super::tokens::TokenStore;
use crate::core::inventory::Inventory;
use crate::core::limiter::Limiter;
use crate::error::Result;
use crate::pki::ca::{Csr, Sans};
use crate::pki::identity::Identity;
use crate::pki::live::LiveTls;
use crate::pki::Subject;

/// Heartbeats may be missed this many times before a silent node is dropped.
const MISSED_BEATS: u32 = 3;

/// Shared state of a running Auth Service.
pub struct AuthState {
    pub cluster_name: String,
    /// The host CAs (two during a rotation).
    pub(crate) ca: CaSet,
    /// `auth_service.host_cert_ttl`.
    pub(crate) host_ttl: Duration,
    pub(crate) tokens: TokenStore,
    pub(crate) inventory: Mutex<Inventory>,
    pub(crate) limiter: Mutex<Limiter>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) advertise_addr: String,
    pub(crate) started: Instant,
    pub(crate) next_conn: AtomicU64,
    pub(crate) audit: super::audit::AuditLog,
    pub(crate) revoke: Arc<Revocations>,
    /// The certificate auth serves and the CAs its clients' certificates must chain to.
    pub(crate) tls: Arc<LiveTls>,
    /// When each host last renewed (Unix seconds): renewals are paced per host, whatever the
    /// connection or proxy they come through.
    pub(crate) renewed: Mutex<super::renew::Renewals>,
    /// Auth's own certificate and the admin identity.
    pub(crate) own: super::own::Own,
    /// Which backend holds the state, for `tctl status` (never a password).
    pub(crate) storage: String,
    /// The store itself, for the shared presence and the change watcher.
    pub(crate) backend: Arc<dyn super::backend::Backend>,
}

impl AuthState {
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64 * u64::from(MISSED_BEATS)
    }

    pub(crate) fn host_ttl_secs(&self) -> u64 {
        self.host_ttl.as_secs()
    }

    /// Whether a client certificate chains to a CA trusted now.
    pub fn verifies_client(&self, cert: &rustls_pki_types::CertificateDer<'_>) -> bool {
        self.tls.verifies(cert)
    }

    /// Like `verifies_client`, and shortly after a rotation also a certificate of the CA it
    /// dropped (a host renewing late over an open connection).
    pub fn verifies_renewing(&self, cert: &rustls_pki_types::CertificateDer<'_>, now: i64) -> bool {
        if self.tls.verifies(cert) {
            return true;
        }
        let cas = self.ca.get();
        match &cas.retired {
            Some(pem) if crate::core::rotation::may_renew_late(cas.retired_at, now) => {
                crate::pki::certs_from_pem(pem)
                    .is_ok_and(|roots| crate::pki::live::verifies_with(&roots, cert))
            }
            _ => false,
        }
    }

    /// The pins of the trusted CAs (two during a rotation).
    pub fn ca_pins(&self) -> Vec<String> {
        self.ca.get().pins()
    }

    /// The CA certificates a host must trust now.
    pub fn trusted_pems(&self) -> Vec<String> {
        self.ca.get().trusted_pems()
    }

    /// The names a host certificate carries: its UUID (and UUID.cluster), and for a proxy its
    /// public names and the proxy server name.
    pub fn host_sans(&self, host_id: &str, role: &str, names: &[String]) -> Sans {
        let mut sans = Sans {
            dns: vec![
                host_id.to_string(),
                format!("{host_id}.{}", self.cluster_name),
            ],
            ips: Vec::new(),
        };
        if role == crate::proto::ROLE_PROXY {
            for n in names {
                match n.parse::<IpAddr>() {
                    Ok(ip) => sans.ips.push(ip),
                    Err(_) if !sans.dns.contains(n) => sans.dns.push(n.clone()),
                    Err(_) => {}
                }
            }
            if !sans
                .dns
                .iter()
                .any(|d| d == crate::proto::PROXY_SERVER_NAME)
            {
                sans.dns.push(crate::proto::PROXY_SERVER_NAME.to_string());
            }
        }
        sans
    }

    /// Signs a host's CSR with the CA that signs `subject.role` now, for `host_cert_ttl`.
    /// Returns the certificate and the CAs to trust with it. Blocking.
    pub fn sign_host(
        &self,
        csr: &Csr,
        subject: &Subject,
        sans: &Sans,
    ) -> Result<(String, Vec<String>)> {
        let (cert, pems, _) = self.sign_vouched(csr, subject, sans)?;
        Ok((cert, pems))
    }

    /// Like `sign_host`, with each CA's signature over the CA set (for renewals, whose answer
    /// a proxy may relay). Blocking.
    pub fn sign_vouched(
        &self,
        csr: &Csr,
        subject: &Subject,
        sans: &Sans,
    ) -> Result<(String, Vec<String>, Vec<String>)> {
        let cas = self.ca.get();
        let cert = cas
            .signer(&subject.role)
            .sign_host(csr, subject, sans, self.host_ttl)?;
        let pems = cas.trusted_pems();
        let vouch = cas.vouch(&pems, &cert)?;
        Ok((cert, pems, vouch))
    }

    /// Issues an identity for a service of this process (no token needed: same trust domain).
    /// `names` become SANs only for a proxy; a node's name goes into its subject. Blocking.
    pub fn issue_local_identity(
        &self,
        host_id: &str,
        role: &str,
        node_name: &str,
        names: &[String],
    ) -> Result<Identity> {
        let subject = Subject {
            host_id: host_id.to_string(),
            role: role.to_string(),
            cluster: self.cluster_name.clone(),
            node_name: node_name.to_string(),
        };
        let sans = self.host_sans(host_id, role, names);
        let cas = self.ca.get();
        let id = issue(&cas, &subject, &sans, self.host_ttl)?;
        self.audit.record(
            "cert.issued",
            &[
                ("host_id", host_id.into()),
                ("role", role.into()),
                ("via", "local".into()),
                (
                    "expires",
                    crate::clock::rfc3339(id.not_after().unwrap_or_default()).into(),
                ),
            ],
        );
        Ok(id)
    }
}

/// A key pair and a certificate for `subject` from the CA that signs its role now.
pub fn issue(cas: &Cas, subject: &Subject, sans: &Sans, validity: Duration) -> Result<Identity> {
    let (key_pem, cert_pem) = cas
        .signer(&subject.role)
        .issue_local(subject, sans, validity)?;
    Ok(Identity {
        key_pem,
        cert_pem,
        ca_pems: cas.trusted_pems(),
    })
}
