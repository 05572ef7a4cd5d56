//! Join tokens on the auth side: the storage half. The rules (generation, expiry, roles,
//! masking, static tokens) are in `core::tokens`; this keeps the records in the `Backend`, by
//! hash, and consumes single-use tokens atomically.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::backend::{Backend, Item};
use crate::config::StaticToken;
use crate::core::tokens::{self as rules, Grant, Refusal, StaticTokens, TokenRecord};
use crate::error::{Error, Result};
use crate::proto::{ErrorCode, TokenInfo};
use crate::secret::{public_id, Token};

// Token types are protocol vocabulary; this path stays for older callers.
pub use crate::proto::roles::{parse_roles, parse_supported_roles, TokenRole};

const PREFIX: &str = "tokens/";

pub struct TokenStore {
    backend: Arc<dyn Backend>,
    statics: StaticTokens,
}

fn key(hash: &str) -> String {
    format!("{PREFIX}{hash}")
}

impl TokenStore {
    pub fn new(backend: Arc<dyn Backend>, statics: &[StaticToken]) -> Result<Self> {
        let statics = statics
            .iter()
            .map(|s| {
                Ok((
                    s.token.clone(),
                    parse_roles(&s.roles).map_err(Error::Config)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenStore {
            backend,
            statics: StaticTokens::new(statics),
        })
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
        let (token, record) = rules::issue(roles, ttl_secs, labels, now)
            .map_err(|e| Error::remote(ErrorCode::BadParameter, e.to_string()))?;
        let item = Item {
            key: key(&record.hash),
            value: serde_json::to_vec(&record).map_err(|e| Error::Storage(e.to_string()))?,
            expires: Some(record.keep_until()),
        };
        if !self.backend.create(&item, now)? {
            return Err(Error::Storage("token collision; try again".into()));
        }
        Ok((token, record.expires))
    }

    fn stored(&self, now: i64) -> Result<Vec<TokenRecord>> {
        Ok(self
            .backend
            .list(PREFIX, now)?
            .into_iter()
            .filter_map(|i| serde_json::from_slice::<TokenRecord>(&i.value).ok())
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
        out.extend(self.statics.infos());
        Ok(out)
    }

    /// Deletes a token given by value or by its public ID; returns its masked form.
    pub fn remove(&self, token_or_id: &str, now: i64) -> Result<String> {
        if self.statics.names(token_or_id) {
            return Err(Error::remote(
                ErrorCode::BadParameter,
                "this token is statically configured in auth_service.tokens and cannot be \
                 removed with tctl: delete it from the auth config and restart auth",
            ));
        }
        let by_value = Token::new(token_or_id.trim()).hash_hex();
        let target = if self.backend.get(&key(&by_value), now)?.is_some() {
            Some(by_value)
        } else if token_or_id.len() == 8 {
            let matches: Vec<TokenRecord> = self
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
            .and_then(|i| serde_json::from_slice::<TokenRecord>(&i.value).ok())
            .map(|t| t.masked())
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
        if let Some(verdict) = self.statics.judge(&hash, role) {
            return Ok(verdict);
        }
        let Some(item) = self.backend.get(&key(&hash), now)? else {
            return Ok(Err(rules::unknown(role)));
        };
        let record: TokenRecord =
            serde_json::from_slice(&item.value).map_err(|e| Error::Storage(e.to_string()))?;
        let grant = match record.judge(&hash, role, now) {
            Ok(g) => g,
            refused => return Ok(refused),
        };
        if consume && record.single_use() && !self.backend.delete(&key(&hash), now)? {
            // Someone else consumed this single-use token a moment ago.
            return Ok(Err(rules::unknown(role)));
        }
        Ok(Ok(grant))
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
}
