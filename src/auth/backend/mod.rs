//! Durable key-value storage behind a small trait, so a shared backend (PostgreSQL, for several
//! auth servers) can be added without touching the callers. Keys are '/'-separated paths;
//! values are opaque bytes; an item may expire, judged by the caller's clock (`now`).

pub mod sqlite;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub value: Vec<u8>,
    /// Unix seconds after which the item no longer exists.
    pub expires: Option<i64>,
}

pub trait Backend: Send + Sync {
    /// The item, unless it is missing or expired at `now`.
    fn get(&self, key: &str, now: i64) -> Result<Option<Item>>;
    /// Inserts the item unless a live one exists; returns whether it was inserted.
    fn create(&self, item: &Item, now: i64) -> Result<bool>;
    /// Inserts or replaces.
    fn put(&self, item: &Item) -> Result<()>;
    /// Deletes a live item; returns whether one was deleted. Exactly one of several concurrent
    /// callers gets `true`, which is how single-use tokens are consumed.
    fn delete(&self, key: &str, now: i64) -> Result<bool>;
    /// Live items whose key starts with `prefix`, ordered by key.
    fn list(&self, prefix: &str, now: i64) -> Result<Vec<Item>>;
    /// Removes expired items; returns how many.
    fn purge_expired(&self, now: i64) -> Result<usize>;
}
