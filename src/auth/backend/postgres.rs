//! The shared backend: one `kv` table in PostgreSQL, so several auth servers can use the same
//! store. Every trait method is one statement, so its atomicity is PostgreSQL's: a live row
//! blocks `create` through `ON CONFLICT`, racing `delete`s and `compare_and_swap`s re-check
//! their `WHERE` on the row the winner left (READ COMMITTED), so exactly one of them counts.
//! The schema is created and migrated at start under a transaction-scoped advisory lock.

use std::time::{Duration, Instant};

use super::{Backend, Item};
use crate::error::{Error, Result};
use crate::pg::{bytea, ConnParams, Connection, Param, PgError, PgErrorKind, Pool};

pub use super::pg_listen::CHANNEL;
/// Rows per statement of a batch: 3 parameters each, far below PostgreSQL's 65,535.
const BATCH_ROWS: usize = 1000;
/// Longest wait between attempts to reach a database that does not answer at start.
const OPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Connections per auth server: calls are short and `smol::unblock` runs a handful at once.
pub const POOL_SIZE: usize = 4;
/// Deadline of one backend call, including waiting for a pooled connection.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of the whole migration (the lock may wait for another server's migration).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);
/// The advisory lock key of migrations: "tlitemig" in ASCII, so it does not collide with a
/// lock another application on the same database picks at random.
const MIGRATION_LOCK: i64 = 0x746c_6974_656d_6967;

/// Schema versions, applied in order, each once. Append only: never edit a shipped entry.
/// `COLLATE "C"` makes `ORDER BY key` byte order, as SQLite's, whatever the database's locale.
pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE kv (
        key TEXT COLLATE \"C\" PRIMARY KEY,
        value BYTEA NOT NULL,
        expires BIGINT
    );
    CREATE INDEX kv_expires ON kv (expires) WHERE expires IS NOT NULL;",
)];

pub struct PostgresBackend {
    pool: Pool,
}

impl PostgresBackend {
    /// Connects, migrates the schema and returns the backend. Fails if the database cannot be
    /// reached: auth does not start on a store it cannot use.
    pub fn open(params: ConnParams) -> Result<Self> {
        let pool = Pool::new(params, POOL_SIZE)?;
        pool.with(MIGRATE_TIMEOUT, true, |c| migrate(c, MIGRATE_TIMEOUT))?;
        Ok(PostgresBackend { pool })
    }

