//! Effective settings: the config file and the flags of `teleport start` merged, with the
//! checks that need both (which services run, where the cluster is, the join token).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::values::{parse_log, parse_proxy_protocol};
use super::*;
use crate::clock;
use crate::error::{Error, Result};
use crate::pki::pin::Pin;
use crate::secret::Token;

/// The services a config file turns on: a block with `enabled: yes` or without `enabled:`;
/// an absent `auth_service`/`ssh_service` is on and an absent `proxy_service` off (as before).
pub(super) fn file_roles(file: &FileConfig, path: Option<&Path>) -> Result<Roles> {
    let roles = Roles {
        auth: file.auth_service.enabled_in_file().unwrap_or(true),
        node: file.ssh_service.enabled_in_file().unwrap_or(true),
        proxy: file.proxy_service.enabled_in_file().unwrap_or(false),
    };
    if roles == Roles::default() {
        return Err(Error::Config(format!(
            "{}: no service is enabled, so there would be nothing to run: set enabled: yes \
             under ssh_service (a node), proxy_service or auth_service, or pass --roles=node",
            path.map_or("the config".into(), |p| p.display().to_string())
        )));
    }
    Ok(roles)
}

/// Where a joining host reaches the cluster: the auth servers to try in order, or one proxy.
/// Flags replace the file's addresses.
fn cluster_addrs(
    g: &Global,
    flags: &StartFlags,
    roles: Roles,
) -> Result<(Vec<String>, Option<String>)> {
    if flags.proxy.is_some() && !flags.auth_servers.is_empty() {
        return Err(Error::Config(
            "--proxy and --auth-server cannot both be set: a node joins through a proxy \
             (--proxy=HOST:PORT) or straight to auth (--auth-server=HOST:3025)"
                .into(),
        ));
    }
    let from_flags = flags.proxy.is_some() || !flags.auth_servers.is_empty();
    if g.auth_server.is_some() && g.auth_servers.is_some() {
        return Err(Error::Config(
            "both teleport.auth_server and teleport.auth_servers are set: keep one (either \
             takes a list of auth servers)"
                .into(),
        ));
    }
    let raw_auth: Vec<String> = if from_flags {
        flags.auth_servers.clone()
    } else if let Some(list) = &g.auth_servers {
        list.clone()
    } else {
        g.auth_server
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
    };
    let mut auth_servers = raw_auth
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| normalize_addr(a, DEFAULT_AUTH_PORT, "auth_server"))
        .collect::<Result<Vec<_>>>()?;
    let raw_proxy = if from_flags {
        flags.proxy.clone()
    } else {
        g.proxy_server.clone()
    };
    let mut proxy_server = raw_proxy
        .filter(|a| !a.trim().is_empty())
        .map(|a| normalize_addr(&a, 443, "proxy_server"))
        .transpose()?;
    // As in Teleport: a lone "auth server" on a web port (443, 3080) is a proxy.
    if let [a] = auth_servers.as_slice() {
        let web_port = a.ends_with(":443") || a.ends_with(":3080");
        if web_port && proxy_server.is_none() && !roles.proxy {
            proxy_server = auth_servers.pop();
        }
    }
    Ok((auth_servers, proxy_server))
}

impl Settings {
    /// Builds the effective settings from the config file (if any) and the flags.
    pub fn load(flags: &StartFlags) -> Result<Settings> {
        let path = locate(flags.config.as_deref());
        let file = match &path {
            Some(p) => load_file_config(p)?,
            None => FileConfig::default(),
        };
        Settings::merge(file, path, flags)
    }

    pub fn merge(file: FileConfig, path: Option<PathBuf>, flags: &StartFlags) -> Result<Settings> {
        let g = &file.teleport;
        let roles = match &flags.roles {
            Some(r) => Roles::parse(r)?,
            None if path.is_some() => file_roles(&file, path.as_deref())?,
            None => Roles {
                auth: true,
                node: true,
                proxy: true,
            },
        };
        let nodename = flags
            .nodename
            .clone()
            .or_else(|| g.nodename.clone())
            .unwrap_or_else(hostname);
        validate_name(&nodename, "nodename")?;
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| g.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let raw_token = flags
            .token
            .clone()
            .or_else(|| g.join_params.as_ref().and_then(|j| j.token_name.clone()))
            .or_else(|| g.auth_token.clone())
            .filter(|t| !t.trim().is_empty());
        if let Some(method) = g.join_params.as_ref().and_then(|j| j.method.as_deref()) {
            if !method.is_empty() && method != "token" {
                return Err(Error::Config(format!(
                    "join_params.method {method:?} is not supported: teleport-lite joins with \
                     method: token"
                )));
            }
        }
        let token = raw_token
            .map(|t| value_or_file(&t))
            .transpose()?
            .map(Token::new);

        let (auth_servers, proxy_server) = cluster_addrs(g, flags, roles)?;
        let auth_server = auth_servers.first().cloned();
        if auth_server.is_some() && proxy_server.is_some() {
            return Err(Error::Config(
                "both auth_server and proxy_server are set: keep only one".into(),
            ));
        }

        let mut pin_strings: Vec<String> = g
            .ca_pin
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        if !flags.ca_pins.is_empty() {
            pin_strings = flags.ca_pins.clone();
        }
        let ca_pins = pin_strings
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Pin::parse)
            .collect::<Result<Vec<_>>>()?;

