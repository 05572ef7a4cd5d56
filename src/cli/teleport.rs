//! `teleport start | configure | node configure | version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;
use log::{error, info};

use crate::agent::{self, NodeTarget};
use crate::auth::server::dial_addr;
use crate::auth::AuthServer;
use crate::config::{self, ConfigureInput, Output, Roles, Settings, StartFlags};
use crate::error::{Error, Result};
use crate::proxy::ProxyServer;
use crate::rt::{self, Shutdown};
use crate::{fsutil, logging, VERSION};

/// Teleport-lite: the Auth Service, node agent and tctl of Teleport's token join flow.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Start(StartCmd),
    Configure(ConfigureCmd),
    Node(NodeCmd),
    Version(VersionCmd),
    Loadgen(super::loadgen::LoadgenCmd),
    Health(HealthCmd),
}

/// Start the services enabled in the config file or by --roles, in the foreground.
#[derive(FromArgs)]
#[argh(subcommand, name = "start")]
struct StartCmd {
    /// config file (default /etc/teleport.yaml when it exists)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// comma-separated services to run: auth, node, proxy
    #[argh(option)]
    roles: Option<String>,
    /// join token, or the path of a file holding it
    #[argh(option)]
    token: Option<String>,
    /// CA pin (sha256:<hex>) of the cluster; repeat or separate with commas
    #[argh(option)]
    ca_pin: Vec<String>,
    /// address of the auth server, HOST:PORT (port 3025 by default)
    #[argh(option)]
    auth_server: Option<String>,
    /// data directory (default /var/lib/teleport)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// name of this host in the cluster (default: the hostname)
    #[argh(option)]
    nodename: Option<String>,
    /// labels of this node, k=v,k2=v2
    #[argh(option)]
    labels: Option<String>,
    /// join without verifying the auth server (no CA pin); unsafe
    #[argh(switch)]
    insecure: bool,
    /// write the process ID to this file
    #[argh(option)]
    pid_file: Option<PathBuf>,
    /// log at DEBUG level
    #[argh(switch, short = 'd')]
    debug: bool,
    /// serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:3000
    #[argh(option)]
    diag_addr: Option<String>,
}

/// Exit 0 when the teleport process serving diagnostics at --diag-addr is ready (for Docker
/// HEALTHCHECK and scripts).
#[derive(FromArgs)]
#[argh(subcommand, name = "health")]
struct HealthCmd {
    /// diagnostics address of the process (default 127.0.0.1:3000)
    #[argh(option, default = "String::from(\"127.0.0.1:3000\")")]
    diag_addr: String,
}