    /// Like `open`, but while the database is unreachable (down, restarting, refusing
    /// connections for now) retries with backoff, logging why and saying so on `/readyz`,
    /// until it answers or `stop` says to give up. A wrong password, certificate or
    /// conn_string fails at once: retrying cannot fix it.
    pub fn open_retrying(params: ConnParams, stop: impl Fn() -> bool) -> Result<Self> {
        let mut backoff =
            crate::core::backoff::Backoff::new(Duration::from_millis(500), OPEN_BACKOFF_MAX);
        loop {
            let err = match Pool::new(params.clone(), POOL_SIZE).and_then(|pool| {
                pool.with(MIGRATE_TIMEOUT, true, |c| migrate(c, MIGRATE_TIMEOUT))?;
                Ok(pool)
            }) {
                Ok(pool) => {
                    crate::diag::set_storage_down(None);
                    return Ok(PostgresBackend { pool });
                }
                Err(e) if transient(&e) => e,
                Err(e) => return Err(e.into()),
            };
            let why = format!("the auth storage does not answer: {err}");
            if crate::diag::set_storage_down(Some(&why)) {
                log::warn!("{why}; retrying until it does");
            }
            let delay = backoff.next_delay();
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if stop() {
                    return Err(Error::Storage(format!(
                        "stopped while waiting for PostgreSQL at {}: {err}",
                        params.addr()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100).min(delay));
            }
        }
    }

    /// "postgresql://user@host:port/db?sslmode=..." without the password.
    pub fn describe(&self) -> String {
        self.pool.params().redacted()
    }

    fn run(&self, retry: bool, sql: &str, params: &[Param<'_>]) -> Result<crate::pg::QueryResult> {
        Ok(self
            .pool
            .with(CALL_TIMEOUT, retry, |c| c.query(sql, params, CALL_TIMEOUT))?)
    }

    fn addr(&self) -> String {
        self.pool.params().addr()
    }
}

/// Applies the migrations this binary knows and the database lacks, in one transaction under
/// an advisory lock: a second auth server starting at the same moment waits, then finds
/// nothing to do. Returns the versions it applied.
pub fn migrate(c: &mut Connection, timeout: Duration) -> std::result::Result<Vec<i64>, PgError> {
    c.execute("BEGIN", timeout)?;
    let r = migrate_in_tx(c, timeout);
    match &r {
        Ok(_) => {
            c.execute("COMMIT", timeout)?;
        }
        Err(_) => {
            let _ = c.execute("ROLLBACK", timeout);
        }
    }
    r
}

fn migrate_in_tx(c: &mut Connection, timeout: Duration) -> std::result::Result<Vec<i64>, PgError> {
    c.query(
        "SELECT pg_advisory_xact_lock($1)",
        &[Param::Int(MIGRATION_LOCK)],
        timeout,
    )?;
    c.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
        timeout,
    )?;
    let r = c.query(
        "SELECT COALESCE(max(version), 0) FROM schema_migrations",
        &[],
        timeout,
    )?;
    let current = first_i64(&r.rows).unwrap_or(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(PgError::new(
            c.addr(),
            PgErrorKind::Config(format!(
                "the database's schema is at version {current}, newer than this teleport knows \
                 ({newest}): upgrade teleport on this host to the version the other auth servers \
                 run"
            )),
        ));
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        c.execute(sql, timeout)?;
        c.query(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[Param::Int(*version)],
            timeout,
        )?;
        log::info!("PostgreSQL schema migrated to version {version}");
        applied.push(*version);
    }
    Ok(applied)
}

/// Whether waiting may fix `e`: the server is down or not accepting connections yet, as
/// opposed to a refused login, an untrusted certificate or a bad conn_string.
fn transient(e: &PgError) -> bool {
    match &e.kind {
        PgErrorKind::Io(_) | PgErrorKind::Timeout(_) | PgErrorKind::PoolBusy => true,
        // cannot_connect_now (starting or stopping), too_many_connections, admin_shutdown,
        // crash_shutdown.
        PgErrorKind::Server(_) => {
            matches!(e.code(), Some("57P03" | "53300" | "57P01" | "57P02"))
        }
        _ => false,
    }
}

fn first_i64(rows: &[Vec<Option<Vec<u8>>>]) -> Option<i64> {
    let col = rows.first()?.first()?.as_ref()?;
    std::str::from_utf8(col).ok()?.parse().ok()
}

const LIVE: &str = "(expires IS NULL OR expires > $2)";

fn expires(e: Option<i64>) -> Param<'static> {
    e.map_or(Param::Null, Param::Int)
}

impl Backend for PostgresBackend {
    fn get(&self, key: &str, now: i64) -> Result<Option<Item>> {
        let sql = format!("SELECT key, value, expires FROM kv WHERE key = $1 AND {LIVE}");
        let r = self.run(true, &sql, &[Param::Text(key), Param::Int(now)])?;
        r.rows
            .into_iter()
            .next()
            .map(|row| self.item(row))
            .transpose()
    }

    fn create(&self, item: &Item, now: i64) -> Result<bool> {
        // Inserts, or replaces only a row that has expired; a live row makes it a no-op.
        let r = self.run(
            false,
            "INSERT INTO kv (key, value, expires) VALUES ($1, $2::bytea, $3::bigint) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires \
             WHERE kv.expires IS NOT NULL AND kv.expires <= $4::bigint",
            &[
                Param::Text(&item.key),
                Param::Bytes(&item.value),
                expires(item.expires),
                Param::Int(now),
            ],
        )?;
        Ok(r.affected == 1)
    }

    fn put(&self, item: &Item) -> Result<()> {
        self.run(
            true,
            "INSERT INTO kv (key, value, expires) VALUES ($1, $2::bytea, $3::bigint) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires",
            &[
                Param::Text(&item.key),
                Param::Bytes(&item.value),
                expires(item.expires),
            ],
        )?;
        Ok(())
    }

    fn delete(&self, key: &str, now: i64) -> Result<bool> {
        let sql = format!("DELETE FROM kv WHERE key = $1 AND {LIVE}");
        Ok(self
            .run(false, &sql, &[Param::Text(key), Param::Int(now)])?
            .affected
            == 1)
    }

