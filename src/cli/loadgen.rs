//! `teleport loadgen`: many node agents in one process, for benchmarks. Each agent has its own
//! key, identity, data directory and tunnels or heartbeat stream, exactly as separate processes
//! would; only the process is shared.

use std::path::PathBuf;

use argh::FromArgs;

use crate::agent::{self, NodeTarget};
use crate::config::{FileConfig, Settings, StartFlags};
use crate::error::{Error, Result};
use crate::rt::{self, Shutdown};

/// Run many node agents in one process (benchmarks and load tests).
#[derive(FromArgs)]
#[argh(subcommand, name = "loadgen")]
pub struct LoadgenCmd {
    /// number of agents
    #[argh(option, default = "100")]
    count: usize,
    /// join token (node type, multi-use)
    #[argh(option)]
    token: String,
    /// CA pin of the cluster
    #[argh(option)]
    ca_pin: String,
    /// join through this proxy or load balancer and keep tunnels
    #[argh(option)]
    proxy: Option<String>,
    /// join straight to this auth server and heartbeat directly
    #[argh(option)]
    auth_server: Option<String>,
    /// directory for the agents' data directories
    #[argh(option)]
    data_dir: PathBuf,
    /// name prefix of the agents (default loadgen)
    #[argh(option, default = "String::from(\"loadgen\")")]
    prefix: String,
}

pub fn run(c: LoadgenCmd) -> Result<()> {
    let target = match (&c.proxy, &c.auth_server) {
        (Some(p), None) => p.clone(),
        (None, Some(a)) => a.clone(),
        _ => {
            return Err(Error::Config(
                "give exactly one of --proxy and --auth-server".into(),
            ))
        }
    };
    crate::logging::init_cli();
    let (trigger, shutdown) = rt::shutdown_pair();
    rt::install_signal_handlers(trigger)
        .map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")))?;
    let mut all = Vec::with_capacity(c.count);
    for i in 0..c.count {
        let flags = StartFlags {
            roles: Some("node".into()),
            token: Some(c.token.clone()),
            ca_pins: vec![c.ca_pin.clone()],
            auth_servers: vec![target.clone()],
            data_dir: Some(c.data_dir.join(format!("{}-{i}", c.prefix))),
            nodename: Some(format!("{}-{i}", c.prefix)),
            ..StartFlags::default()
        };
        let mut s = Settings::merge(FileConfig::default(), None, &flags)?;
        if c.proxy.is_some() {
            s.proxy_server = Some(target.clone());
            s.auth_server = None;
            s.auth_servers.clear();
        }
        all.push(s);
    }
    eprintln!("loadgen: starting {} agents against {target}", c.count);
    smol::block_on(async {
        let tasks: Vec<_> = all
            .into_iter()
            .map(|s| {
                let shutdown: Shutdown = shutdown.clone();
                let via_proxy = c.proxy.is_some();
                crate::rt::spawn(async move {
                    let t = if via_proxy {
                        NodeTarget::Proxy(s.proxy_server.clone().unwrap_or_default())
                    } else {
                        NodeTarget::Auth(s.auth_server.clone().unwrap_or_default())
                    };
                    if let Err(e) = agent::run(&s, t, shutdown).await {
                        eprintln!("loadgen: {}: {e}", s.nodename);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    Ok(())
}
