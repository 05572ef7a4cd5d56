//! Before a join is sent, prove that the data directory can hold the identity: a token is
//! often single-use, and spending it on a host that cannot store the result leaves the
//! operator with a used token and no node.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

/// Creates `dir` (0700) if needed and writes, syncs and removes a probe file in it.
pub fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".write-check.{}", std::process::id()));
    // A stale probe of an earlier process with our PID (never a symlink someone planted:
    // the probe is opened with O_NOFOLLOW and create_new below).
    let _ = std::fs::remove_file(&probe);
    let result = fsutil::ensure_private_dir(dir).map_err(|e| match e {
        Error::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    });
    let result = result.and_then(|()| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&probe)?;
        f.write_all(b"ok")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| fsutil::not_writable(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_dir_passes_and_leaves_no_probe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        check_writable(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_path_under_a_file_names_the_directory_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_writable(&file.join("data")).unwrap_err().to_string();
        assert!(err.contains("data is not writable"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");
    }
}
