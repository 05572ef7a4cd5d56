//! A small synchronous PostgreSQL client of our own: the v3 wire protocol over a std TCP
//! stream, TLS with rustls, SCRAM-SHA-256 (a clear-text password only to a verified server; MD5 refused), the
//! extended query protocol with text parameters, and LISTEN/NOTIFY. It is called from
//! `smol::unblock`, like SQLite. The `postgres` crate would bring tokio and its stack into an
//! executable that counts its bytes (docs/storage.md has the numbers).

pub mod conn;
pub mod error;
pub mod pool;
pub mod scram;
mod socket;
pub mod tls;
pub mod url;
pub mod wire;

pub use conn::{bytea, Connection, Param, QueryResult};
pub use error::{PgError, PgErrorKind};
pub use pool::Pool;
pub use url::{ConnParams, SslMode};
