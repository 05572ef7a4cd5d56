//! The audit trail: one JSON object per line in `data_dir/audit.log`, appended and fsynced
//! before the action it records is answered. Tokens appear by their public ID only.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::warn;
use serde_json::{Map, Value};

use crate::clock;
use crate::error::{Error, Result};

/// The audit log of one auth server.
pub struct AuditLog {
    /// `None`: events are dropped (unit tests).
    file: Option<Mutex<File>>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating, 0600) the log for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::io("open the audit log", path, e))?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
            path: path.to_path_buf(),
        })
    }

    /// A log that keeps nothing.
    pub fn discard() -> Self {
        AuditLog {
            file: None,
            path: PathBuf::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (`event` is its type, e.g. "lock.created") with `fields`, then
    /// fsyncs. Blocking: call it off the executor. A failure is logged, never fatal: the action
    /// itself already happened.
    pub fn record(&self, event: &str, fields: &[(&str, Value)]) {
        let Some(file) = &self.file else { return };
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
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            warn!(
                "cannot write the audit log {}: {e}; event {event} was not recorded",
                self.path.display()
            );
        }
    }
}
