//! Host CA rotation and certificate renewal, without I/O: which phase may follow which, when a
//! semi-automatic rotation moves on, which CA signs what in each phase, and whether a
//! certificate must be renewed. Time (Unix seconds) is passed in.
//!
//! Phases follow Teleport: `standby → init → update_clients → update_servers → standby`, with
//! `rollback` (then `standby`) from any phase but standby. In `init` the new CA is trusted but
//! signs nothing; in `update_clients` it signs client certificates (nodes, users, admins) while
//! servers (auth, proxies) keep certificates of the old CA, so a host that has not yet learnt
//! the new CA can still connect; in `update_servers` it signs everything; the final `standby`
//! drops the old CA. Every phase change is a trust change: hosts renew at once.

use serde::{Deserialize, Serialize};

use crate::proto::RotationInfo;

/// Teleport's default grace period (`defaults.RotationGracePeriod`).
pub const DEFAULT_GRACE_SECS: u64 = 30 * 3600;
/// After a CA is dropped, a host still connected with a certificate it signed has this long to
/// renew over its open connection before the connection is closed: an operator who runs the
/// last phases back to back does not cut off hosts that were about to renew. New connections
/// with such a certificate are refused at once.
pub const LATE_RENEWAL_SECS: i64 = 30;

/// Whether a host (or one connection) that last renewed at `last` (Unix seconds) may renew at
/// `now`: once per tenth of the certificate lifetime (between 1 s and 10 s), so a host cannot
/// make auth sign (and fsync an audit event) in a loop, and at once after a rotation phase
/// began since (`changed`), which every host must follow.
pub fn host_may_renew(last: Option<i64>, now: i64, changed: i64, ttl_secs: u64) -> bool {
    let gap = (ttl_secs / 10).clamp(1, 10) as i64;
    // `<=`: a renewal in the very second a phase began may have come just before it.
    last.map_or(true, |l| now.saturating_sub(l) >= gap || l <= changed)
}

/// What to do with a renewal or refresh attempt on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Go,
    /// Answer `rate_limited`.
    TooSoon,
    /// Too many too soon in a row: close the connection, as a heartbeat flood is.
    Flood,
}

/// Paces renewal and refresh attempts on one connection, whether they succeed or not, by the
/// rule of `host_may_renew`; after `MAX_EARLY_BEATS` refused in a row the peer is flooding.
#[derive(Debug, Default)]
pub struct RenewPacer {
    last: Option<i64>,
    refused: u32,
}

impl RenewPacer {
    /// An attempt at `now` (Unix seconds); `changed`: when the last rotation phase began.
    pub fn attempt(&mut self, now: i64, changed: i64, ttl_secs: u64) -> Pace {
        if host_may_renew(self.last, now, changed, ttl_secs) {
            self.last = Some(now);
            self.refused = 0;
            return Pace::Go;
        }
        self.refused += 1;
        if self.refused > crate::proto::pace::MAX_EARLY_BEATS {
            Pace::Flood
        } else {
            Pace::TooSoon
        }
    }
}

/// The answer to a renewal that came too soon after the last one.
pub const TOO_SOON: &str =
    "a renewal came too soon after the last one on this connection; retry shortly";

/// Whether an open connection whose certificate is from an untrusted CA may still renew: only
/// shortly after a rotation dropped that CA (`retired_at`; later phase changes do not reopen
/// the window).
pub fn may_renew_late(retired_at: i64, now: i64) -> bool {
    retired_at > 0 && now >= retired_at && now - retired_at <= LATE_RENEWAL_SECS
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Standby,
    Init,
    UpdateClients,
    UpdateServers,
    Rollback,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Standby => "standby",
            Phase::Init => "init",
            Phase::UpdateClients => "update_clients",
            Phase::UpdateServers => "update_servers",
            Phase::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Result<Phase, String> {
        [
            Phase::Standby,
            Phase::Init,
            Phase::UpdateClients,
            Phase::UpdateServers,
            Phase::Rollback,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            format!(
                "unknown rotation phase {:?}: use init, update_clients, update_servers, standby \
                 or rollback",
                s.chars().take(40).collect::<String>()
            )
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Manual,
}

/// Which of the two CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The CA in use before the rotation.
    Current,
    /// The CA the rotation introduces.
    Next,
}

/// What the caller must do to the stored CAs when a phase begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `init`: generate the next CA.
    GenerateNext,
    /// The final `standby` after `update_servers`: the next CA becomes the only one.
    Promote,
    /// `standby` after `rollback`: forget the next CA.
    DropNext,
    None,
}

/// The rotation state, stored with the CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub phase: Phase,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub started: i64,
    #[serde(default)]
    pub grace_secs: u64,
    #[serde(default)]
    pub last_rotated: i64,
    /// When the CA set or a signer last changed: certificates issued before must be renewed.
    #[serde(default)]
    pub changed: i64,
}

