//! teleport-lite: Teleport's token join flow in one small static executable: the Auth Service,
//! the node agent and the `tctl` admin CLI.

pub mod agent;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod diag;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod join;
pub mod logging;
pub mod metrics;
pub mod mux;
pub mod net;
pub mod pg;
pub mod pki;
pub mod proto;
pub mod proxy;
pub mod rt;
pub mod secret;

/// The version printed by `teleport version` and announced to peers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
