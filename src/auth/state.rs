//! The state every part of a running Auth Service shares: CA, tokens, inventory, limiter.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tokens::TokenStore;
use crate::core::inventory::Inventory;
use crate::core::limiter::Limiter;
use crate::error::Result;
use crate::pki::ca::{CertAuthority, Sans, HOST_CERT_VALIDITY};
use crate::pki::identity::Identity;
use crate::pki::Subject;

/// Heartbeats may be missed this many times before a silent node is dropped.
const MISSED_BEATS: u32 = 3;

/// Shared state of a running Auth Service.
pub struct AuthState {
    pub cluster_name: String,
    pub(crate) ca: CertAuthority,
    pub(crate) ca_pins: Vec<String>,
    pub(crate) tokens: TokenStore,
    pub(crate) inventory: Mutex<Inventory>,
    pub(crate) limiter: Mutex<Limiter>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) advertise_addr: String,
    pub(crate) started: Instant,
    pub(crate) next_conn: AtomicU64,
    pub(crate) audit: super::audit::AuditLog,
}

impl AuthState {
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64 * u64::from(MISSED_BEATS)
    }

    /// Issues an identity for a service of this process (no token needed: same trust domain).
    /// `names` become SANs only for a proxy; a node's name goes into its subject.
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
                    Err(_) => sans.dns.push(n.clone()),
                }
            }
            sans.dns.push(crate::proto::PROXY_SERVER_NAME.to_string());
        }
        let (key_pem, cert_pem) = self.ca.issue_local(&subject, &sans, HOST_CERT_VALIDITY)?;
        self.audit.record(
            "cert.issued",
            &[
                ("host_id", host_id.into()),
                ("role", role.into()),
                ("via", "local".into()),
            ],
        );
        Ok(Identity {
            key_pem,
            cert_pem,
            ca_pems: vec![self.ca.cert_pem.clone()],
        })
    }
}
