//! The node agent: join once with a token, then either keep a heartbeat stream straight to auth
//! or keep a reverse tunnel to every proxy (heartbeats travel over the tunnels).

pub mod dataplane;
pub mod heartbeat;
pub mod pool;
pub mod renew;
mod tunnel;

// The enrolment client is shared with proxies; these paths stay for the agent's modules.
pub use crate::join::{self, datadir, servers};

use log::info;

use crate::config::Settings;
use crate::error::Result;
use crate::pki::identity::Identity;

use crate::rt::Shutdown;

/// The error for an identity that the cluster at hand does not accept: it names the files to
/// remove before joining again.
pub(crate) fn stale(settings: &Settings, detail: String) -> crate::error::Error {
    crate::error::Error::StaleIdentity {
        files: vec![
            settings.identity_path(),
            settings.data_dir.join(crate::config::HOST_UUID_FILE),
        ],
        detail,
    }
}

/// Whether the server refused our certificate as not issued by its CA (the TLS alert it sent,
/// read by type): our identity is stale.
pub(crate) fn rejected_our_cert(e: &crate::error::Error) -> bool {
    use crate::error::Refusal;
    let refusal = e.as_net().and_then(|n| n.refusal());
    matches!(refusal, Some(Refusal::ForeignCa | Refusal::BadSignature))
}

/// What a failure to reach the cluster before it ever answered means for a node with a stored
/// identity: a server our cluster's CA did not issue is another cluster (or an interceptor),
/// not a stale identity; a server of the wrong kind needs the address fixed. `None`: retry.
pub(crate) fn fatal_before_up(
    cluster: &str,
    e: crate::error::Error,
) -> Result<crate::error::Error, crate::error::Error> {
    use crate::error::Error;
    match e {
        Error::Net(n) if n.is_untrusted_server() => Ok(Error::ForeignServer {
            addr: n.addr.clone(),
            cluster: cluster.to_string(),
            source: n,
        }),
        Error::Net(n) if n.is_wrong_server() => Ok(Error::Net(n)),
        e @ Error::StaleIdentity { .. } => Ok(e),
        // A cluster certificate of the wrong role: the address is of another service.
        e @ Error::Pki(_) => Ok(e),
        e => Err(e),
    }
}

/// The fatal error for a refusal that says this host was removed (`tctl nodes rm`): its
/// identity will never work again, so retrying is pointless.
pub(crate) fn revoked(settings: &Settings, e: &crate::error::Error) -> Option<crate::error::Error> {
    match e {
        crate::error::Error::Remote {
            code: crate::proto::ErrorCode::NotFound,
            message,
        } if message.contains("was removed from the cluster") => {
            Some(crate::error::Error::IdentityRevoked {
                files: crate::join::renew::identity_files(&settings.identity_path()),
                detail: message.clone(),
            })
        }
        _ => None,
    }
}

/// How the node introduces itself on a heartbeat stream or a tunnel.
pub(crate) fn hello(settings: &Settings) -> crate::proto::StreamHello {
    crate::proto::StreamHello {
        version: crate::proto::PROTOCOL_VERSION,
        node_name: settings.nodename.clone(),
        server_version: crate::VERSION.to_string(),
        labels: settings.labels.clone(),
        public_addr: String::new(),
    }
}

/// Where the node reaches the cluster.
pub enum NodeTarget {
    /// An auth server in this same process: the identity it issued (without a token), then
    /// heartbeats. Only the composition root builds this.
    Local { identity: Identity, addr: String },
    /// Straight to auth on 3025.
    Auth(String),
    /// Through a proxy or a load balancer in front of proxies.
    Proxy(String),
}

/// Runs the node until shutdown. Returns an error when the node cannot join or its identity is
/// unusable; those need a person.
pub async fn run(settings: &Settings, target: NodeTarget, shutdown: Shutdown) -> Result<()> {
    let path = settings.identity_path();
    let stored = Identity::load_optional(&path)?;
    if let Some(id) = &stored {
        info!("using the identity stored in {}", path.display());
        join::check_not_expired(id, &path)?;
        // Auth checks this too; failing here names the fix before any connection is made.
        crate::proto::limits::check_hello(&hello(settings), &id.subject()?.node_name)
            .map_err(|e| crate::error::Error::Config(format!("{}: {e}", path.display())))?;
    }
    let spec = join::JoinSpec {
        role: crate::proto::ROLE_NODE,
        identity_path: path.clone(),
        dns_names: Vec::new(),
        labels: settings.labels.clone(),
    };
    match target {
        NodeTarget::Local { identity, addr } => {
            let renewer = renew::Renewer::new(identity, path);
            heartbeat::run(settings, &addr, renewer, shutdown).await
        }
        NodeTarget::Auth(addr) => {
            // Several auth servers: join through the first that answers, in order.
            let addrs = if settings.auth_servers.len() > 1 {
                settings.auth_servers.clone()
            } else {
                vec![addr]
            };
            let Some(first) = servers::first_reachable(&addrs, 0, &shutdown).await else {
                return Ok(());
            };
            let addr = addrs[first].clone();
            let identity = match stored {
                Some(id) => id,
                None => {
                    match join::join(settings, &spec, &join::Via::Auth(addr.clone()), &shutdown)
                        .await?
                    {
                        Some(id) => id,
                        None => return Ok(()),
                    }
                }
            };
            let renewer = renew::Renewer::new(identity, path);
            heartbeat::run_any(settings, &addrs, first, renewer, shutdown).await
        }
        NodeTarget::Proxy(addr) => {
            let identity = match stored {
                Some(id) => id,
                None => {
                    let via = join::Via::Proxy(addr.clone());
                    match join::join(settings, &spec, &via, &shutdown).await? {
                        Some(id) => id,
                        None => return Ok(()),
                    }
                }
            };
            pool::run(
                settings,
                &addr,
                renew::Renewer::new(identity, path),
                shutdown,
            )
            .await
        }
    }
}
