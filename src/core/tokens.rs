//! Join-token rules, without storage: how a token is generated and stored (only its SHA-256
//! hash and last four characters), how it is masked and listed, and whether a presented token
//! allows a join at time `now` (unix seconds, passed in), and how a use-limited token counts
//! its joins down. Auth keeps the records in its `Backend`; the decisions are here so they are
//! tested without a database.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::proto::roles::TokenRole;
use crate::proto::TokenInfo;
use crate::secret::{ct_eq, mask_with_suffix, public_id, Token};

/// Expired tokens are kept this long so a join can be told "expired" rather than "unknown".
pub const EXPIRED_RETENTION_SECS: i64 = 3600;
/// Longest TTL `tctl tokens add` accepts.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// Most joins `tctl tokens add --uses` may allow.
pub const MAX_USES: u32 = 10_000;

/// A token request outside the rules; the message names the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadToken {
    /// A TTL outside 1s..=8760h.
    Ttl,
    /// `--uses` outside 1..=MAX_USES.
    Uses,
    /// `--uses` other than 1 on a bot token, which is single-use.
    BotUses,
}

impl fmt::Display for BadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadToken::Ttl => f.write_str("--ttl must be between 1s and 8760h"),
            BadToken::Uses => write!(
                f,
                "--uses must be between 1 and {MAX_USES}; leave it out for a token that any \
                 number of joins may use until it expires"
            ),
            BadToken::BotUses => f.write_str("bot tokens are single-use: leave out --uses"),
        }
    }
}

impl std::error::Error for BadToken {}

/// The stored form of a dynamic token: no secret, only what checks and listings need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub hash: String,
    last4: String,
    len: usize,
    roles: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    pub expires: i64,
    /// Joins this token still allows (`--uses`; bot tokens 1); `None`: unlimited. Absent in
    /// records written before use limits existed, which read as unlimited (bot: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses_left: Option<u32>,
    /// The limit it was created with, for the "used up" message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<u32>,
}

/// A join was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// For metrics and the audit log: invalid_token, expired_token, used_up or wrong_role.
    pub reason: &'static str,
}

/// Which token allowed a join, for the audit log (never the secret).
#[derive(Debug, Clone)]
pub struct Grant {
    pub token_id: String,
    /// Joins the token allows after this one, once it is used; `None`: unlimited, or a check
    /// that used nothing.
    pub uses_left: Option<u32>,
}

impl Grant {
    fn of(hash: &str) -> Self {
        Grant {
            token_id: public_id(hash).to_string(),
            uses_left: None,
        }
    }
}

/// A fresh random token for `roles`, valid `ttl_secs` from `now`, allowing `uses` joins
/// (`None`: any number until it expires; bot tokens always allow one), and its stored form.
pub fn issue(
    roles: &[TokenRole],
    ttl_secs: u64,
    labels: BTreeMap<String, String>,
    uses: Option<u32>,
    now: i64,
) -> Result<(Token, TokenRecord), BadToken> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(BadToken::Ttl);
    }
    if uses.is_some_and(|n| n == 0 || n > MAX_USES) {
        return Err(BadToken::Uses);
    }
    let uses = if roles.contains(&TokenRole::Bot) {
        if uses.is_some_and(|n| n != 1) {
            return Err(BadToken::BotUses);
        }
        Some(1)
    } else {
        uses
    };
    let token = Token::generate();
    let record = TokenRecord {
        hash: token.hash_hex(),
        last4: token.last4(),
        len: token.expose().len(),
        roles: roles.iter().map(|r| r.flag().to_string()).collect(),
        labels,
        expires: now.saturating_add(ttl_secs as i64),
        uses_left: uses,
        uses,
    };
    Ok((token, record))
}

/// The presented token is unknown, deleted, or (single-use) already consumed.
pub fn unknown(role: TokenRole) -> Refusal {
    Refusal {
        reason: "invalid_token",
        message: format!(
            "the token is not valid: it does not exist or was deleted; create a new one with \
             \"tctl tokens add --type={}\"",
            role.flag()
        ),
    }
}

fn wrong_role(role: TokenRole, allowed: &[TokenRole]) -> Refusal {
    let names: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
    Refusal {
        reason: "wrong_role",
        message: format!(
            "the token does not allow joining as {} (it allows {}): create one with \
             \"tctl tokens add --type={}\"",
            role.name(),
            names.join(","),
            role.flag()
        ),
    }
}

