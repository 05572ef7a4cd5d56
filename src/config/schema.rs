//! The file as written by people and by `teleport configure`: serde types with unknown keys
//! rejected, and the parse that names the file, line and column of a mistake.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub version: Option<String>,
    #[serde(default)]
    pub teleport: Global,
    #[serde(default, deserialize_with = "block")]
    pub auth_service: AuthServiceConf,
    #[serde(default, deserialize_with = "block")]
    pub ssh_service: SshServiceConf,
    #[serde(default, deserialize_with = "block")]
    pub proxy_service: ProxyServiceConf,
}

/// A service block: written in the file (even empty, `proxy_service:`), or absent.
pub trait Block: Default {
    fn mark_present(&mut self);
}

/// Deserializes a service block and records that the file has it: as in Teleport, a block
/// without `enabled:` turns its service on.
fn block<'de, D: Deserializer<'de>, T: Deserialize<'de> + Block>(
    d: D,
) -> std::result::Result<T, D::Error> {
    let mut b = Option::<T>::deserialize(d)?.unwrap_or_default();
    b.mark_present();
    Ok(b)
}

macro_rules! impl_block {
    ($($t:ty),*) => {$(
        impl Block for $t {
            fn mark_present(&mut self) {
                self.present = true;
            }
        }
        impl $t {
            /// The service runs: `enabled: yes`, or the block is there without `enabled:`.
            /// `None`: the file has no such block.
            pub fn enabled_in_file(&self) -> Option<bool> {
                match self.enabled {
                    Some(f) => Some(f.0),
                    None => self.present.then_some(true),
                }
            }
        }
    )*};
}
impl_block!(AuthServiceConf, SshServiceConf, ProxyServiceConf);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub nodename: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub join_params: Option<JoinParams>,
    /// Legacy spelling of `join_params.token_name`.
    pub auth_token: Option<String>,
    /// One address, a comma-separated list, or a YAML list: tried in order, and in turn when the
    /// one in use dies.
    pub auth_server: Option<OneOrMany>,
    /// The v1/v2 spelling of the list, accepted in any version.
    pub auth_servers: Option<Vec<String>>,
    pub proxy_server: Option<String>,
    pub ca_pin: Option<OneOrMany>,
    pub diag_addr: Option<String>,
    pub advertise_ip: Option<String>,
    pub log: Option<LogConf>,
    pub storage: Option<StorageConf>,
}

/// `teleport.storage`: where auth keeps its state. `type: sqlite` (the default, a file in
/// data_dir) or `type: postgresql` with a `conn_string`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConf {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// May hold a password: never printed (`Debug` masks it).
    pub conn_string: Option<String>,
}

impl std::fmt::Debug for StorageConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConf")
            .field("kind", &self.kind)
            .field("conn_string", &self.conn_string.as_ref().map(|_| "MASKED"))
            .finish()
    }
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
    /// The file has this block (set by `block`, never read from YAML).
    #[serde(skip)]
    pub present: bool,
    pub enabled: Option<Flag>,
    pub listen_addr: Option<String>,
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    pub proxy_listener_mode: Option<String>,
    /// teleport-lite extension: how often nodes heartbeat (auth tells them). Default 5s.
    pub heartbeat_interval: Option<String>,
    /// teleport-lite extension: lifetime of host certificates, renewed at two thirds of it.
    pub host_cert_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshServiceConf {
    /// The file has this block (set by `block`, never read from YAML).
    #[serde(skip)]
    pub present: bool,
    pub enabled: Option<Flag>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub listen_addr: Option<String>,
    pub public_addr: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyServiceConf {
    /// The file has this block (set by `block`, never read from YAML).
    #[serde(skip)]
    pub present: bool,
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
    /// Ports on a node that a user identity (`tctl auth sign`) may dial; default `[22]`.
    pub user_dial_ports: Option<Vec<u16>>,
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
