//! `teleport configure` and `teleport node configure`: write a v3 file for this host.

use std::io::Read;
use std::path::{Path, PathBuf};

use argh::FromArgs;

use crate::config::{self, ConfigureInput, Output, Roles};
use crate::error::{Error, Result};
use crate::fsutil;

/// Generate a teleport.yaml for this host.
#[derive(FromArgs)]
#[argh(subcommand, name = "configure")]
pub(super) struct ConfigureCmd {
    /// comma-separated services to enable: auth, node, proxy (default: all three)
    #[argh(option)]
    roles: Option<String>,
    #[argh(option)]
    /// join token (or path of a file holding it; - reads it from stdin)
    token: Option<String>,
    /// auth server address, HOST:3025
    #[argh(option)]
    auth_server: Option<String>,
    /// proxy (or load balancer) address, HOST:443
    #[argh(option)]
    proxy: Option<String>,
    /// CA pin(s), comma-separated
    #[argh(option)]
    ca_pin: Vec<String>,
    /// data directory (default /var/lib/teleport)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// node name (default: the hostname)
    #[argh(option)]
    node_name: Option<String>,
    /// node labels, k=v,k2=v2
    #[argh(option)]
    labels: Option<String>,
    /// node labels (alias of --labels)
    #[argh(option)]
    node_labels: Option<String>,
    /// cluster name, when the auth role is enabled (default: the node name)
    #[argh(option)]
    cluster_name: Option<String>,
    /// the proxy's public address, HOST:PORT (443 by default); it listens on the same port
    #[argh(option)]
    public_addr: Option<String>,
    /// certificate (PEM chain) the proxy shows browsers, e.g. from Let's Encrypt
    #[argh(option)]
    cert_file: Option<PathBuf>,
    /// private key (PEM) of --cert-file
    #[argh(option)]
    key_file: Option<PathBuf>,
    /// where to write: stdout (default), file (= /etc/teleport.yaml), file:///path or /path
    #[argh(option, short = 'o', default = "String::from(\"stdout\")")]
    output: String,
    /// print nothing but errors
    #[argh(switch)]
    silent: bool,
}

/// Commands for a node.
#[derive(FromArgs)]
#[argh(subcommand, name = "node")]
pub(super) struct NodeCmd {
    #[argh(subcommand)]
    pub(super) cmd: NodeSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub(super) enum NodeSub {
    Configure(NodeConfigureCmd),
}

/// Generate a teleport.yaml that runs only the node (SSH) service.
#[derive(FromArgs)]
#[argh(subcommand, name = "configure")]
pub(super) struct NodeConfigureCmd {
    /// join token (or path of a file holding it; - reads it from stdin)
    #[argh(option)]
    token: Option<String>,
    /// auth server address, HOST:3025
    #[argh(option)]
    auth_server: Option<String>,
    /// proxy (or load balancer) address, HOST:443
    #[argh(option)]
    proxy: Option<String>,
    /// CA pin(s), comma-separated
    #[argh(option)]
    ca_pin: Vec<String>,
    /// data directory (default /var/lib/teleport)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// node name (default: the hostname)
    #[argh(option)]
    node_name: Option<String>,
    /// node labels, k=v,k2=v2
    #[argh(option)]
    labels: Option<String>,
    /// join method; only "token" is supported
    #[argh(option, default = "String::from(\"token\")")]
    join_method: String,
    /// where to write: stdout (default), file (= /etc/teleport.yaml), file:///path or /path
    #[argh(option, short = 'o', default = "String::from(\"stdout\")")]
    output: String,
    /// print nothing but errors
    #[argh(switch)]
    silent: bool,
}

/// `--token=-` reads the token from the first line of stdin, so a script can pass it without
/// putting it in an argument (which every local user can read in `ps`).
fn token_arg(token: Option<String>) -> Result<Option<String>> {
    if token.as_deref() != Some("-") {
        return Ok(token);
    }
    let mut line = String::new();
    std::io::Read::take(std::io::stdin(), 4096)
        .read_to_string(&mut line)
        .map_err(|e| Error::io("read the token from", std::path::Path::new("stdin"), e))?;
    match line.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(t) => Ok(Some(t.to_string())),
        None => Err(Error::Config(
            "--token=- reads the token from stdin, but stdin was empty: pipe the token in, or \
             give it as --token=VALUE"
                .into(),
        )),
    }
}

pub(super) fn configure(c: ConfigureCmd) -> Result<()> {
    let roles = match &c.roles {
        Some(r) => Roles::parse(r)?,
        None => Roles {
            auth: true,
            node: true,
            proxy: true,
        },
    };
    let labels = c.labels.or(c.node_labels);
    let input = ConfigureInput {
        roles,
        token: token_arg(c.token)?,
        auth_server: c.auth_server,
        proxy: c.proxy,
        ca_pins: c.ca_pin,
        data_dir: c.data_dir,
        node_name: c.node_name,
        labels: labels
            .as_deref()
            .map(config::parse_labels)
            .transpose()?
            .unwrap_or_default(),
        cluster_name: c.cluster_name,
        public_addr: c.public_addr,
        cert_file: c.cert_file,
        key_file: c.key_file,
    };
    write_config(&input, &c.output, c.silent)
}

pub(super) fn node_configure(c: NodeConfigureCmd) -> Result<()> {
    if c.join_method != "token" {
        return Err(Error::Config(format!(
            "--join-method={} is not supported: teleport-lite joins with method token",
            c.join_method
        )));
    }
    let input = ConfigureInput {
        roles: Roles {
            node: true,
            ..Roles::default()
        },
        token: token_arg(c.token)?,
        auth_server: c.auth_server,
        proxy: c.proxy,
        ca_pins: c.ca_pin,
        data_dir: c.data_dir,
        node_name: c.node_name,
        labels: c
            .labels
            .as_deref()
            .map(config::parse_labels)
            .transpose()?
            .unwrap_or_default(),
        ..ConfigureInput::default()
    };
    write_config(&input, &c.output, c.silent)
}

const SAMPLE_HEADER: &str = "#\n# A Sample Teleport configuration file.\n#\n# Generated by teleport-lite; see docs/operations.md for every key.\n#\n";

fn write_config(input: &ConfigureInput, output: &str, silent: bool) -> Result<()> {
    let yaml = config::render_config(input)?;
    let path = match config::parse_output(output)? {
        Output::Stdout => {
            print!("{SAMPLE_HEADER}{yaml}");
            return Ok(());
        }
        Output::File(p) => p,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    }
    fsutil::write_new(&path, yaml.as_bytes(), 0o600).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Config(format!(
            "will not overwrite existing file {p}: rm -f {p} and try again (or write elsewhere \
             with -o file:///other/path)",
            p = path.display()
        )),
        _ => Error::io("write config file", &path, e),
    })?;
    if !silent {
        warn_if_data_dir_used(input.data_dir.as_deref());
        println!(
            "\nA Teleport configuration file has been created at \"{p}\".\nTo start Teleport \
             with this configuration file, run:\n\nteleport start --config=\"{p}\"\n\nHappy \
             Teleporting!",
            p = path.display()
        );
    }
    Ok(())
}

fn warn_if_data_dir_used(dir: Option<&Path>) {
    let dir = dir.unwrap_or(Path::new(config::DEFAULT_DATA_DIR));
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "WARNING: The data directory {} is not empty and may contain existing cluster \
             state. Remove it before joining a different cluster.",
            dir.display()
        );
    }
}
