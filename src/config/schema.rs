//! The file as written by people and by `teleport configure`: serde types with unknown keys
//! rejected, and the parse that names the file, line and column of a mistake.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::DEFAULT_CONFIG_PATH;
use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub version: Option<String>,
    #[serde(default)]
    pub teleport: Global,
    #[serde(default)]
    pub auth_service: AuthServiceConf,
    #[serde(default)]
    pub ssh_service: SshServiceConf,
    #[serde(default)]
    pub proxy_service: ProxyServiceConf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub nodename: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub join_params: Option<JoinParams>,
    /// Legacy spelling of `join_params.token_name`.
    pub auth_token: Option<String>,
    pub auth_server: Option<String>,
    pub proxy_server: Option<String>,
    pub ca_pin: Option<OneOrMany>,
    pub diag_addr: Option<String>,
    pub advertise_ip: Option<String>,
    pub log: Option<LogConf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    pub token_name: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConf {
    pub output: Option<String>,
    pub severity: Option<String>,
    pub format: Option<LogFormatConf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFormatConf {
    pub output: Option<String>,
    pub extra_fields: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthServiceConf {
    pub enabled: Option<Flag>,
    pub listen_addr: Option<String>,
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    pub proxy_listener_mode: Option<String>,
    /// teleport-lite extension: how often nodes heartbeat (auth tells them). Default 5s.
    pub heartbeat_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshServiceConf {
    pub enabled: Option<Flag>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub listen_addr: Option<String>,
    pub public_addr: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyServiceConf {
    pub enabled: Option<Flag>,
    pub web_listen_addr: Option<String>,
    pub public_addr: Option<OneOrMany>,
    #[serde(default)]
    pub https_keypairs: Vec<KeyPairConf>,
    pub https_keypairs_reload_interval: Option<String>,
    pub acme: Option<serde_yaml::Value>,
    /// `on`: every connection must start with a PROXY protocol v2 header; `off` (default):
    /// such a header is refused.
    pub proxy_protocol: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPairConf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Teleport's booleans: `true`, `yes`, `"yes"`, `on` ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(b) => Ok(Flag(b)),
            Raw::S(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => Ok(Flag(true)),
                "no" | "false" | "off" | "0" => Ok(Flag(false)),
                _ => Err(serde::de::Error::custom(format!(
                    "invalid boolean {s:?}: use yes or no"
                ))),
            },
        }
    }
}

/// A value that may be written as one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

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
        Some("v3") => Ok(cfg),
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