impl TokenRecord {
    pub fn roles(&self) -> Vec<TokenRole> {
        self.roles
            .iter()
            .filter_map(|r| TokenRole::parse(r).ok())
            .collect()
    }

    pub fn masked(&self) -> String {
        mask_with_suffix(self.len, &self.last4)
    }

    /// How long storage keeps the record: past expiry, so a late join hears "expired".
    pub fn keep_until(&self) -> i64 {
        self.expires.saturating_add(EXPIRED_RETENTION_SECS)
    }

    /// Joins left; `None`: unlimited. A bot token from before use limits allows one.
    pub fn uses_left(&self) -> Option<u32> {
        self.uses_left
            .or_else(|| self.roles().contains(&TokenRole::Bot).then_some(1))
    }

    /// The record after one more join, or `None` if the token counts no joins. Call it only
    /// for a token `judge` accepted (so at least one use is left).
    pub fn after_one_use(&self) -> Option<TokenRecord> {
        let left = self.uses_left()?;
        Some(TokenRecord {
            uses_left: Some(left.saturating_sub(1)),
            uses: self.uses.or(Some(1)),
            ..self.clone()
        })
    }

    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: public_id(&self.hash).to_string(),
            masked: self.masked(),
            roles: self.roles().iter().map(|r| r.name().to_string()).collect(),
            labels: self.labels.clone(),
            expires: Some(self.expires),
            is_static: false,
            uses_left: self.uses_left(),
        }
    }

    /// Whether the token hashing to `hash` may join as `role` at `now`.
    pub fn judge(&self, hash: &str, role: TokenRole, now: i64) -> Result<Grant, Refusal> {
        if !ct_eq(self.hash.as_bytes(), hash.as_bytes()) {
            return Err(unknown(role));
        }
        if self.expires <= now {
            return Err(Refusal {
                reason: "expired_token",
                message: format!(
                    "the token expired at {}; create a new one with \"tctl tokens add --type={}\"",
                    crate::clock::rfc3339(self.expires),
                    role.flag()
                ),
            });
        }
        if self.uses_left() == Some(0) {
            let n = self.uses.unwrap_or(1);
            return Err(Refusal {
                reason: "used_up",
                message: format!(
                    "the token is not valid: the join token has been used {n} time{}, its \
                     limit: create a new one with \"tctl tokens add --type={}\"",
                    if n == 1 { "" } else { "s" },
                    role.flag()
                ),
            });
        }
        let roles = self.roles();
        if !roles.contains(&role) {
            return Err(wrong_role(role, &roles));
        }
        Ok(Grant::of(&self.hash))
    }
}

/// Tokens from `auth_service.tokens`: they never expire and cannot be removed with `tctl`.
#[derive(Default)]
pub struct StaticTokens(Vec<(String, Token, Vec<TokenRole>)>);

impl StaticTokens {
    pub fn new(entries: Vec<(Token, Vec<TokenRole>)>) -> Self {
        StaticTokens(
            entries
                .into_iter()
                .map(|(t, roles)| (t.hash_hex(), t, roles))
                .collect(),
        )
    }

    /// `None` if no static token hashes to `hash`; else whether it may join as `role`.
    pub fn judge(&self, hash: &str, role: TokenRole) -> Option<Result<Grant, Refusal>> {
        let (h, _, roles) = self
            .0
            .iter()
            .find(|(h, _, _)| ct_eq(h.as_bytes(), hash.as_bytes()))?;
        Some(if roles.contains(&role) {
            Ok(Grant::of(h))
        } else {
            Err(wrong_role(role, roles))
        })
    }

    /// Whether `token_or_id` names a static token, by value or by public ID.
    pub fn names(&self, token_or_id: &str) -> bool {
        let by_value = Token::new(token_or_id.trim()).hash_hex();
        self.0
            .iter()
            .any(|(h, _, _)| *h == by_value || public_id(h) == token_or_id)
    }

    pub fn infos(&self) -> impl Iterator<Item = TokenInfo> + '_ {
        self.0.iter().map(|(h, t, roles)| TokenInfo {
            id: public_id(h).to_string(),
            masked: t.masked(),
            roles: roles.iter().map(|r| r.name().to_string()).collect(),
            labels: BTreeMap::new(),
            expires: None,
            is_static: true,
            uses_left: None,
        })
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
