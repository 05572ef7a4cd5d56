//! Join tokens on the auth side: the storage half. The rules (generation, expiry, roles,
//! masking, static tokens) are in `core::tokens`; this keeps the records in the `Backend`, by
//! hash, and counts the joins of use-limited tokens down atomically (compare-and-swap), so
//! exactly N joins pass a token made with `--uses=N` however many auth servers, proxies and
//! threads race for it.

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
/// Attempts to count a use down before giving up. A swap fails only when another join won
/// the same value, and at most `MAX_USES` joins can ever win, so this is never reached in
/// practice; it bounds the loop all the same.
const MAX_SWAPS: usize = 256;

pub struct TokenStore {
    backend: Arc<dyn Backend>,
    statics: StaticTokens,
}

fn key(hash: &str) -> String {
    format!("{PREFIX}{hash}")
}

fn read(item: &Item) -> Result<TokenRecord> {
    serde_json::from_slice(&item.value).map_err(|e| Error::Storage(e.to_string()))
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

    /// Creates a random token allowing `uses` joins (`None`: any number); returns it (the only
    /// time the secret exists outside the admin's terminal) and its expiry.
    pub fn add(
        &self,
        roles: &[TokenRole],
        ttl_secs: u64,
        labels: BTreeMap<String, String>,
        uses: Option<u32>,
        now: i64,
    ) -> Result<(Token, i64)> {
        let (token, record) = rules::issue(roles, ttl_secs, labels, uses, now)
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

    /// Deletes a token given by value or by its public ID; returns its masked form and its
    /// public ID.
    pub fn remove(&self, token_or_id: &str, now: i64) -> Result<(String, String)> {
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
        Ok((masked, public_id(&hash).to_string()))
    }

    /// Whether `token` may join as `role` now: it exists, has not expired, has a use left and
    /// allows `role`. Uses nothing.
    pub fn check(
        &self,
        token: &Token,
        role: TokenRole,
        now: i64,
    ) -> Result<std::result::Result<Grant, Refusal>> {
        let hash = token.hash_hex();
        if let Some(verdict) = self.statics.judge(&hash, role) {
            return Ok(verdict);
        }
        Ok(match self.backend.get(&key(&hash), now)? {
            Some(item) => read(&item)?.judge(&hash, role, now),
            None => Err(rules::unknown(role)),
        })
    }

    /// Like `check`, and uses the token for one join: a use-limited one is counted down
    /// atomically, and kept at zero until it expires so a late join hears "used up".
    pub fn consume(
        &self,
        token: &Token,
        role: TokenRole,
        now: i64,
    ) -> Result<std::result::Result<Grant, Refusal>> {
        let hash = token.hash_hex();
        if let Some(verdict) = self.statics.judge(&hash, role) {
            return Ok(verdict);
        }
        for _ in 0..MAX_SWAPS {
            let Some(item) = self.backend.get(&key(&hash), now)? else {
                return Ok(Err(rules::unknown(role)));
            };
            let record = read(&item)?;
            let grant = match record.judge(&hash, role, now) {
                Ok(g) => g,
                refused => return Ok(refused),
            };
            let Some(next) = record.after_one_use() else {
                return Ok(Ok(grant));
            };
            let new = Item {
                value: serde_json::to_vec(&next).map_err(|e| Error::Storage(e.to_string()))?,
                ..item.clone()
            };
            if self.backend.compare_and_swap(&item, &new, now)? {
                return Ok(Ok(Grant {
                    uses_left: next.uses_left(),
                    ..grant
                }));
            }
            // Another join counted this value down first: read the new count.
        }
        Err(Error::Storage(
            "too many joins raced for the same token; retry the join".into(),
        ))
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
            .add(&[TokenRole::Node], 300, BTreeMap::new(), None, 1000)
            .unwrap();
        assert_eq!(exp, 1300);
        assert!(s.consume(&t, TokenRole::Node, 1299).unwrap().is_ok());
        let err = s.consume(&t, TokenRole::Node, 1300).unwrap().unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);
        let err = s.consume(&t, TokenRole::Proxy, 1000).unwrap().unwrap_err();
        assert!(
            err.message.contains("does not allow joining as Proxy"),
            "{}",
            err.message
        );
        let listed = s.list(1000).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!listed[0].masked.contains(&t.expose()[..28]));
        s.remove(&listed[0].id, 1000).unwrap();
        let err = s.consume(&t, TokenRole::Node, 1000).unwrap().unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[test]
    fn static_tokens_join_and_cannot_be_removed() {
        let s = store();
        let t = Token::new("static-secret");
        assert!(s.consume(&t, TokenRole::Proxy, 0).unwrap().is_ok());
        assert!(s.consume(&t, TokenRole::Db, 0).unwrap().is_err());
        assert!(s.remove("static-secret", 0).is_err());
        let listed = s.list(0).unwrap();
        assert!(listed.iter().any(|i| i.is_static && i.expires.is_none()));
    }

    #[test]
    fn bot_tokens_are_single_use() {
        let s = store();
        let (t, _) = s
            .add(&[TokenRole::Bot], 300, BTreeMap::new(), None, 0)
            .unwrap();
        // A check uses nothing.
        assert!(s.check(&t, TokenRole::Bot, 1).unwrap().is_ok());
        assert!(s.check(&t, TokenRole::Bot, 1).unwrap().is_ok());
        let grant = s.consume(&t, TokenRole::Bot, 1).unwrap().unwrap();
        assert_eq!(grant.uses_left, Some(0));
        let err = s.consume(&t, TokenRole::Bot, 2).unwrap().unwrap_err();
        assert_eq!(err.reason, "used_up");
        assert_eq!(
            s.check(&t, TokenRole::Bot, 2).unwrap().unwrap_err().reason,
            "used_up"
        );
    }

    #[test]
    fn a_used_up_token_is_listed_with_zero_left_until_it_expires() {
        let s = store();
        let (t, _) = s
            .add(&[TokenRole::Node], 300, BTreeMap::new(), Some(2), 0)
            .unwrap();
        let left = |now| s.list(now).unwrap()[0].uses_left;
        assert_eq!(left(0), Some(2));
        assert_eq!(
            s.consume(&t, TokenRole::Node, 1)
                .unwrap()
                .unwrap()
                .uses_left,
            Some(1)
        );
        // A refused join (wrong role) uses nothing.
        assert!(s.consume(&t, TokenRole::Proxy, 1).unwrap().is_err());
        assert_eq!(left(1), Some(1));
        assert!(s.consume(&t, TokenRole::Node, 1).unwrap().is_ok());
        assert_eq!(left(1), Some(0));
        let err = s.consume(&t, TokenRole::Node, 2).unwrap().unwrap_err();
        assert!(err.message.contains("used 2 times"), "{}", err.message);
        // Unlimited tokens are not counted.
        let (u, _) = s
            .add(&[TokenRole::Node], 300, BTreeMap::new(), None, 0)
            .unwrap();
        for _ in 0..5 {
            assert_eq!(
                s.consume(&u, TokenRole::Node, 1)
                    .unwrap()
                    .unwrap()
                    .uses_left,
                None
            );
        }
        assert_eq!(
            s.check(&u, TokenRole::Node, 1).unwrap().unwrap().uses_left,
            None
        );
    }

    #[test]
    fn twenty_threads_racing_for_three_uses_on_one_file_get_exactly_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.db");
        let s = TokenStore::new(Arc::new(SqliteBackend::open(&path).unwrap()), &[]).unwrap();
        let (t, _) = s
            .add(&[TokenRole::Node], 300, BTreeMap::new(), Some(3), 0)
            .unwrap();
        let barrier = std::sync::Barrier::new(20);
        let results: Vec<std::result::Result<Grant, Refusal>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    let (path, t, barrier) = (path.clone(), t.clone(), &barrier);
                    sc.spawn(move || {
                        // Its own connection to the file, like another auth server.
                        let backend = Arc::new(SqliteBackend::open(&path).unwrap());
                        let mine = TokenStore::new(backend, &[]).unwrap();
                        barrier.wait();
                        mine.consume(&t, TokenRole::Node, 1).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut left: Vec<u32> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|g| g.uses_left))
            .collect();
        left.sort_unstable();
        assert_eq!(left, vec![0, 1, 2], "{results:?}");
        let refused: Vec<&Refusal> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(refused.len(), 17);
        assert!(refused.iter().all(|r| r.reason == "used_up"), "{refused:?}");
        assert_eq!(s.list(1).unwrap()[0].uses_left, Some(0));
    }

    #[test]
    fn stored_form_holds_no_secret() {
        let backend = Arc::new(SqliteBackend::in_memory().unwrap());
        let s = TokenStore::new(backend.clone(), &[]).unwrap();
        let (t, _) = s
            .add(&[TokenRole::Node], 60, BTreeMap::new(), Some(2), 0)
            .unwrap();
        for item in backend.list("", 0).unwrap() {
            let all = format!("{}{}", item.key, String::from_utf8_lossy(&item.value));
            assert!(!all.contains(t.expose()));
        }
    }
}
