//! The audit trail: one JSON object per line in `data_dir/audit.log`, appended and fsynced
//! before the action it records is answered. Tokens appear by their public ID only.
//!
//! Growth is bounded: once the log passes `ROTATE_AT` (64 MiB) it is renamed to
//! `audit.log.1`, replacing the previous one, and a new `audit.log` is started; so the trail
//! takes at most about 128 MiB and keeps the newest events. Listing (`tctl audit ls`) reads
//! both files backwards in 64 KiB chunks, newest first, and stops at the first event older than
//! `since` or once it has `limit` events: it never holds a whole file in memory.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{info, warn};
use serde_json::{Map, Value};

use crate::clock;
use crate::error::{Error, Result};
use crate::proto::AuditEvent;

/// Size past which the log is rotated to `audit.log.1`.
pub const ROTATE_AT: u64 = 64 << 20;
/// Events `tctl audit ls` lists unless told otherwise.
pub const DEFAULT_LIST: usize = 1000;
/// Most events one listing returns.
pub const MAX_LIST: usize = 10_000;
/// Bytes of events one listing returns at most; answers are framed at 64 MiB.
const MAX_LIST_BYTES: usize = 32 << 20;
/// Longer lines are not ours (a torn write, a foreign file): skipped when listing.
const MAX_LINE: usize = 64 << 10;
/// How much is read from the file at once when listing.
const CHUNK: u64 = 64 << 10;

/// The audit log of one auth server.
pub struct AuditLog {
    /// `None`: events are dropped (unit tests).
    file: Option<Mutex<File>>,
    path: PathBuf,
    rotate_at: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn open_read(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

impl AuditLog {
    /// Opens (creating, 0600) the log for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = open_append(path).map_err(|e| Error::io("open the audit log", path, e))?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
            path: path.to_path_buf(),
            rotate_at: ROTATE_AT,
        })
    }

    /// A log that keeps nothing.
    pub fn discard() -> Self {
        AuditLog {
            file: None,
            path: PathBuf::new(),
            rotate_at: ROTATE_AT,
        }
    }

    /// The same log, rotated past `bytes` instead of `ROTATE_AT` (tests).
    pub fn rotating_at(mut self, bytes: u64) -> Self {
        self.rotate_at = bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the previous log goes when this one is rotated: `audit.log.1`.
    pub fn rotated_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends one event (`event` is its type, e.g. "lock.created") with `fields`, then
    /// fsyncs. Blocking: call it off the executor. A failure is logged, never fatal: the action
    /// itself already happened.
    pub fn record(&self, event: &str, fields: &[(&str, Value)]) {
        let Some(file) = &self.file else { return };
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        // The time is taken under the lock, so the file is in time order (listing relies on it).
        let mut obj = Map::new();
        obj.insert(
            "time".into(),
            Value::from(clock::rfc3339(clock::now_unix())),
        );
        obj.insert("event".into(), Value::from(event));
        for (k, v) in fields {
            obj.insert((*k).to_string(), v.clone());
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            warn!(
                "cannot write the audit log {}: {e}; event {event} was not recorded",
                self.path.display()
            );
            return;
        }
        if f.metadata().is_ok_and(|m| m.len() >= self.rotate_at) {
            self.rotate(&mut f);
        }
    }

    /// Renames the full log to `audit.log.1` and continues in a new file.
    fn rotate(&self, f: &mut File) {
        let old = self.rotated_path();
        let fresh = std::fs::rename(&self.path, &old).and_then(|()| open_append(&self.path));
        match fresh {
            Ok(new) => {
                *f = new;
                info!(
                    "the audit log reached {} MiB: moved to {}, continuing in a new file",
                    self.rotate_at >> 20,
                    old.display()
                );
            }
            Err(e) => warn!(
                "cannot rotate the audit log {}: {e}; it keeps growing",
                self.path.display()
            ),
        }
    }

    /// The last `limit` events at or after `since` (Unix seconds), oldest first, and whether
    /// more matched. `limit` is capped at `MAX_LIST`; unreadable lines are skipped.
    pub fn list(&self, since: Option<i64>, limit: usize) -> Result<(Vec<AuditEvent>, bool)> {
        let Some(file) = &self.file else {
            return Ok((Vec::new(), false));
        };
        let limit = limit.clamp(1, MAX_LIST);
        // A consistent snapshot: both files opened, and the current one's end taken, while no
        // event is being written and no rotation can happen. Later events are not listed.
        let read_err = |e| Error::io("read the audit log", &self.path, e);
        let files = {
            let _writer = file.lock().unwrap_or_else(|p| p.into_inner());
            let current = open_read(&self.path).map_err(read_err)?;
            let end = current.metadata().map_err(read_err)?.len();
            let older = open_read(&self.rotated_path())
                .and_then(|f| Ok((f.metadata()?.len(), f)))
                .ok();
            [Some((end, current)), older]
        };
        let mut picked = Picker::new(since, limit);
        for (len, f) in files.iter().flatten() {
            let stopped = lines_backwards(f, *len, |line| picked.take(line)).map_err(read_err)?;
            if stopped {
                break;
            }
        }
        let mut events = picked.events;
        events.reverse();
        Ok((events, picked.truncated))
    }
}

