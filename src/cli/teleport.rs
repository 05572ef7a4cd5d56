//! `teleport start | configure | node configure | version | health` (configure in
//! `configure.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use argh::FromArgs;
use log::{error, info};

use super::configure::{configure, node_configure, ConfigureCmd, NodeCmd, NodeSub};
use crate::agent::{self, NodeTarget};
use crate::auth::AuthServer;
use crate::config::{self, Roles, Settings, StartFlags};
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
    /// address of an auth server, HOST:PORT (port 3025 by default); repeat to try several in
    /// order
    #[argh(option)]
    auth_server: Vec<String>,
    /// join and keep tunnels through this proxy or load balancer, HOST:PORT (any port; 443
    /// by default)
    #[argh(option)]
    proxy: Option<String>,
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
            // stderr gets the error once, from `fail`; a log file gets it too, so the file
            // alone tells why the process stopped.
            if LOGS_TO_FILE.load(Relaxed) {
                error!("{e}");
            }
            crate::cli::fail(&e)
        }
    }
}

/// The logger writes to a file (`teleport.log.output: /path`), not to stderr.
static LOGS_TO_FILE: AtomicBool = AtomicBool::new(false);

fn start(c: StartCmd) -> Result<()> {
    let flags = StartFlags {
        config: c.config,
        roles: c.roles,
        token: c.token,
        ca_pins: c.ca_pin,
        auth_servers: c.auth_server,
        proxy: c.proxy,
        data_dir: c.data_dir,
        nodename: c.nodename,
        labels: c.labels,
        insecure: c.insecure,
        pid_file: c.pid_file,
        diag_addr: c.diag_addr,
    };
    let settings = Settings::load(&flags)?;
    logging::init(&settings.log, c.debug)?;
    LOGS_TO_FILE.store(
        matches!(settings.log.output, config::LogOutput::File(_)),
        Relaxed,
    );
    // Held until this function returns (or exec replaces the process on SIGHUP).
    let _data_dir_lock = fsutil::lock_data_dir(&settings.data_dir)?;
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
    // Every role runs its tasks on this one thread, beside the blocking pool that signs,
    // hashes and queries (`smol::unblock`). A heartbeat or a byte crossing the proxy wakes a
    // few tasks; with a worker per core those wakeups parked and woke threads (futex calls,
    // context switches), which cost more than the work itself: auth with 2,000 nodes beating
    // every second used 32.5 % of a core on 2 workers and 15.5 % on one thread; the proxy's
    // 64-byte round trips went from 211 to 189 us.
    rt::set_threads(0);
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
        let local = auth
            .as_ref()
            .map(|a| super::local::proxy(a, settings))
            .transpose()?;
        match ProxyServer::start(settings, local, shutdown.clone()).await? {
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
            (Some(a), _, _) => super::local::node(a, settings)?,
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