impl Rotation {
    /// The CA that signs a certificate for a server (auth, proxy) or a client (node, user,
    /// admin) now.
    pub fn signer(&self, server: bool) -> Which {
        match self.phase {
            Phase::UpdateServers => Which::Next,
            Phase::UpdateClients if !server => Which::Next,
            _ => Which::Current,
        }
    }

    /// Whether the next CA is trusted (it exists) now.
    pub fn trusts_next(&self) -> bool {
        self.phase != Phase::Standby
    }

    /// Starts a semi-automatic rotation over `grace_secs`.
    pub fn start_auto(&mut self, grace_secs: u64, now: i64) -> Result<Effect, String> {
        if self.phase != Phase::Standby {
            return Err(self.busy());
        }
        self.mode = Some(Mode::Auto);
        self.started = now;
        self.grace_secs = grace_secs;
        Ok(self.enter(Phase::Init, now))
    }

    /// A manual step to phase `to`.
    pub fn manual(&mut self, to: Phase, now: i64) -> Result<Effect, String> {
        use Phase::*;
        let allowed = matches!(
            (self.phase, to),
            (Standby, Init)
                | (Init, UpdateClients)
                | (UpdateClients, UpdateServers)
                | (UpdateServers, Standby)
                | (Init | UpdateClients | UpdateServers, Rollback)
                | (Rollback, Standby)
        );
        if !allowed {
            return Err(format!(
                "cannot go from phase {} to {}: the order is init, update_clients, \
                 update_servers, standby (or rollback, then standby)",
                self.phase.name(),
                to.name()
            ));
        }
        if self.phase == Standby {
            self.started = now;
            self.grace_secs = 0;
        }
        self.mode = Some(Mode::Manual);
        Ok(self.enter(to, now))
    }

    fn busy(&self) -> String {
        format!(
            "a rotation is already in progress (phase {}): wait for it, or move it on with \
             --manual --phase",
            self.phase.name()
        )
    }

    fn enter(&mut self, to: Phase, now: i64) -> Effect {
        let from = std::mem::replace(&mut self.phase, to);
        self.changed = now;
        match (from, to) {
            (_, Phase::Init) => Effect::GenerateNext,
            (Phase::UpdateServers, Phase::Standby) => {
                self.last_rotated = now;
                self.finish();
                Effect::Promote
            }
            (Phase::Rollback, Phase::Standby) => {
                self.finish();
                Effect::DropNext
            }
            _ => Effect::None,
        }
    }

    fn finish(&mut self) {
        self.mode = None;
        self.started = 0;
        self.grace_secs = 0;
    }

    /// In auto mode: when the next phase starts, and which it is.
    pub fn next_step(&self) -> Option<(i64, Phase)> {
        if self.mode != Some(Mode::Auto) {
            return None;
        }
        let third = (self.grace_secs / 3) as i64;
        match self.phase {
            Phase::Init => Some((self.started + third, Phase::UpdateClients)),
            Phase::UpdateClients => Some((self.started + 2 * third, Phase::UpdateServers)),
            Phase::UpdateServers => Some((self.started + self.grace_secs as i64, Phase::Standby)),
            _ => None,
        }
    }

    /// Moves an auto rotation on if its next phase is due; the effect to apply, if it moved.
    pub fn advance(&mut self, now: i64) -> Option<(Phase, Effect)> {
        let (at, to) = self.next_step()?;
        (now >= at).then(|| (to, self.enter(to, now)))
    }

    pub fn info(&self) -> RotationInfo {
        RotationInfo {
            state: if self.phase == Phase::Standby {
                "standby"
            } else {
                "in_progress"
            }
            .into(),
            phase: self.phase.name().into(),
            mode: match self.mode {
                Some(Mode::Auto) => "auto",
                Some(Mode::Manual) => "manual",
                None => "",
            }
            .into(),
            started: self.started,
            grace_secs: self.grace_secs,
            last_rotated: self.last_rotated,
            next_phase_at: self.next_step().map_or(0, |(at, _)| at),
        }
    }
}

/// What renewal decisions need to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The DER of the issuer's name: each CA of a cluster has its own.
    pub issuer: Vec<u8>,
    /// When auth signed it (Unix seconds).
    pub issued: i64,
    pub not_after: i64,
}

impl CertFacts {
    /// About two thirds into its life (as Nomad renews node identities).
    pub fn renew_at(&self) -> i64 {
        self.issued + (self.not_after - self.issued) * 2 / 3
    }
}

/// Whether a host presenting `cert` must renew now: it is two thirds into its life, its
/// issuer is not the CA that signs its kind now, it was issued before the last trust change,
/// or it lives far longer than the cluster's host certificate lifetime (issued by an older
/// version).
pub fn must_renew(cert: &CertFacts, signer: &[u8], changed: i64, ttl_secs: u64, now: i64) -> bool {
    let life = cert.not_after - cert.issued;
    now >= cert.renew_at()
        || cert.issuer != signer
        // In the second a phase began too: a renewal then may have come just before it.
        || cert.issued <= changed
        || life > (ttl_secs as i64).saturating_mul(3) / 2 + 60
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