/// Generate a teleport.yaml for this host.
#[derive(FromArgs)]
#[argh(subcommand, name = "configure")]
struct ConfigureCmd {
    /// comma-separated services to enable: auth, node, proxy (default: all three)
    #[argh(option)]
    roles: Option<String>,
    #[argh(option)]
    /// join token (or path of a file holding it)
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
struct NodeCmd {
    #[argh(subcommand)]
    cmd: NodeSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum NodeSub {
    Configure(NodeConfigureCmd),
}

/// Generate a teleport.yaml that runs only the node (SSH) service.
#[derive(FromArgs)]
#[argh(subcommand, name = "configure")]
struct NodeConfigureCmd {
    /// join token (or path of a file holding it)
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

/// Print the version.
#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
struct VersionCmd {}

pub fn version_line() -> String {
    format!("Teleport v{VERSION} (teleport-lite)")
}

pub fn main(args: &[String]) -> i32 {
    let cli: Cli = match crate::cli::parse("teleport", args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match cli.cmd {
        Sub::Start(c) => start(c),
        Sub::Configure(c) => configure(c),
        Sub::Node(NodeCmd {
            cmd: NodeSub::Configure(c),
        }) => node_configure(c),
        Sub::Loadgen(c) => super::loadgen::run(c),
        Sub::Health(c) => return crate::diag::health_main(&c.diag_addr),
        Sub::Version(_) => {
            println!("{}", version_line());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if log::log_enabled!(log::Level::Error) {
                error!("{e}");
            }
            crate::cli::fail(&e)
        }
    }
}

fn start(c: StartCmd) -> Result<()> {
    let flags = StartFlags {
        config: c.config,
        roles: c.roles,
        token: c.token,
        ca_pins: c.ca_pin,
        auth_server: c.auth_server,
        data_dir: c.data_dir,
        nodename: c.nodename,
        labels: c.labels,
        insecure: c.insecure,
        pid_file: c.pid_file,
        diag_addr: c.diag_addr,
    };
    let settings = Settings::load(&flags)?;
    logging::init(&settings.log, c.debug)?;
    if let Some(p) = &settings.pid_file {
        fsutil::write_atomic(p, format!("{}\n", std::process::id()).as_bytes(), 0o644)?;
    }
    let (trigger, shutdown) = rt::shutdown_pair();
    rt::install_signal_handlers(trigger)
        .map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")))?;
    info!(
        "{} starting: roles {}, data_dir {}",
        version_line(),
        roles_text(settings.roles),
        settings.data_dir.display()
    );
    // Auth and proxy serve many peers: a thread per core. The agent stays on one.
    if settings.roles.auth || settings.roles.proxy {
        rt::set_threads(rt::cores());
    }
    let result = rt::block_on(run_services(&settings, shutdown));
    if let Some(p) = &settings.pid_file {
        let _ = std::fs::remove_file(p);
    }
    if result.is_ok() && rt::reload_requested() {
        info!("restarting in place to reload the configuration");
        return Err(reexec());
    }
    if result.is_ok() {
        info!("stopped");
    }
    result
}

/// Replaces this process with a fresh start of the same command line (same PID, so systemd and
/// Docker keep tracking it). Returns only on failure.
fn reexec() -> Error {
    use std::os::unix::process::CommandExt;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // exec skips exit handlers: write out queued log lines first.
    log::logger().flush();
    let err = std::process::Command::new("/proc/self/exe")
        .args(&args)
        .exec();
    Error::Config(format!("cannot restart after SIGHUP: {err}"))
}

fn roles_text(r: Roles) -> String {
    let mut v = Vec::new();
    if r.auth {
        v.push("auth");
    }
    if r.node {
        v.push("node");
    }
    if r.proxy {
        v.push("proxy");
    }
    v.join(",")
}

/// Grace given to tasks after a shutdown signal before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_millis(1500);

async fn run_services(settings: &Settings, shutdown: Shutdown) -> Result<()> {
    crate::diag::set_roles(crate::diag::Roles {
        auth: settings.roles.auth,
        proxy: settings.roles.proxy,
        node: settings.roles.node,
    });
    if let Some(addr) = settings.diag_addr {
        crate::diag::serve(addr, shutdown.clone()).await?;
    }
    let auth = if settings.roles.auth {
        Some(AuthServer::start(settings, shutdown.clone()).await?)
    } else {
        None
    };
    let _proxy = if settings.roles.proxy {
        match ProxyServer::start(settings, auth.as_ref(), shutdown.clone()).await? {
            Some(p) => Some(p),
            None => return Ok(()),
        }
    } else {
        None
    };
    if !settings.roles.node {
        crate::diag::set_ready("services started");
    }
    if settings.roles.node {
        let target = match (&auth, &settings.proxy_server, &settings.auth_server) {
            (Some(a), _, _) => NodeTarget::Local {
                auth: a.state.clone(),
                host_id: a.host_id.clone(),
                addr: dial_addr(a.local_addr),
            },
            (None, Some(p), _) => NodeTarget::Proxy(p.clone()),
            (None, None, Some(a)) => NodeTarget::Auth(a.clone()),
            (None, None, None) => {
                return Err(Error::Config(
                    "no auth_server or proxy_server configured".into(),
                ))
            }
        };
        let node = agent::run(settings, target, shutdown.clone());
        let bounded_stop = async {
            shutdown.wait().await;
            smol::Timer::after(STOP_GRACE).await;
            Ok(())
        };
        futures_lite::future::or(node, bounded_stop).await?;
    }
    shutdown.wait().await;
    Ok(())
}

fn configure(c: ConfigureCmd) -> Result<()> {
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
        token: c.token,
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
    };
    write_config(&input, &c.output, c.silent)
}

fn node_configure(c: NodeConfigureCmd) -> Result<()> {
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
        token: c.token,
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
        cluster_name: None,
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
