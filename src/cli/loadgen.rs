//! `teleport loadgen`: many node agents in one process, for benchmarks. Each agent has its own
//! key, identity, data directory and tunnels or heartbeat stream, exactly as separate processes
//! would; only the process is shared.

use std::net::{IpAddr, Ipv4Addr};
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
    /// local addresses to connect from, agent i from the (i mod N)th: a range
    /// (127.0.0.2-127.0.0.41) or a comma-separated list; default: chosen by the kernel
    #[argh(option)]
    source_ips: Option<String>,
}

/// Most source addresses `--source-ips` may name.
const MAX_SOURCE_IPS: u32 = 65_536;

/// Parses `--source-ips`: "A-B" (IPv4, inclusive) or "A,B,C".
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>> {
    let bad = |why: String| Error::Config(format!("--source-ips {spec:?}: {why}"));
    if let Some((a, b)) = spec.split_once('-') {
        let parse = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|e| bad(format!("{s:?}: {e}")))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if b < a || b - a >= MAX_SOURCE_IPS {
            return Err(bad(format!(
                "give a rising range of at most {MAX_SOURCE_IPS} addresses"
            )));
        }
        return Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect());
    }
    spec.split(',')
        .map(|s| s.trim().parse().map_err(|e| bad(format!("{s:?}: {e}"))))
        .collect()
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
    let sources = match &c.source_ips {
        Some(spec) => parse_source_ips(spec)?,
        None => Vec::new(),
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
    eprintln!(
        "loadgen: starting {} agents against {target} from {} source address(es)",
        c.count,
        sources.len().max(1)
    );
    smol::block_on(async {
        let tasks: Vec<_> = all
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let shutdown: Shutdown = shutdown.clone();
                let via_proxy = c.proxy.is_some();
                let agent = async move {
                    let t = if via_proxy {
                        NodeTarget::Proxy(s.proxy_server.clone().unwrap_or_default())
                    } else {
                        NodeTarget::Auth(s.auth_server.clone().unwrap_or_default())
                    };
                    if let Err(e) = agent::run(&s, t, shutdown).await {
                        eprintln!("loadgen: {}: {e}", s.nodename);
                    }
                };
                match sources.get(i % sources.len().max(1)) {
                    Some(ip) => crate::rt::spawn(crate::net::source::from(*ip, agent)),
                    None => crate::rt::spawn(agent),
                }
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_are_a_range_or_a_list() {
        let r = parse_source_ips("127.0.0.2-127.0.0.41").unwrap();
        assert_eq!(r.len(), 40);
        assert_eq!(r[39], "127.0.0.41".parse::<IpAddr>().unwrap());
        let l = parse_source_ips("127.0.0.2, ::1").unwrap();
        assert_eq!(l.len(), 2);
        for bad in [
            "127.0.0.9-127.0.0.2",
            "10.0.0.0-10.2.0.0",
            "x",
            "127.0.0.1-",
            "",
        ] {
            assert!(parse_source_ips(bad).is_err(), "{bad}");
        }
    }
}
