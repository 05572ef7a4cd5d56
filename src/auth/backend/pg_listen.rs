//! The PostgreSQL backend's change watcher: a thread holding one connection that `LISTEN`s
//! on the channel auth servers `NOTIFY`, and hands the payloads (topics) to auth's watcher
//! task. It reconnects with backoff, and says `TOPIC_ALL` each time it listens again.

use std::time::{Duration, Instant};

use super::postgres::CALL_TIMEOUT;
use super::TOPIC_ALL;
use crate::pg::{ConnParams, Connection};

/// The channel auth servers announce changes on (`NOTIFY`), payload a topic.
pub const CHANNEL: &str = "teleport_lite_changes";
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Topics queued for the watcher task at most; past that it is behind and reads all anyway.
const QUEUE: usize = 64;

/// Starts the thread; `None` if it cannot be started (auth then polls only).
pub fn spawn(params: ConnParams) -> Option<smol::channel::Receiver<String>> {
    let (tx, rx) = smol::channel::bounded(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || listen_loop(&params, &tx));
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            log::warn!("cannot start the PostgreSQL change listener: {e}; polling only");
            None
        }
    }
}

/// The watcher's thread: one connection that LISTENs, reconnecting with backoff, until the
/// receiver is gone. Says `TOPIC_ALL` on every (re)connection: what was announced while it was
/// away is lost.
fn listen_loop(params: &ConnParams, tx: &smol::channel::Sender<String>) {
    let mut backoff = crate::core::backoff::Backoff::new(Duration::from_millis(200), BACKOFF_MAX);
    let mut down_since: Option<Instant> = None;
    while !tx.is_closed() {
        let listening = Connection::open(params).and_then(|mut c| {
            c.listen(CHANNEL, CALL_TIMEOUT)?;
            Ok(c)
        });
        match listening {
            Ok(mut c) => {
                if down_since.take().is_some() {
                    log::info!(
                        "listening for changes on PostgreSQL at {} again",
                        params.addr()
                    );
                }
                backoff.reset();
                let _ = tx.try_send(TOPIC_ALL.to_string());
                loop {
                    if tx.is_closed() {
                        return;
                    }
                    match c.poll_notifications(Instant::now() + Duration::from_secs(1)) {
                        // A full queue means the watcher is busy reloading; its next pass
                        // reads the store anyway.
                        Ok(ns) => ns.into_iter().for_each(|n| {
                            let _ = tx.try_send(n.payload);
                        }),
                        Err(e) => {
                            log::warn!(
                                "stopped listening for changes on PostgreSQL: {e}; reconnecting"
                            );
                            break;
                        }
                    }
                }
            }
            Err(e) if down_since.is_none() => {
                log::warn!("cannot listen for changes on PostgreSQL: {e}; retrying");
                down_since = Some(Instant::now());
            }
            Err(e) => log::debug!("cannot listen for changes on PostgreSQL: {e}"),
        }
        down_since.get_or_insert_with(Instant::now);
        std::thread::sleep(backoff.next_delay());
    }
}
