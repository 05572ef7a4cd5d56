//! A few connections shared by blocking callers: a call borrows one (opening it if fewer than
//! `max` exist), waits at most until its deadline for one to be free, and a connection that
//! broke is dropped so the next call dials a fresh one (a database restart heals by itself).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use super::conn::Connection;
use super::error::{PgError, PgErrorKind};
use super::url::ConnParams;

pub struct Pool {
    params: ConnParams,
    tls: Option<Arc<ClientConfig>>,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Connection>,
    /// Connections in existence: idle, lent out or being opened.
    open: usize,
}

impl Pool {
    /// Checks the TLS files now (a wrong path is a start-up error); connects lazily.
    pub fn new(params: ConnParams, max: usize) -> Result<Pool, PgError> {
        let tls = super::tls::client_config(&params)
            .map_err(|m| PgError::new(&params.addr(), PgErrorKind::Config(m)))?;
        Ok(Pool {
            params,
            tls,
            max: max.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        })
    }

    pub fn params(&self) -> &ConnParams {
        &self.params
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a connection within `timeout`. With `retry`, a connection found broken
    /// (typically an idle one the server closed) is replaced and `f` runs once more: only for
    /// statements that may safely run twice.
    pub fn with<T>(
        &self,
        timeout: Duration,
        retry: bool,
        mut f: impl FnMut(&mut Connection) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let deadline = Instant::now() + timeout;
        let mut attempts = if retry { 2 } else { 1 };
        loop {
            attempts -= 1;
            let (mut conn, reused) = self.acquire(deadline)?;
            let r = f(&mut conn);
            let broken = conn.is_broken();
            self.release(conn);
            match r {
                Err(e) if broken && reused && attempts > 0 => {
                    log::debug!("retrying on a fresh connection after: {e}");
                }
                r => return r,
            }
        }
    }

    /// A connection and whether it was idle in the pool before.
    fn acquire(&self, deadline: Instant) -> Result<(Connection, bool), PgError> {
        let mut st = self.lock();
        loop {
            if let Some(mut c) = st.idle.pop() {
                if c.looks_alive() {
                    return Ok((c, true));
                }
                st.open -= 1;
                continue;
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match Connection::connect(&self.params, self.tls.clone()) {
                    Ok(c) => Ok((c, false)),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PgError::new(&self.params.addr(), PgErrorKind::PoolBusy));
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn release(&self, conn: Connection) {
        let mut st = self.lock();
        if conn.is_broken() {
            st.open -= 1;
            drop(st);
            drop(conn);
        } else {
            st.idle.push(conn);
        }
        self.freed.notify_one();
    }
}