    fn compare_and_swap(&self, expected: &Item, new: &Item, now: i64) -> Result<bool> {
        if expected.key != new.key {
            return Err(Error::Storage(format!(
                "compare_and_swap of {:?} was given the key {:?}",
                expected.key, new.key
            )));
        }
        let r = self.run(
            false,
            "UPDATE kv SET value = $3::bytea, expires = $4::bigint WHERE key = $1 \
             AND value = $2::bytea AND (expires IS NULL OR expires > $5::bigint)",
            &[
                Param::Text(&expected.key),
                Param::Bytes(&expected.value),
                Param::Bytes(&new.value),
                expires(new.expires),
                Param::Int(now),
            ],
        )?;
        Ok(r.affected == 1)
    }

    fn list(&self, prefix: &str, now: i64) -> Result<Vec<Item>> {
        // A literal prefix (no LIKE, whose % and _ are wildcards); `key >= $1` lets the
        // primary key's index start the scan at the prefix.
        let sql = format!(
            "SELECT key, value, expires FROM kv WHERE key >= $1 \
             AND left(key, char_length($1)) = $1 AND {LIVE} ORDER BY key"
        );
        let r = self.run(true, &sql, &[Param::Text(prefix), Param::Int(now)])?;
        r.rows.into_iter().map(|row| self.item(row)).collect()
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        let r = self.run(
            true,
            "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= $1",
            &[Param::Int(now)],
        )?;
        Ok(r.affected as usize)
    }

    /// Multi-row upserts of `BATCH_ROWS` in one transaction: a few round trips for thousands
    /// of presence rows. Keys must be distinct (one statement may not update a row twice).
    fn put_batch(&self, items: &[Item]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let chunks: Vec<(String, Vec<Param<'_>>)> = items
            .chunks(BATCH_ROWS)
            .map(|chunk| {
                let mut sql = String::from("INSERT INTO kv (key, value, expires) VALUES ");
                let mut params = Vec::with_capacity(chunk.len() * 3);
                for (n, i) in chunk.iter().enumerate() {
                    let b = n * 3;
                    if n > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!(
                        "(${}, ${}::bytea, ${}::bigint)",
                        b + 1,
                        b + 2,
                        b + 3
                    ));
                    params.extend([
                        Param::Text(&i.key),
                        Param::Bytes(&i.value),
                        expires(i.expires),
                    ]);
                }
                sql.push_str(
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                     expires = EXCLUDED.expires",
                );
                (sql, params)
            })
            .collect();
        self.pool.with(CALL_TIMEOUT, true, |c| {
            c.execute("BEGIN", CALL_TIMEOUT)?;
            for (sql, params) in &chunks {
                if let Err(e) = c.query(sql, params, CALL_TIMEOUT) {
                    let _ = c.execute("ROLLBACK", CALL_TIMEOUT);
                    return Err(e);
                }
            }
            c.execute("COMMIT", CALL_TIMEOUT)
        })?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    fn notify(&self, topic: &str) -> Result<()> {
        self.run(
            true,
            &format!("SELECT pg_notify('{CHANNEL}', $1)"),
            &[Param::Text(topic)],
        )?;
        Ok(())
    }

    fn watch(&self) -> Option<smol::channel::Receiver<String>> {
        super::pg_listen::spawn(self.pool.params().clone())
    }
}

impl PostgresBackend {
    fn item(&self, row: Vec<Option<Vec<u8>>>) -> Result<Item> {
        let bad = |what: &str| {
            Error::Storage(format!(
                "PostgreSQL at {}: the kv table returned {what}",
                self.addr()
            ))
        };
        let mut cols = row.into_iter();
        let (Some(Some(key)), Some(Some(value)), Some(exp)) =
            (cols.next(), cols.next(), cols.next())
        else {
            return Err(bad("a row without key or value"));
        };
        let key = String::from_utf8(key).map_err(|_| bad("a key that is not UTF-8"))?;
        let value = bytea(&value).ok_or_else(|| bad("a value that is not hex bytea"))?;
        let expires = match exp {
            None => None,
            Some(e) => Some(
                std::str::from_utf8(&e)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("an expiry that is not a number"))?,
            ),
        };
        Ok(Item {
            key,
            value,
            expires,
        })
    }
}
