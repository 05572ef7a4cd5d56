//! Join tokens on the auth side: creation, listing, removal and the join check. A token is
//! stored only as its SHA-256 hash plus its last four characters; the secret itself is shown
//! once, to the admin who created it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Item};
use crate::config::StaticToken;
use crate::error::{Error, Result};
use crate::proto::{ErrorCode, TokenInfo};
use crate::secret::{ct_eq, mask_with_suffix, public_id, Token};

// Token types are protocol vocabulary; this path stays for older callers.
pub use crate::proto::roles::{parse_roles, parse_supported_roles, TokenRole};

const PREFIX: &str = "tokens/";
/// Expired tokens are kept this long so a join can be told "expired" rather than "unknown".
const EXPIRED_RETENTION_SECS: i64 = 3600;
/// Longest TTL `tctl tokens add` accepts.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// What is stored for a dynamic token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    hash: String,
    last4: String,
    len: usize,
    roles: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    expires: i64,
}

impl StoredToken {
    fn roles(&self) -> Vec<TokenRole> {
        self.roles
            .iter()
            .filter_map(|r| TokenRole::parse(r).ok())
            .collect()
    }

    fn info(&self) -> TokenInfo {
        TokenInfo {
            id: public_id(&self.hash).to_string(),
            masked: mask_with_suffix(self.len, &self.last4),
            roles: self.roles().iter().map(|r| r.name().to_string()).collect(),
            labels: self.labels.clone(),
            expires: Some(self.expires),
            is_static: false,
        }
    }
}

struct StaticEntry {
    hash: String,
    token: Token,
    roles: Vec<TokenRole>,
}

/// A join was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// For metrics: invalid_token, expired_token or wrong_role.
    pub reason: &'static str,
}

impl Refusal {
    fn new(reason: &'static str, message: String) -> Self {
        Refusal { message, reason }
    }
}

/// Which token allowed a join, for the audit log (never the secret).
#[derive(Debug, Clone)]
pub struct Grant {
    pub token_id: String,
}

pub struct TokenStore {
    backend: Arc<dyn Backend>,
    statics: Vec<StaticEntry>,
}

fn key(hash: &str) -> String {
    format!("{PREFIX}{hash}")
}

