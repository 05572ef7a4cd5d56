//! `teleport` and, when called through a link named `tctl`, the admin CLI.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prog = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("teleport")
        .to_string();
    let rest = args.get(1..).unwrap_or_default();
    let serves =
        prog != "tctl" && matches!(rest.first().map(String::as_str), Some("start" | "loadgen"));
    if !serves {
        default_sigpipe();
    }
    let code = if prog == "tctl" {
        teleport_lite::cli::tctl::main(rest)
    } else {
        teleport_lite::cli::teleport::main(rest)
    };
    std::process::exit(code);
}

/// Rust ignores SIGPIPE, so `tctl nodes ls | head -1` would get EPIPE and `println!` would
/// panic ("failed printing to stdout"). A command whose reader went away should just end, as
/// other Unix tools do. Servers keep ignoring it (sockets report EPIPE as an error, and std
/// sends with MSG_NOSIGNAL anyway).
#[allow(unsafe_code)]
fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL installs no
    // handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
