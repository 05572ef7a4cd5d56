//! The embedded backend: one SQLite file in `data_dir`, WAL journal, `synchronous=FULL` so an
//! acknowledged write (a CA, a token) survives a power cut or SIGKILL.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Backend, Item};
use crate::error::{Error, Result};

pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> Result<Self> {
        // Create the file 0600 ourselves: SQLite would use the umask.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create database", path, e))?;
        let conn = Connection::open(path)?;
        // First, so that even switching the journal waits for another connection's lock.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                key TEXT PRIMARY KEY,
                value BLOB NOT NULL,
                expires INTEGER
            );",
        )?;
        Ok(SqliteBackend {
            conn: Mutex::new(conn),
        })
    }

    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires INTEGER);",
        )?;
        Ok(SqliteBackend {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent; keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const LIVE: &str = "(expires IS NULL OR expires > ?2)";

impl Backend for SqliteBackend {
    fn get(&self, key: &str, now: i64) -> Result<Option<Item>> {
        let c = self.conn();
        let sql = format!("SELECT key, value, expires FROM kv WHERE key = ?1 AND {LIVE}");
        Ok(c.query_row(&sql, params![key, now], row_to_item)
            .optional()?)
    }

    fn create(&self, item: &Item, now: i64) -> Result<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "DELETE FROM kv WHERE key = ?1 AND expires IS NOT NULL AND expires <= ?2",
            params![item.key, now],
        )?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO kv (key, value, expires) VALUES (?1, ?2, ?3)",
            params![item.key, item.value, item.expires],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn put(&self, item: &Item) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?1, ?2, ?3)",
            params![item.key, item.value, item.expires],
        )?;
        Ok(())
    }

    fn delete(&self, key: &str, now: i64) -> Result<bool> {
        let sql = format!("DELETE FROM kv WHERE key = ?1 AND {LIVE}");
        Ok(self.conn().execute(&sql, params![key, now])? == 1)
    }

    fn compare_and_swap(&self, expected: &Item, new: &Item, now: i64) -> Result<bool> {
        if expected.key != new.key {
            return Err(Error::Storage(format!(
                "compare_and_swap of {:?} was given the key {:?}",
                expected.key, new.key
            )));
        }
        // One statement: SQLite runs it atomically, whichever connection or process races it.
        let n = self.conn().execute(
            "UPDATE kv SET value = ?3, expires = ?4 WHERE key = ?1 AND value = ?2 \
             AND (expires IS NULL OR expires > ?5)",
            params![expected.key, expected.value, new.value, new.expires, now],
        )?;
        Ok(n == 1)
    }

    fn list(&self, prefix: &str, now: i64) -> Result<Vec<Item>> {
        let c = self.conn();
        let sql = format!(
            "SELECT key, value, expires FROM kv WHERE substr(key, 1, length(?1)) = ?1 AND {LIVE} \
             ORDER BY key"
        );
        let mut stmt = c.prepare(&sql)?;
        let rows = stmt.query_map(params![prefix, now], row_to_item)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?1",
            params![now],
        )?)
    }

    fn put_batch(&self, items: &[Item]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?1, ?2, ?3)",
            )?;
            for i in items {
                stmt.execute(params![i.key, i.value, i.expires])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        key: r.get(0)?,
        value: r.get(1)?,
        expires: r.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, expires: Option<i64>) -> Item {
        Item {
            key: key.into(),
            value: b"v".to_vec(),
            expires,
        }
    }

    #[test]
    fn expiry_is_judged_by_the_given_clock() {
        let b = SqliteBackend::in_memory().unwrap();
        b.put(&item("tokens/a", Some(100))).unwrap();
        assert!(b.get("tokens/a", 99).unwrap().is_some());
        assert!(b.get("tokens/a", 100).unwrap().is_none());
        assert_eq!(b.list("tokens/", 99).unwrap().len(), 1);
        assert_eq!(b.list("tokens/", 100).unwrap().len(), 0);
        assert_eq!(b.purge_expired(100).unwrap(), 1);
    }

    #[test]
    fn create_does_not_overwrite_and_delete_is_once() {
        let b = SqliteBackend::in_memory().unwrap();
        assert!(b.create(&item("k", None), 0).unwrap());
        assert!(!b.create(&item("k", None), 0).unwrap());
        assert!(b.delete("k", 0).unwrap());
        assert!(!b.delete("k", 0).unwrap());
        // An expired item does not block a new one.
        b.put(&item("e", Some(5))).unwrap();
        assert!(b.create(&item("e", None), 10).unwrap());
    }

    #[test]
    fn compare_and_swap_replaces_only_the_value_it_was_given() {
        let b = SqliteBackend::in_memory().unwrap();
        let v1 = item("k", Some(100));
        b.put(&v1).unwrap();
        let v2 = Item {
            value: b"v2".to_vec(),
            ..v1.clone()
        };
        assert!(b.compare_and_swap(&v1, &v2, 0).unwrap());
        // A second caller that read v1 loses, and nothing changes.
        let v3 = Item {
            value: b"v3".to_vec(),
            ..v1.clone()
        };
        assert!(!b.compare_and_swap(&v1, &v3, 0).unwrap());
        assert_eq!(b.get("k", 0).unwrap().unwrap().value, b"v2");
        // Expired or missing items are never swapped in.
        assert!(!b.compare_and_swap(&v2, &v3, 100).unwrap());
        assert!(!b
            .compare_and_swap(&item("gone", None), &item("gone", None), 0)
            .unwrap());
        let other_key = Item {
            key: "other".into(),
            ..v3
        };
        assert!(b.compare_and_swap(&v2, &other_key, 0).is_err());
    }

    #[test]
    fn compare_and_swap_lets_exactly_one_of_racing_threads_win_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.db");
        let start = item("k", None);
        SqliteBackend::open(&path).unwrap().put(&start).unwrap();
        // Each thread has its own connection, as separate auth processes would.
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (path, start) = (path.clone(), start.clone());
                    s.spawn(move || {
                        let b = SqliteBackend::open(&path).unwrap();
                        let new = Item {
                            value: format!("t{i}").into_bytes(),
                            ..start.clone()
                        };
                        usize::from(b.compare_and_swap(&start, &new, 0).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn a_batch_replaces_and_adds_in_one_go() {
        let b = SqliteBackend::in_memory().unwrap();
        b.put(&item("p/a", Some(1))).unwrap();
        let items = [item("p/a", Some(9)), item("p/b", None)];
        b.put_batch(&items).unwrap();
        assert_eq!(b.list("p/", 5).unwrap(), items.to_vec());
        assert!(!b.shared() && b.watch().is_none());
    }

    #[test]
    fn prefix_list_is_literal() {
        let b = SqliteBackend::in_memory().unwrap();
        b.put(&item("tokens/a", None)).unwrap();
        b.put(&item("tokensX", None)).unwrap();
        b.put(&item("ca/host", None)).unwrap();
        let keys: Vec<String> = b
            .list("tokens/", 0)
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(keys, vec!["tokens/a"]);
    }
}
