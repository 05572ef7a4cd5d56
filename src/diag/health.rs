//! `teleport health`: asks a process's `/readyz` and tells three outcomes apart for people and
//! scripts (the Docker `HEALTHCHECK`): ready, not ready (with the reason the process gives),
//! and no answer from the diagnostics endpoint at all.

use std::time::Duration;

use smol::net::TcpStream;

use crate::http;

/// The process answered 503: it runs but is not ready.
pub const EXIT_NOT_READY: i32 = 1;
/// Nothing answered at the address (not running, diagnostics off, wrong address). Docker
/// treats any non-zero status as unhealthy; scripts can tell this case apart.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Time the whole probe may take: under the 3 s HEALTHCHECK timeout, so our message wins.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` at an address said.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Ready,
    NotReady(String),
    Unreachable(String),
}

/// Asks `/readyz` at `addr` once.
pub fn probe(addr: &str) -> Probe {
    smol::block_on(async {
        let fut = async {
            let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            http::roundtrip(&mut tcp, "GET", addr, "/readyz", None)
                .await
                .map_err(|e| e.to_string())
        };
        match crate::net::with_timeout(PROBE_TIMEOUT, fut).await {
            Some(Ok(r)) if r.status == 200 => Probe::Ready,
            Some(Ok(r)) if r.status == 503 => {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let why = v["reason"].as_str().unwrap_or("no reason given");
                Probe::NotReady(crate::proto::limits::printable(why, 400))
            }
            Some(Ok(r)) => Probe::Unreachable(format!(
                "it answered HTTP {} to /readyz: is it a teleport diagnostics endpoint?",
                r.status
            )),
            Some(Err(e)) => Probe::Unreachable(e),
            None => Probe::Unreachable(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    })
}

/// Runs `teleport health` and returns its exit status: 0 ready, `EXIT_NOT_READY`,
/// `EXIT_UNREACHABLE`.
pub fn health_main(addr: &str) -> i32 {
    match probe(addr) {
        Probe::Ready => {
            println!("ready");
            0
        }
        Probe::NotReady(why) => {
            eprintln!("not ready: {why}");
            EXIT_NOT_READY
        }
        Probe::Unreachable(e) => {
            eprintln!(
                "cannot reach the diagnostics endpoint at {addr}: {e}; is teleport running with \
                 diag_addr (or --diag-addr) set to {addr}?"
            );
            EXIT_UNREACHABLE
        }
    }
}
