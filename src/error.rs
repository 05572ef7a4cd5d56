//! The one error type of the library. Every message says what went wrong and, where the user can
//! act, what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::proto::{ErrorCode, FrameError};

pub mod net;
pub use net::{NetError, NetKind, Refusal};

/// Everything that can go wrong in teleport-lite.
#[derive(Debug)]
pub enum Error {
    /// The configuration or the command line is wrong; the message names the fix.
    Config(String),
    /// A file or directory could not be read or written.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A network operation failed (connect, TLS handshake, read, write), with its source.
    Net(Box<NetError>),
    /// Reading a framed connection failed; the address is added by the caller that knows it.
    Wire(WireError),
    /// The peer broke the wire protocol (bad frame, unexpected message).
    Protocol(String),
    /// The server answered with an error.
    Remote { code: ErrorCode, message: String },
    /// None of the cluster's CA certificates matched the configured pins.
    PinMismatch { seen: Vec<String> },
    /// The server at `addr` is not part of the cluster our stored identity belongs to: its
    /// certificate was not issued by that cluster's CA. The identity is fine; the address (or
    /// something on the way) is not.
    ForeignServer {
        addr: String,
        cluster: String,
        source: Box<NetError>,
    },
    /// The stored identity does not belong to the cluster we talk to.
    StaleIdentity { files: Vec<PathBuf>, detail: String },
    /// The stored identity belongs to the cluster but can no longer be used: it expired while
    /// the host was offline, or the host was removed.
    IdentityRevoked { files: Vec<PathBuf>, detail: String },
    /// Certificate or key handling failed.
    Pki(String),
    /// The durable store failed.
    Storage(String),
    /// The PostgreSQL backend failed; the error names the server and the fix.
    Postgres(Box<crate::pg::PgError>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A framed read that failed, before the caller names the peer.
#[derive(Debug)]
pub enum WireError {
    /// The bytes are not a frame of ours.
    Frame(FrameError),
    /// The read itself failed (reset, TLS alert, timeout).
    Read(io::Error),
}

impl WireError {
    /// This failure as a network error of the peer at `addr`.
    pub fn at(self, addr: impl Into<String>) -> NetError {
        match self {
            WireError::Frame(e) => NetError::new(addr, NetKind::Frame(e)),
            WireError::Read(e) => NetError::new(addr, NetKind::Io(e)),
        }
    }
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A network error of the peer at `addr`; `kind` is an `io::Error`, a `NetKind` or text.
    pub fn net(addr: impl Into<String>, kind: impl Into<NetKind>) -> Self {
        Error::Net(Box::new(NetError::new(addr, kind)))
    }

    /// The network error inside, if this is one.
    pub fn as_net(&self) -> Option<&NetError> {
        match self {
            Error::Net(n) | Error::ForeignServer { source: n, .. } => Some(n),
            _ => None,
        }
    }

    pub fn remote(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Remote {
            code,
            message: message.into(),
        }
    }

    /// Whether retrying the same operation later can succeed (the server was unreachable,
    /// busy or restarting), as opposed to something only a person can fix (a wrong address,
    /// a server of another kind or cluster, a refusal).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Net(n) => n.is_transient(),
            Error::Wire(WireError::Read(_)) => true,
            Error::Remote { code, .. } => {
                matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => f.write_str(msg),
            Error::Io {
                action,
                path,
                source,
            } => {
                write!(f, "cannot {action} {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::PermissionDenied {
                    let uid = nix::unistd::geteuid();
                    write!(
                        f,
                        " (this process runs as uid {uid}: run it as a user that may do this, \
                         or change the owner or mode of that path)"
                    )?;
                }
                Ok(())
            }
            Error::Net(n) => n.fmt(f),
            Error::Wire(WireError::Frame(e)) => write!(f, "protocol error: {e}"),
            Error::Wire(WireError::Read(e)) => write!(f, "protocol error: read failed: {e}"),
            Error::ForeignServer {
                addr,
                cluster,
                source,
            } => {
                let cause = match source.tls() {
                    Some(rustls::Error::InvalidCertificate(c)) => format!("{c:?}"),
                    _ => source.to_string(),
                };
                write!(
                    f,
                    "the server at {addr} is not part of cluster {cluster:?}, the cluster this \
                     host's identity belongs to: it presented a certificate not issued by the \
                     trusted cluster CA ({cause}). Check that the address is right \
                     (auth_server / --auth-server, proxy_server / --proxy) and that nothing on \
                     the way intercepts TLS; with ca_pin set, compare it with \"tctl status\" \
                     on this cluster's auth server. If this host was offline while the \
                     cluster's CA was rotated (tctl auth rotate), or the cluster was created \
                     anew, it must join again with a new token"
                )
            }
            Error::Protocol(msg) => write!(f, "protocol error: {msg}"),
            Error::Remote { code, message } => write!(f, "{message} ({code})"),
            Error::PinMismatch { seen } => write!(
                f,
                "CA pin mismatch: the cluster presented CA pin(s) {} which match none of the \
                 configured ca_pin values. The CA may have been rotated, or something is \
                 intercepting the connection. Run \"tctl status\" on the auth server to compare \
                 the pins, then fix ca_pin.",
                seen.join(", ")
            ),
            Error::StaleIdentity { files, detail } => {
                let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the identity stored in the data directory belongs to another cluster \
                     ({detail}). To join this cluster again, remove {} and start with a new \
                     token",
                    list.join(" and ")
                )
            }
            Error::IdentityRevoked { files, detail } => {
                let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the identity stored in {} can no longer be used: {detail}. Remove {} and \
                     join again with a new token (tctl tokens add)",
                    list.first().cloned().unwrap_or_default(),
                    list.join(" and ")
                )
            }
            Error::Pki(msg) => write!(f, "certificate error: {msg}"),
            Error::Storage(msg) => write!(f, "storage error: {msg}"),
            Error::Postgres(e) => write!(f, "storage error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            // The NetError's own text is what we print, so its source is the next link.
            Error::Net(n) | Error::ForeignServer { source: n, .. } => std::error::Error::source(n),
            Error::Wire(WireError::Frame(e)) => Some(e),
            Error::Wire(WireError::Read(e)) => Some(e),
            Error::Postgres(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<NetError> for Error {
    fn from(e: NetError) -> Self {
        Error::Net(Box::new(e))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<crate::pg::PgError> for Error {
    fn from(e: crate::pg::PgError) -> Self {
        Error::Postgres(Box::new(e))
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Pki(e.to_string())
    }
}
