//! Errors of the PostgreSQL client: each names the server (never the password) and, where the
//! operator can act, what to do.

use std::fmt;
use std::io;

use super::wire::{ServerError, WireError};

/// What went wrong talking to the PostgreSQL server at `addr`.
#[derive(Debug)]
pub struct PgError {
    pub addr: String,
    pub kind: PgErrorKind,
}

#[derive(Debug)]
pub enum PgErrorKind {
    /// conn_string or a file it names is wrong.
    Config(String),
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// The TLS handshake failed (a certificate that is not trusted or not for this host).
    Tls(rustls::Error),
    /// No answer before the deadline.
    Timeout(&'static str),
    /// The server broke the protocol.
    Wire(WireError),
    /// The server refused the connection's authentication or the statement.
    Server(Box<ServerError>),
    /// Authentication cannot proceed (a method we refuse, a missing password, a bad proof).
    Auth(String),
    /// Every pooled connection stayed busy until the deadline.
    PoolBusy,
}

impl PgError {
    pub fn new(addr: &str, kind: PgErrorKind) -> PgError {
        PgError {
            addr: addr.to_string(),
            kind,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            PgErrorKind::Server(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The connection cannot be used again (as opposed to a statement the server refused).
    pub fn breaks_connection(&self) -> bool {
        !matches!(self.kind, PgErrorKind::Server(_) | PgErrorKind::PoolBusy)
    }
}

/// A TLS error carried inside an I/O error (as rustls' streams report them).
pub fn tls_in(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL at {}: ", self.addr)?;
        match &self.kind {
            PgErrorKind::Config(m) => write!(f, "{m}"),
            PgErrorKind::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => write!(
                f,
                "connection refused: is PostgreSQL running and listening there (listen_addresses, \
                 port)?"
            ),
            PgErrorKind::Io(e) => write!(f, "{e}"),
            PgErrorKind::Tls(rustls::Error::InvalidCertificate(c)) => write!(
                f,
                "the server's certificate was refused ({c:?}): check that sslrootcert is the CA \
                 that signed it and that the host in conn_string is a name the certificate holds \
                 (or use sslmode=verify-ca to skip the name check)"
            ),
            PgErrorKind::Tls(e) => write!(f, "TLS failed: {e}"),
            PgErrorKind::Timeout(what) => write!(
                f,
                "no answer to {what} in time: check the address and that the server is up \
                 (connect_timeout in conn_string sets the connect deadline)"
            ),
            PgErrorKind::Wire(e) => write!(f, "{e}"),
            PgErrorKind::Server(e) => {
                write!(f, "{e}")?;
                match e.code.as_str() {
                    "28P01" | "28000" => write!(
                        f,
                        " (check the user and password in conn_string, or the client \
                         certificate, against the server's pg_hba.conf)"
                    ),
                    "3D000" => write!(f, " (create the database first: createdb NAME)"),
                    _ => Ok(()),
                }
            }
            PgErrorKind::Auth(m) => write!(f, "authentication: {m}"),
            PgErrorKind::PoolBusy => write!(
                f,
                "every connection stayed busy until the deadline: the database is slow or \
                 overloaded"
            ),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            PgErrorKind::Io(e) => Some(e),
            PgErrorKind::Tls(e) => Some(e),
            PgErrorKind::Wire(e) => Some(e),
            _ => None,
        }
    }
}
