//! Durable, private file writes: temp file in the same directory, fsync, rename, fsync the
//! directory. A crash leaves either the old file or the new one, never half of one. And the
//! lock that keeps a second process off a `data_dir`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically with `mode` (0600 for secrets).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A fresh name, created exclusively and never through a symlink: in a directory another
    // user can write (`tctl auth sign --out=/tmp/...`), nothing planted there receives a key.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.tmp{}.{nanos}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

/// Creates `path` exclusively (never overwriting) with `mode`, writes and syncs it.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Creates a private directory (0700) and its parents.
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("create directory", path, e))?;
    // A directory that existed before (made by a package, or by an older version) may be
    // readable by others: it holds keys, so it is tightened whatever it was.
    let mode = fs::metadata(path)
        .map_err(|e| Error::io("inspect directory", path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("restrict the permissions of", path, e))?;
    }
    Ok(())
}

/// The error for a data directory this process cannot write: it names the directory, the
/// user and the fix, and says that nothing was sent (a join token is still unused).
pub fn not_writable(dir: &Path, e: std::io::Error) -> Error {
    let uid = nix::unistd::geteuid();
    Error::Config(format!(
        "the data directory {dir} is not writable by this process (uid {uid}): {e}. The join \
         was not sent and the token is unused. Make the directory writable by uid {uid} \
         (chown -R {uid} {dir}), run as the user that owns it, or set teleport.data_dir \
         (--data-dir) to a writable directory",
        dir = dir.display()
    ))
}

/// The lock file in `data_dir`: it holds the PID of the process that has the directory.
pub const LOCK_FILE: &str = "teleport.lock";

/// An exclusive `flock` on `data_dir/teleport.lock`, held while the process runs. The kernel
/// drops it when the process ends however it ends (SIGKILL too), and on exec (the descriptor
/// is close-on-exec), so a restart in place takes it again.
#[derive(Debug)]
pub struct DataDirLock {
    lock: Option<Flock<File>>,
    path: PathBuf,
    /// The directory was made for this lock: removed again at exit if nothing else went in.
    made_dir: Option<PathBuf>,
}

/// Takes the lock on `dir` (created 0700 if missing), or says which process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock> {
    let made_dir = (!dir.exists()).then(|| dir.to_path_buf());
    ensure_private_dir(dir).map_err(|e| match e {
        Error::Io { source, .. } => not_writable(dir, source),
        other => other,
    })?;
    let path = dir.join(LOCK_FILE);
    let err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            not_writable(dir, e)
        }
        _ => Error::io("lock the data directory with", &path, e),
    };
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, Errno::EWOULDBLOCK)) => {
                // A PID is a few digits; anything else (a holder that has not written yet)
                // is shown as unknown.
                let mut text = String::new();
                let _ = file.take(32).read_to_string(&mut text);
                let pid = match text.trim().parse::<u32>() {
                    Ok(n) => n.to_string(),
                    Err(_) => "unknown".into(),
                };
                return Err(Error::Config(format!(
                    "data_dir {} is in use by another teleport process (PID {pid}); two \
                     processes on one data_dir would run with one identity. Stop the other one \
                     (systemctl stop teleport, or kill {pid}), or give this one its own \
                     --data-dir",
                    dir.display()
                )));
            }
            Err((_, e)) => return Err(err(e.into())),
        };
        // The previous holder removes the file as it exits: if that happened between our open
        // and our lock, we hold an unlinked file that nobody else can see. Start again.
        let ours = lock.metadata().map_err(err)?;
        let named = fs::metadata(&path).ok();
        if !named.is_some_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino())) {
            continue;
        }
        lock.set_len(0)
            .and_then(|()| lock.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(err)?;
        return Ok(DataDirLock {
            lock: Some(lock),
            path,
            made_dir,
        });
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so nobody locks a file that is about to vanish
        // (and a failed first start leaves no trace in a directory it made).
        let _ = fs::remove_file(&self.path);
        drop(self.lock.take());
        if let Some(dir) = &self.made_dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Reads a file to a string, mapping the error to one that names the path.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_open_data_dir_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_held_data_dir_names_its_holder_and_a_made_dir_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let lock = lock_data_dir(&dir).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(dir.join(LOCK_FILE)).unwrap().trim(), pid);
        // flock locks belong to the open file: a second open in this process conflicts too.
        let err = lock_data_dir(&dir).unwrap_err().to_string();
        assert!(err.contains(&format!("(PID {pid})")), "{err}");
        drop(lock);
        assert!(!dir.exists());
        let again = lock_data_dir(&dir).unwrap();
        fs::write(dir.join("kept"), "x").unwrap();
        drop(again);
        assert!(dir.join("kept").exists() && !dir.join(LOCK_FILE).exists());
    }
}
