//! Reading a config file: parse the schema, check the version, refuse the keys teleport-lite
//! does not implement (`unsupported`), and find the file when none is given.

use std::path::{Path, PathBuf};

use super::schema::FileConfig;
use super::DEFAULT_CONFIG_PATH;
use crate::error::{Error, Result};

/// Parses a YAML config text; errors name the file, line and column.
pub fn parse_file_config(text: &str, origin: &Path) -> Result<FileConfig> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let cfg: FileConfig = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        Error::Config(format!(
            "{}{at}: {e}; fix the file (see docs/operations.md for the keys teleport-lite reads)",
            origin.display()
        ))
    })?;
    match cfg.version.as_deref() {
        Some("v3") => super::unsupported::check(&cfg, origin).map(|()| cfg),
        Some(other) => Err(Error::Config(format!(
            "{}: config version {other:?} is not supported: teleport-lite reads version: v3 \
             (generate one with \"teleport configure\")",
            origin.display()
        ))),
        None => Err(Error::Config(format!(
            "{}: the file has no \"version: v3\" line; add it (teleport-lite reads the v3 format)",
            origin.display()
        ))),
    }
}

/// Reads and parses a config file.
pub fn load_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read config", path, e))?;
    parse_file_config(&text, path)
}

/// The config file to use: the given one, or `/etc/teleport.yaml` when it exists.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            default.exists().then(|| default.to_path_buf())
        }
    }
}
