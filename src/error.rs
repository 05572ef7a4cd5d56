//! The one error type of the library. Every message says what went wrong and, where the user can
//! act, what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::proto::ErrorCode;

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
    /// A network operation failed (connect, TLS handshake, read, write).
    Net { addr: String, detail: String },
    /// The peer broke the wire protocol (bad frame, unexpected message).
    Protocol(String),
    /// The server answered with an error.
    Remote { code: ErrorCode, message: String },
    /// None of the cluster's CA certificates matched the configured pins.
    PinMismatch { seen: Vec<String> },
    /// The stored identity does not belong to the cluster we talk to.
    StaleIdentity { files: Vec<PathBuf>, detail: String },
    /// Certificate or key handling failed.
    Pki(String),
    /// The durable store failed.
    Storage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn net(addr: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error::Net {
            addr: addr.into(),
            detail: detail.to_string(),
        }
    }

    pub fn remote(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Remote {
            code,
            message: message.into(),
        }
    }

    /// Whether retrying the same operation later can succeed (the server was unreachable or
    /// busy), as opposed to a definite refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Net { .. } => true,
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
            Error::Net { addr, detail } => write!(f, "cannot reach {addr}: {detail}"),
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
            Error::Pki(msg) => write!(f, "certificate error: {msg}"),
            Error::Storage(msg) => write!(f, "storage error: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Pki(e.to_string())
    }
}
