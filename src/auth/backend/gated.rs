//! For tests: SQLite in memory whose next read of one key (`get`) or one prefix (`list`) waits,
//! after reading, until the test lets it go. It places a local change between a sync's read and
//! its apply.

use std::sync::{Arc, Barrier, Mutex};

use super::sqlite::SqliteBackend;
use super::{Backend, Item};
use crate::error::Result;

/// Which read waits.
pub enum On {
    Get(&'static str),
    List(&'static str),
}

pub struct Gated {
    inner: SqliteBackend,
    on: On,
    /// Armed by the test: the read waits on the first barrier once done, then on the second.
    pub gate: Mutex<Option<(Arc<Barrier>, Arc<Barrier>)>>,
}

impl Gated {
    pub fn new(on: On) -> Gated {
        Gated {
            inner: SqliteBackend::in_memory().unwrap(),
            on,
            gate: Mutex::new(None),
        }
    }

    fn wait_if(&self, matches: bool) {
        if !matches {
            return;
        }
        // Taken out first: the test thread may use the backend while this read waits.
        let gate = self.gate.lock().unwrap().take();
        if let Some((read, go)) = gate {
            read.wait(); // the read is done
            go.wait(); // the local change is made
        }
    }
}

impl Backend for Gated {
    fn get(&self, k: &str, n: i64) -> Result<Option<Item>> {
        let r = self.inner.get(k, n);
        self.wait_if(matches!(self.on, On::Get(key) if key == k));
        r
    }
    fn create(&self, i: &Item, n: i64) -> Result<bool> {
        self.inner.create(i, n)
    }
    fn put(&self, i: &Item) -> Result<()> {
        self.inner.put(i)
    }
    fn delete(&self, k: &str, n: i64) -> Result<bool> {
        self.inner.delete(k, n)
    }
    fn compare_and_swap(&self, e: &Item, i: &Item, n: i64) -> Result<bool> {
        self.inner.compare_and_swap(e, i, n)
    }
    fn list(&self, p: &str, n: i64) -> Result<Vec<Item>> {
        let r = self.inner.list(p, n);
        self.wait_if(matches!(self.on, On::List(prefix) if prefix == p));
        r
    }
    fn purge_expired(&self, n: i64) -> Result<usize> {
        self.inner.purge_expired(n)
    }
}
