//! Durable key-value storage behind a small trait, so a shared backend (PostgreSQL, for several
//! auth servers) can be added without touching the callers. Keys are '/'-separated paths;
//! values are opaque bytes; an item may expire, judged by the caller's clock (`now`).

#[cfg(test)]
pub mod gated;
mod pg_listen;
pub mod postgres;
pub mod sqlite;

use crate::error::Result;

/// What changed, as auth servers on a shared backend announce it to each other.
pub const TOPIC_LOCKS: &str = "locks";
pub const TOPIC_REMOVED: &str = "removed";
pub const TOPIC_CA: &str = "ca";
/// Not announced by anyone: the watcher says it when it (re)connects, since notifications
/// sent while it was away are lost, so everything is reloaded.
pub const TOPIC_ALL: &str = "*";

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
    /// callers gets `true`.
    fn delete(&self, key: &str, now: i64) -> Result<bool>;
    /// Replaces the live item `expected.key` by `new` (value and expiry) only if its stored
    /// value is still `expected.value`, atomically; returns whether it did. Of several callers
    /// that read the same value, exactly one gets `true`: the others read again and retry.
    /// This is how use-limited tokens count joins down across auth servers. `new.key` must be
    /// `expected.key`. A shared SQL backend does it in one statement: `UPDATE kv SET value =
    /// $3, expires = $4 WHERE key = $1 AND value = $2 AND (expires IS NULL OR expires > $5)`.
    fn compare_and_swap(&self, expected: &Item, new: &Item, now: i64) -> Result<bool>;
    /// Live items whose key starts with `prefix`, ordered by key.
    fn list(&self, prefix: &str, now: i64) -> Result<Vec<Item>>;
    /// Removes expired items; returns how many.
    fn purge_expired(&self, now: i64) -> Result<usize>;

    /// Inserts or replaces every item, in one transaction.
    fn put_batch(&self, items: &[Item]) -> Result<()> {
        items.iter().try_for_each(|i| self.put(i))
    }

    /// Whether other auth servers may share this store: then presence is written to it and
    /// changes are announced and watched. The embedded store has one server.
    fn shared(&self) -> bool {
        false
    }

    /// Tells the other auth servers on this store that `topic` changed (after the write).
    fn notify(&self, _topic: &str) -> Result<()> {
        Ok(())
    }

    /// Topics other auth servers (and this one) announce, from a watcher that reconnects by
    /// itself and says `TOPIC_ALL` each time it (re)starts listening; `None` where nobody else
    /// writes. The watcher stops when the receiver is dropped.
    fn watch(&self) -> Option<smol::channel::Receiver<String>> {
        None
    }
}
