//! The Auth Service: cluster CA, join tokens, node inventory and the admin API.

mod admin;
pub mod audit;
pub mod backend;
pub mod cas;
pub mod join;
mod lifecycle;
mod link;
pub mod own;
mod presence;
pub mod renew;
pub mod revoke;
pub mod server;
pub mod state;
pub mod streams;
pub mod tokens;
pub mod users;
mod watch;

pub use server::AuthServer;
