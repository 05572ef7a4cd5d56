//! Join-token rules, without storage: how a token is generated and stored (only its SHA-256
//! hash and last four characters), how it is masked and listed, and whether a presented token
//! allows a join at time `now` (unix seconds, passed in). Auth keeps the records in its
//! `Backend`; the decisions are here so they are tested without a database.

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

/// A TTL outside 1s..=8760h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTtl;

impl fmt::Display for BadTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("--ttl must be between 1s and 8760h")
    }
}

impl std::error::Error for BadTtl {}

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
}

/// A join was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// For metrics: invalid_token, expired_token or wrong_role.
    pub reason: &'static str,
}

/// Which token allowed a join, for the audit log (never the secret).
#[derive(Debug, Clone)]
pub struct Grant {
    pub token_id: String,
}

impl Grant {
    fn of(hash: &str) -> Self {
        Grant {
            token_id: public_id(hash).to_string(),
        }
    }
}

/// A fresh random token for `roles`, valid `ttl_secs` from `now`, and its stored form.
pub fn issue(
    roles: &[TokenRole],
    ttl_secs: u64,
    labels: BTreeMap<String, String>,
    now: i64,
) -> Result<(Token, TokenRecord), BadTtl> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(BadTtl);
    }
    let token = Token::generate();
    let record = TokenRecord {
        hash: token.hash_hex(),
        last4: token.last4(),
        len: token.expose().len(),
        roles: roles.iter().map(|r| r.flag().to_string()).collect(),
        labels,
        expires: now.saturating_add(ttl_secs as i64),
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

    /// A bot token is consumed by its first join.
    pub fn single_use(&self) -> bool {
        self.roles().contains(&TokenRole::Bot)
    }

    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: public_id(&self.hash).to_string(),
            masked: self.masked(),
            roles: self.roles().iter().map(|r| r.name().to_string()).collect(),
            labels: self.labels.clone(),
            expires: Some(self.expires),
            is_static: false,
            uses_left: None,
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
mod tests {
    use super::*;

    fn node_token(now: i64) -> (Token, TokenRecord) {
        issue(&[TokenRole::Node], 300, BTreeMap::new(), now).unwrap()
    }

    #[test]
    fn ttl_is_bounded() {
        assert_eq!(
            issue(&[TokenRole::Node], 0, BTreeMap::new(), 0).unwrap_err(),
            BadTtl
        );
        let too_long = MAX_TTL_SECS + 1;
        assert!(issue(&[TokenRole::Node], too_long, BTreeMap::new(), 0).is_err());
        assert!(issue(&[TokenRole::Node], MAX_TTL_SECS, BTreeMap::new(), 0).is_ok());
    }

    #[test]
    fn a_token_expires_at_its_deadline_and_is_kept_an_hour_longer() {
        let (t, r) = node_token(1000);
        assert_eq!(r.expires, 1300);
        assert_eq!(r.keep_until(), 1300 + EXPIRED_RETENTION_SECS);
        assert!(r.judge(&t.hash_hex(), TokenRole::Node, 1299).is_ok());
        let err = r.judge(&t.hash_hex(), TokenRole::Node, 1300).unwrap_err();
        assert_eq!(err.reason, "expired_token");
        assert!(err.message.contains("expired at"), "{}", err.message);
    }

    #[test]
    fn wrong_role_says_what_the_token_allows() {
        let (t, r) = node_token(0);
        let err = r.judge(&t.hash_hex(), TokenRole::Proxy, 1).unwrap_err();
        assert_eq!(err.reason, "wrong_role");
        assert!(
            err.message
                .contains("does not allow joining as Proxy (it allows Node)"),
            "{}",
            err.message
        );
        assert!(err.message.contains("--type=proxy"), "{}", err.message);
    }

    #[test]
    fn another_token_is_unknown() {
        let (_, r) = node_token(0);
        let other = Token::new("not-the-token").hash_hex();
        assert_eq!(
            r.judge(&other, TokenRole::Node, 1).unwrap_err().reason,
            "invalid_token"
        );
    }

    #[test]
    fn the_stored_and_listed_forms_hold_no_secret() {
        let (t, r) = node_token(0);
        let stored = serde_json::to_string(&r).unwrap();
        let info = r.info();
        for shown in [stored, format!("{info:?}")] {
            assert!(!shown.contains(t.expose()), "{shown}");
            assert!(!shown.contains(&t.expose()[..28]), "{shown}");
        }
        assert!(info.masked.ends_with(&t.last4()));
        assert_eq!(info.roles, vec!["Node"]);
        assert!(!r.single_use());
    }

    #[test]
    fn bot_tokens_are_single_use() {
        let (_, r) = issue(&[TokenRole::Bot], 60, BTreeMap::new(), 0).unwrap();
        assert!(r.single_use());
    }

    #[test]
    fn static_tokens_match_by_hash_and_check_roles() {
        let s = StaticTokens::new(vec![(
            Token::new("static-secret"),
            vec![TokenRole::Proxy, TokenRole::Node],
        )]);
        let h = Token::new("static-secret").hash_hex();
        assert!(s.judge(&h, TokenRole::Proxy).unwrap().is_ok());
        assert_eq!(
            s.judge(&h, TokenRole::Db).unwrap().unwrap_err().reason,
            "wrong_role"
        );
        assert!(s.judge("other", TokenRole::Node).is_none());
        assert!(s.names("static-secret"));
        assert!(s.names(public_id(&h)));
        assert!(!s.names("something-else"));
        let infos: Vec<TokenInfo> = s.infos().collect();
        assert!(infos[0].is_static && infos[0].expires.is_none());
        assert!(!infos[0].masked.contains("static-secret"));
    }

    #[test]
    fn role_names_parse_both_spellings() {
        assert_eq!(TokenRole::parse("node").unwrap(), TokenRole::Node);
        assert_eq!(TokenRole::parse("Node").unwrap(), TokenRole::Node);
        assert!(TokenRole::parse("nodes")
            .unwrap_err()
            .contains("windowsdesktop"));
    }
}
