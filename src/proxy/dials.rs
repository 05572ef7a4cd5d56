//! Who may dial what through a tunnel, and how many dials a user may hold at once. An admin
//! identity may reach any loopback port on a node; a user identity (`tctl auth sign`) only the
//! ports of `proxy_service.user_dial_ports` (default 22: SSH), so a user certificate is not a
//! key to every service bound to a node's loopback (a Docker socket on TCP, a database).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pki::Subject;
use crate::proto::limits;
use crate::rt::{shutdown_pair, Shutdown, Trigger};

/// Dials one user identity may hold open at once on one proxy: enough for many ssh sessions
/// and scp transfers, not enough to fill a node's stream table or this proxy's descriptors.
pub const MAX_DIALS_PER_USER: usize = 32;

/// Why a dial is refused before it reaches a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not `HOST:PORT` in the characters an address may hold.
    BadAddr,
    /// A user asked for a port outside `allowed`.
    PortNotAllowed { port: u16, allowed: Vec<u16> },
    /// A user already holds `MAX_DIALS_PER_USER` dials here.
    TooMany,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadAddr => f.write_str(
                "the address to dial must be HOST:PORT on the node's loopback, e.g. \
                 127.0.0.1:22",
            ),
            Refusal::PortNotAllowed { port, allowed } => write!(
                f,
                "a user identity may dial only port(s) {allowed:?} on a node, not {port}; an \
                 admin can allow more with proxy_service.user_dial_ports"
            ),
            Refusal::TooMany => write!(
                f,
                "this user identity already holds {MAX_DIALS_PER_USER} dials through this \
                 proxy; close some sessions first"
            ),
        }
    }
}

/// The port of `HOST:PORT` (`[v6]:PORT` too), if `addr` is well formed.
pub fn port_of(addr: &str) -> Option<u16> {
    limits::check_addr(addr).ok()?;
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Checks a dial by `who` to `addr` against the policy.
pub fn check(who: &Subject, addr: &str, user_ports: &[u16]) -> Result<(), Refusal> {
    let port = port_of(addr).ok_or(Refusal::BadAddr)?;
    if who.role == crate::proto::ROLE_USER && !user_ports.contains(&port) {
        return Err(Refusal::PortNotAllowed {
            port,
            allowed: user_ports.to_vec(),
        });
    }
    Ok(())
}

/// A user's open dials: how many, and the switch that closes each.
#[derive(Default)]
struct Open {
    count: usize,
    kills: Vec<(u64, Trigger)>,
}

/// Open dials per user name on this proxy.
#[derive(Default)]
pub struct UserDials {
    open: Arc<Mutex<HashMap<String, Open>>>,
    next: AtomicU64,
}

/// Held while a user's dial is open; gives its slot back when dropped.
pub struct Slot {
    open: Arc<Mutex<HashMap<String, Open>>>,
    user: String,
    id: u64,
    /// Fires when the user is locked: the dial must close.
    pub killed: Shutdown,
}

impl UserDials {
    /// A slot for `who`'s dial: always for admins, and for a user under the cap.
    pub fn take(&self, who: &Subject) -> Result<Option<Slot>, Refusal> {
        if who.role != crate::proto::ROLE_USER {
            return Ok(None);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let entry = open.entry(who.host_id.clone()).or_default();
        if entry.count >= MAX_DIALS_PER_USER {
            return Err(Refusal::TooMany);
        }
        entry.count += 1;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (kill, killed) = shutdown_pair();
        entry.kills.push((id, kill));
        Ok(Some(Slot {
            open: self.open.clone(),
            user: who.host_id.clone(),
            id,
            killed,
        }))
    }

    /// Closes every open dial of `user` (it was locked).
    pub fn kill(&self, user: &str) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = open.get(user) {
            for (_, kill) in &entry.kills {
                kill.fire();
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = open.get_mut(&self.user) {
            entry.count -= 1;
            entry.kills.retain(|(id, _)| *id != self.id);
            if entry.count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(role: &str) -> Subject {
        Subject {
            host_id: "alice".into(),
            role: role.into(),
            cluster: "c".into(),
            node_name: String::new(),
        }
    }

    #[test]
    fn users_dial_only_their_ports_and_admins_any() {
        let user = subject(crate::proto::ROLE_USER);
        let admin = subject(crate::proto::ROLE_ADMIN);
        assert_eq!(check(&user, "127.0.0.1:22", &[22]), Ok(()));
        assert_eq!(
            check(&user, "127.0.0.1:2375", &[22]),
            Err(Refusal::PortNotAllowed {
                port: 2375,
                allowed: vec![22]
            })
        );
        assert_eq!(check(&admin, "127.0.0.1:2375", &[22]), Ok(()));
        assert_eq!(check(&admin, "[::1]:5432", &[22]), Ok(()));
    }

    #[test]
    fn malformed_addresses_are_refused_for_everyone() {
        let admin = subject(crate::proto::ROLE_ADMIN);
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":22",
            "::1:22",
            "127.0.0.1:22\nFAKE LOG LINE",
            "a b:22",
            &format!("{}:22", "a".repeat(300)),
        ] {
            assert_eq!(check(&admin, bad, &[22]), Err(Refusal::BadAddr), "{bad:?}");
        }
    }

    #[test]
    fn a_user_holds_at_most_the_cap_and_slots_come_back() {
        let dials = UserDials::default();
        let user = subject(crate::proto::ROLE_USER);
        let slots: Vec<_> = (0..MAX_DIALS_PER_USER)
            .map(|_| dials.take(&user).unwrap())
            .collect();
        assert!(matches!(dials.take(&user), Err(Refusal::TooMany)));
        assert!(dials
            .take(&subject(crate::proto::ROLE_ADMIN))
            .unwrap()
            .is_none());
        drop(slots);
        let slot = dials.take(&user).unwrap().unwrap();
        assert!(dials.open.lock().unwrap().values().all(|o| o.count == 1));
        dials.kill("alice");
        assert!(slot.killed.is_fired(), "a locked user's dials close");
    }
}