        let mut labels = file.ssh_service.labels.clone();
        if let Some(l) = &flags.labels {
            labels = parse_labels(l)?;
        }

        let a = &file.auth_service;
        let listen = a.listen_addr.as_deref().unwrap_or(DEFAULT_AUTH_LISTEN);
        let listen_addr: SocketAddr = listen.parse().map_err(|_| {
            Error::Config(format!(
                "auth_service.listen_addr {listen:?} is not an IP:PORT such as 0.0.0.0:3025"
            ))
        })?;
        let cluster_name = a.cluster_name.clone().unwrap_or_else(hostname);
        validate_name(&cluster_name, "auth_service.cluster_name")?;
        let heartbeat_interval = match &a.heartbeat_interval {
            Some(s) => clock::parse_duration(s)
                .map_err(|e| Error::Config(format!("auth_service.heartbeat_interval: {e}")))?,
            None => DEFAULT_HEARTBEAT_INTERVAL,
        };
        if heartbeat_interval < MIN_HEARTBEAT_INTERVAL {
            return Err(Error::Config(format!(
                "auth_service.heartbeat_interval must be at least {}ms",
                MIN_HEARTBEAT_INTERVAL.as_millis()
            )));
        }
        let advertise_host = match (&g.advertise_ip, listen_addr.ip().is_unspecified()) {
            (Some(ip), _) => ip.clone(),
            (None, false) => listen_addr.ip().to_string(),
            (None, true) => hostname(),
        };
        let auth = AuthSettings {
            listen_addr,
            cluster_name,
            static_tokens: parse_static_tokens(&a.tokens)?,
            heartbeat_interval,
            host_cert_ttl: values::host_cert_ttl(a.host_cert_ttl.as_deref())?,
            advertise_addr: format!("{advertise_host}:{}", listen_addr.port()),
            storage: values::parse_storage(g.storage.as_ref())?,
        };

        let p = &file.proxy_service;
        let web = p.web_listen_addr.as_deref().unwrap_or(DEFAULT_WEB_LISTEN);
        let web_listen_addr: SocketAddr = web.parse().map_err(|_| {
            Error::Config(format!(
                "proxy_service.web_listen_addr {web:?} is not an IP:PORT such as 0.0.0.0:3080"
            ))
        })?;
        let public_addr = match p.public_addr.clone().map(OneOrMany::into_vec) {
            Some(v) if !v.is_empty() => {
                normalize_addr(&v[0], web_listen_addr.port(), "proxy_service.public_addr")?
            }
            _ if web_listen_addr.ip().is_unspecified() => {
                format!("{}:{}", hostname(), web_listen_addr.port())
            }
            _ => web_listen_addr.to_string(),
        };
        let https_keypair = match p.https_keypairs.as_slice() {
            [] => None,
            [kp] => Some((kp.cert_file.clone(), kp.key_file.clone())),
            _ => {
                return Err(Error::Config(
                    "proxy_service.https_keypairs: teleport-lite serves one keypair; keep one \
                     entry"
                        .into(),
                ))
            }
        };
        let proxy = ProxySettings {
            web_listen_addr,
            public_addr,
            https_keypair,
            proxy_protocol: parse_proxy_protocol(p.proxy_protocol.as_ref())?,
            user_dial_ports: values::parse_dial_ports(p.user_dial_ports.as_deref())?,
        };

        // Flag, then file, then $TELEPORT_DIAG_ADDR (the Docker image's default).
        let diag = flags
            .diag_addr
            .clone()
            .or_else(|| g.diag_addr.clone().filter(|a| !a.is_empty()))
            .or_else(|| std::env::var("TELEPORT_DIAG_ADDR").ok());
        let diag_addr = match diag.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                Error::Config(format!(
                    "teleport.diag_addr {a:?} is not an IP:PORT such as 127.0.0.1:3000"
                ))
            })?),
        };

        let settings = Settings {
            roles,
            nodename,
            data_dir,
            pid_file: flags.pid_file.clone().or_else(|| g.pid_file.clone()),
            token,
            auth_server,
            auth_servers,
            proxy_server,
            ca_pins,
            insecure: flags.insecure,
            labels,
            log: parse_log(g.log.as_ref())?,
            auth,
            proxy,
            diag_addr,
            config_path: path,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        let joins_remotely = (self.roles.node || self.roles.proxy) && !self.roles.auth;
        if self.roles.proxy && !self.roles.auth && self.auth_server.is_none() {
            return Err(Error::Config(
                "a proxy joins the auth server directly: set teleport.auth_server or pass \
                 --auth-server=HOST:3025 (with a proxy token and --ca-pin)"
                    .into(),
            ));
        }
        if joins_remotely && self.auth_server.is_none() && self.proxy_server.is_none() {
            return Err(Error::Config(
                "the node does not know where the cluster is: set teleport.proxy_server \
                 (HOST:443) or teleport.auth_server, or pass --auth-server=HOST:3025"
                    .into(),
            ));
        }
        Ok(())
    }
}
