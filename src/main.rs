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
    let code = if prog == "tctl" {
        teleport_lite::cli::tctl::main(rest)
    } else {
        teleport_lite::cli::teleport::main(rest)
    };
    std::process::exit(code);
}