/// Collects events newest first until one is older than `since` or the limits are reached.
struct Picker {
    since: Option<i64>,
    limit: usize,
    bytes: usize,
    events: Vec<AuditEvent>,
    truncated: bool,
}

impl Picker {
    fn new(since: Option<i64>, limit: usize) -> Self {
        Picker {
            since,
            limit,
            bytes: 0,
            events: Vec::new(),
            truncated: false,
        }
    }

    /// Takes one line; false once no older line can be wanted.
    fn take(&mut self, line: &[u8]) -> bool {
        let Ok(event) = serde_json::from_slice::<AuditEvent>(line) else {
            return true;
        };
        let Some(time) = event
            .get("time")
            .and_then(Value::as_str)
            .and_then(clock::parse_rfc3339)
        else {
            return true;
        };
        if self.since.is_some_and(|s| time < s) {
            return false;
        }
        if self.events.len() == self.limit || self.bytes + line.len() > MAX_LIST_BYTES {
            self.truncated = true;
            return false;
        }
        self.bytes += line.len();
        self.events.push(event);
        true
    }
}

/// Calls `f` with each line of the first `len` bytes of `file`, last line first, reading
/// `CHUNK` bytes at a time and holding at most one line of `MAX_LINE` besides; longer lines
/// are skipped. Returns whether `f` asked to stop.
fn lines_backwards(file: &File, len: u64, mut f: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
    let mut pos = len;
    // The end of a line whose start is in a chunk not read yet.
    let mut tail: Vec<u8> = Vec::new();
    // The line being gathered is over MAX_LINE: drop it up to its start.
    let mut oversized = false;
    let mut buf = Vec::new();
    let mut emit = |piece: &[u8], tail: &mut Vec<u8>, oversized: &mut bool| -> bool {
        let go_on = if std::mem::take(oversized) {
            true
        } else if tail.is_empty() {
            piece.is_empty() || f(piece)
        } else {
            let mut line = piece.to_vec();
            line.extend_from_slice(tail);
            f(&line)
        };
        tail.clear();
        go_on
    };
    while pos > 0 {
        let n = CHUNK.min(pos);
        pos -= n;
        buf.resize(n as usize, 0);
        file.read_exact_at(&mut buf, pos)?;
        let mut end = buf.len();
        while let Some(nl) = buf[..end].iter().rposition(|&b| b == b'\n') {
            if !emit(&buf[nl + 1..end], &mut tail, &mut oversized) {
                return Ok(true);
            }
            end = nl;
        }
        if !oversized {
            if end + tail.len() > MAX_LINE {
                oversized = true;
                tail.clear();
            } else {
                tail.splice(0..0, buf[..end].iter().copied());
            }
        }
    }
    Ok(!emit(&[], &mut tail, &mut oversized))
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