impl TokenStore {
    pub fn new(backend: Arc<dyn Backend>, statics: &[StaticToken]) -> Result<Self> {
        let statics = statics
            .iter()
            .map(|s| {
                Ok(StaticEntry {
                    hash: s.token.hash_hex(),
                    token: s.token.clone(),
                    roles: parse_roles(&s.roles).map_err(Error::Config)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenStore { backend, statics })
    }

    /// Creates a random token; returns it (the only time the secret exists outside the admin's
    /// terminal) and its expiry.
    pub fn add(
        &self,
        roles: &[TokenRole],
        ttl_secs: u64,
        labels: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(Token, i64)> {
        if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
            return Err(Error::remote(
                ErrorCode::BadParameter,
                "--ttl must be between 1s and 8760h",
            ));
        }
        let token = Token::generate();
        let expires = now + ttl_secs as i64;
        let stored = StoredToken {
            hash: token.hash_hex(),
            last4: token.last4(),
            len: token.expose().len(),
            roles: roles.iter().map(|r| r.flag().to_string()).collect(),
            labels,
            expires,
        };
        let item = Item {
            key: key(&stored.hash),
            value: serde_json::to_vec(&stored).map_err(|e| Error::Storage(e.to_string()))?,
            expires: Some(expires + EXPIRED_RETENTION_SECS),
        };
        if !self.backend.create(&item, now)? {
            return Err(Error::Storage("token collision; try again".into()));
        }
        Ok((token, expires))
    }

    fn stored(&self, now: i64) -> Result<Vec<StoredToken>> {
        Ok(self
            .backend
            .list(PREFIX, now)?
            .into_iter()
            .filter_map(|i| serde_json::from_slice::<StoredToken>(&i.value).ok())
            .collect())
    }

    /// Live tokens, soonest expiry first, then static ones.
    pub fn list(&self, now: i64) -> Result<Vec<TokenInfo>> {
        let mut out: Vec<TokenInfo> = self
            .stored(now)?
            .into_iter()
            .filter(|t| t.expires > now)
            .map(|t| t.info())
            .collect();
        out.sort_by_key(|t| t.expires);
        out.extend(self.statics.iter().map(|s| TokenInfo {
            id: public_id(&s.hash).to_string(),
            masked: s.token.masked(),
            roles: s.roles.iter().map(|r| r.name().to_string()).collect(),
            labels: BTreeMap::new(),
            expires: None,
            is_static: true,
        }));
        Ok(out)
    }

    /// Deletes a token given by value or by its public ID; returns its masked form.
    pub fn remove(&self, token_or_id: &str, now: i64) -> Result<String> {
        let given = Token::new(token_or_id.trim());
        let by_value = given.hash_hex();
        let is_static = |h: &str| self.statics.iter().any(|s| s.hash == h);
        if is_static(&by_value)
            || self
                .statics
                .iter()
                .any(|s| public_id(&s.hash) == token_or_id)
        {
            return Err(Error::remote(
                ErrorCode::BadParameter,
                "this token is statically configured in auth_service.tokens and cannot be \
                 removed with tctl: delete it from the auth config and restart auth",
            ));
        }
        let target = if self.backend.get(&key(&by_value), now)?.is_some() {
            Some(by_value)
        } else if token_or_id.len() == 8 {
            let matches: Vec<StoredToken> = self
                .stored(now)?
                .into_iter()
                .filter(|t| public_id(&t.hash) == token_or_id)
                .collect();
            match matches.as_slice() {
                [one] => Some(one.hash.clone()),
                [] => None,
                _ => {
                    return Err(Error::remote(
                        ErrorCode::BadParameter,
                        "several tokens share this ID: remove by the full token value",
                    ))
                }
            }
        } else {
            None
        };
        let hash = target.ok_or_else(|| {
            Error::remote(
                ErrorCode::NotFound,
                "no such token: give the token value or the ID shown by \"tctl tokens ls\"",
            )
        })?;
        let item = self.backend.get(&key(&hash), now)?;
        let masked = item
            .and_then(|i| serde_json::from_slice::<StoredToken>(&i.value).ok())
            .map(|t| mask_with_suffix(t.len, &t.last4))
            .unwrap_or_default();
        self.backend.delete(&key(&hash), now)?;
        Ok(masked)
    }

    /// Checks a join: the token exists, has not expired, allows `role`; single-use (bot) tokens
    /// are consumed atomically here.
    pub fn check_join(
        &self,
        token: &Token,
        role: TokenRole,
        now: i64,
    ) -> Result<std::result::Result<Grant, Refusal>> {
        self.check(token, role, now, true)
    }

    /// Like `check_join`; with `consume` false a single-use token stays unused.
    pub fn check(
        &self,
        token: &Token,
        role: TokenRole,
        now: i64,
        consume: bool,
    ) -> Result<std::result::Result<Grant, Refusal>> {
        let hash = token.hash_hex();
        let wrong_role = |allowed: &[TokenRole]| {
            let names: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
            Refusal::new(
                "wrong_role",
                format!(
                    "the token does not allow joining as {} (it allows {}): create one with \
                     \"tctl tokens add --type={}\"",
                    role.name(),
                    names.join(","),
                    role.flag()
                ),
            )
        };
        if let Some(s) = self
            .statics
            .iter()
            .find(|s| ct_eq(s.hash.as_bytes(), hash.as_bytes()))
        {
            if !s.roles.contains(&role) {
                return Ok(Err(wrong_role(&s.roles)));
            }
            return Ok(Ok(Grant {
                token_id: public_id(&s.hash).to_string(),
            }));
        }
        let unknown = Refusal::new(
            "invalid_token",
            format!(
                "the token is not valid: it does not exist or was deleted; create a new one \
                 with \"tctl tokens add --type={}\"",
                role.flag()
            ),
        );
        let Some(item) = self.backend.get(&key(&hash), now)? else {
            return Ok(Err(unknown));
        };
        let stored: StoredToken =
            serde_json::from_slice(&item.value).map_err(|e| Error::Storage(e.to_string()))?;
        if !ct_eq(stored.hash.as_bytes(), hash.as_bytes()) {
            return Ok(Err(unknown));
        }
        if stored.expires <= now {
            return Ok(Err(Refusal::new(
                "expired_token",
                format!(
                    "the token expired at {}; create a new one with \"tctl tokens add --type={}\"",
                    crate::clock::rfc3339(stored.expires),
                    role.flag()
                ),
            )));
        }
        let roles = stored.roles();
        if !roles.contains(&role) {
            return Ok(Err(wrong_role(&roles)));
        }
        if consume && roles.contains(&TokenRole::Bot) && !self.backend.delete(&key(&hash), now)? {
            // Someone else consumed this single-use token a moment ago.
            return Ok(Err(unknown));
        }
        Ok(Ok(Grant {
            token_id: public_id(&hash).to_string(),
        }))
    }

    pub fn purge(&self, now: i64) -> Result<usize> {
        self.backend.purge_expired(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::backend::sqlite::SqliteBackend;

    fn store() -> TokenStore {
        let statics =
            crate::config::parse_static_tokens(&["proxy,node:static-secret".into()]).unwrap();
        TokenStore::new(Arc::new(SqliteBackend::in_memory().unwrap()), &statics).unwrap()
    }

    #[test]
    fn add_check_expire_remove() {
        let s = store();
        let (t, exp) = s
            .add(&[TokenRole::Node], 300, BTreeMap::new(), 1000)
            .unwrap();
        assert_eq!(exp, 1300);
        assert!(s.check_join(&t, TokenRole::Node, 1299).unwrap().is_ok());
        let err = s
            .check_join(&t, TokenRole::Node, 1300)
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);
        let err = s
            .check_join(&t, TokenRole::Proxy, 1000)
            .unwrap()
            .unwrap_err();
        assert!(
            err.message.contains("does not allow joining as Proxy"),
            "{}",
            err.message
        );
        let listed = s.list(1000).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!listed[0].masked.contains(&t.expose()[..28]));
        s.remove(&listed[0].id, 1000).unwrap();
        let err = s
            .check_join(&t, TokenRole::Node, 1000)
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[test]
    fn static_tokens_join_and_cannot_be_removed() {
        let s = store();
        let t = Token::new("static-secret");
        assert!(s.check_join(&t, TokenRole::Proxy, 0).unwrap().is_ok());
        assert!(s.check_join(&t, TokenRole::Db, 0).unwrap().is_err());
        assert!(s.remove("static-secret", 0).is_err());
        let listed = s.list(0).unwrap();
        assert!(listed.iter().any(|i| i.is_static && i.expires.is_none()));
    }

    #[test]
    fn bot_tokens_are_single_use() {
        let s = store();
        let (t, _) = s.add(&[TokenRole::Bot], 300, BTreeMap::new(), 0).unwrap();
        assert!(s.check_join(&t, TokenRole::Bot, 1).unwrap().is_ok());
        assert!(s.check_join(&t, TokenRole::Bot, 2).unwrap().is_err());
    }

    #[test]
    fn stored_form_holds_no_secret() {
        let backend = Arc::new(SqliteBackend::in_memory().unwrap());
        let s = TokenStore::new(backend.clone(), &[]).unwrap();
        let (t, _) = s.add(&[TokenRole::Node], 60, BTreeMap::new(), 0).unwrap();
        for item in backend.list("", 0).unwrap() {
            let all = format!("{}{}", item.key, String::from_utf8_lossy(&item.value));
            assert!(!all.contains(t.expose()));
        }
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
