//! Network failures typed by what failed, each keeping its source (`io::Error`, `rustls::Error`
//! with the alert received, the frame error), so callers classify them by type: what a retry can
//! fix, what a person must fix, and whether the server refused our certificate.

use std::fmt;
use std::io;

use rustls::AlertDescription;

use crate::proto::FrameError;

/// A failed network operation against `addr`.
#[derive(Debug)]
pub struct NetError {
    pub addr: String,
    pub kind: NetKind,
    /// A hint the caller adds for its context ("is the auth service running?").
    pub hint: Option<&'static str>,
}

/// What failed.
#[derive(Debug)]
pub enum NetKind {
    /// The name did not resolve.
    Resolve(io::Error),
    /// The TCP connection failed (refused, unreachable, reset).
    Connect(io::Error),
    /// The TLS layer failed: handshake, certificate checks, or an alert the peer sent.
    Tls(rustls::Error),
    /// Reading or writing an established connection failed (a TLS alert may be inside).
    Io(io::Error),
    /// The peer sent bytes that are not our framing or not the message expected.
    Frame(FrameError),
    /// The peer speaks TLS but not our protocol (it chose no ALPN we offered).
    NoAlpn(&'static str),
    /// The peer closed the connection; says which stage.
    Closed(&'static str),
    /// No answer in time; says what we waited for.
    Timeout(&'static str),
    /// Anything else, as text (older call sites).
    Other(String),
}

impl From<io::Error> for NetKind {
    fn from(e: io::Error) -> Self {
        NetKind::Io(e)
    }
}

impl From<&str> for NetKind {
    fn from(s: &str) -> Self {
        NetKind::Other(s.to_string())
    }
}

impl From<String> for NetKind {
    fn from(s: String) -> Self {
        NetKind::Other(s)
    }
}

impl From<FrameError> for NetKind {
    fn from(e: FrameError) -> Self {
        NetKind::Frame(e)
    }
}

/// The `rustls::Error` carried inside an `io::Error` from a TLS stream, if any.
pub fn tls_in(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Why a server would not accept our certificate, told by the TLS alert it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The certificate's validity has ended.
    Expired,
    /// The certificate does not chain to the CA of the cluster behind this address.
    ForeignCa,
    /// A CA of that name is known but its signature on the certificate does not verify:
    /// another cluster of the same name issued it.
    BadSignature,
}

impl Refusal {
    /// The refusal a received alert stands for; `None` for any other TLS error.
    pub fn of_tls(e: &rustls::Error) -> Option<Refusal> {
        match e {
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
                Some(Refusal::Expired)
            }
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
            | rustls::Error::AlertReceived(AlertDescription::BadCertificate)
            | rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                Some(Refusal::ForeignCa)
            }
            // What rustls sends for a certificate whose issuer's signature fails.
            rustls::Error::AlertReceived(AlertDescription::DecryptError) => {
                Some(Refusal::BadSignature)
            }
            _ => None,
        }
    }

    /// The refusal carried by a TLS alert inside `e`, if that is what `e` is.
    pub fn of(e: &io::Error) -> Option<Refusal> {
        tls_in(e).and_then(Refusal::of_tls)
    }

    /// The error to show: which identity file was refused and what to do about it.
    pub fn error(self, path: &std::path::Path) -> super::Error {
        let why = match self {
            Refusal::Expired => {
                "its certificate has expired: ask an admin for a new one (tctl auth sign)"
            }
            Refusal::ForeignCa => "it was not issued by this cluster's CA",
            Refusal::BadSignature => {
                "its signature does not verify with this cluster's CA: it was issued by another \
                 cluster of the same name (or by this one before it was created anew)"
            }
        };
        super::Error::Config(format!(
            "the server refused the identity {}: {why}",
            path.display()
        ))
    }
}

/// A TLS error that means the peer does not speak TLS at all: its first bytes were not a TLS
/// record (an HTTP or SSH server, a plain TCP service).
fn not_tls(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
    )
}

/// A TLS error that a retry cannot fix: the peer speaks another protocol or version, or chose
/// none of ours.
fn tls_is_permanent(e: &rustls::Error) -> bool {
    not_tls(e)
        || matches!(
            e,
            rustls::Error::PeerIncompatible(_)
                | rustls::Error::NoApplicationProtocol
                | rustls::Error::InvalidCertificate(_)
                | rustls::Error::AlertReceived(
                    AlertDescription::NoApplicationProtocol
                        | AlertDescription::ProtocolVersion
                        | AlertDescription::UnexpectedMessage
                )
        )
}

impl NetError {
    pub fn new(addr: impl Into<String>, kind: impl Into<NetKind>) -> Self {
        NetError {
            addr: addr.into(),
            kind: kind.into(),
            hint: None,
        }
    }

    /// The TLS error behind this failure, wherever it surfaced.
    pub fn tls(&self) -> Option<&rustls::Error> {
        match &self.kind {
            NetKind::Tls(e) => Some(e),
            NetKind::Io(e) | NetKind::Connect(e) => tls_in(e),
            _ => None,
        }
    }

    /// Whether trying again later can succeed: the server was down, busy, slow or restarting.
    /// A server of the wrong kind, a refused certificate or broken framing stay as they are.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            NetKind::Frame(_) | NetKind::NoAlpn(_) => false,
            _ => match self.tls() {
                Some(e) => !tls_is_permanent(e) && self.refusal().is_none(),
                None => true,
            },
        }
    }

    /// Whether what answered at the address is not the kind of server we asked for: not TLS,
    /// TLS without our protocol, or our framing broken.
    pub fn is_wrong_server(&self) -> bool {
        match &self.kind {
            NetKind::Frame(_) | NetKind::NoAlpn(_) => true,
            _ => self.tls().is_some_and(|e| {
                not_tls(e)
                    || matches!(
                        e,
                        rustls::Error::PeerIncompatible(_)
                            | rustls::Error::AlertReceived(
                                AlertDescription::NoApplicationProtocol
                                    | AlertDescription::ProtocolVersion
                            )
                    )
            }),
        }
    }

    /// Whether the server presented a certificate our trusted CAs did not issue. (A cluster
    /// certificate of the wrong role is reported apart, as `Error::Pki`, by `net`.)
    pub fn is_untrusted_server(&self) -> bool {
        matches!(self.tls(), Some(rustls::Error::InvalidCertificate(_)))
    }

    /// The refusal of our certificate the server sent, if that is what this is.
    pub fn refusal(&self) -> Option<Refusal> {
        self.tls().and_then(Refusal::of_tls)
    }

    fn operator_advice(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            ". Is this the right address? The auth server listens on port 3025 \
             (auth_server / --auth-server), a proxy on 443 or its web_listen_addr \
             (proxy_server / --proxy)"
        )
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = &self.addr;
        match (&self.kind, self.tls()) {
            (NetKind::Frame(e), _) => {
                write!(
                    f,
                    "{addr} answered with something that is not teleport-lite's protocol ({e})"
                )?;
                self.operator_advice(f)?;
            }
            (NetKind::NoAlpn(proto), _) => {
                write!(
                    f,
                    "{addr} speaks TLS but not the {proto} protocol (it chose none of the \
                     protocols we offered): it is not a teleport-lite server of that kind"
                )?;
                self.operator_advice(f)?;
            }
            (_, Some(e)) if not_tls(e) => {
                write!(
                    f,
                    "{addr} does not speak TLS (it answered with something else: {e}); \
                     something other than a teleport-lite server (a web or SSH server?) \
                     listens there"
                )?;
                self.operator_advice(f)?;
            }
            (_, Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol))) => {
                write!(
                    f,
                    "{addr} does not serve the protocol we asked for: an auth address (port \
                     3025) was probably given where a proxy is (set proxy_server / --proxy), or \
                     the other way round"
                )?
            }
            (_, Some(rustls::Error::InvalidCertificate(cause))) => write!(
                f,
                "certificate error: the server at {addr} presented a certificate not issued by \
                 the trusted cluster CA ({cause:?})"
            )?,
            (_, Some(rustls::Error::AlertReceived(alert))) => {
                write!(f, "cannot reach {addr}: the server refused us ({alert:?})")?
            }
            (NetKind::Resolve(e), _) => {
                write!(f, "cannot reach {addr}: cannot resolve address: {e}")?
            }
            (NetKind::Connect(e) | NetKind::Io(e), _) => write!(f, "cannot reach {addr}: {e}")?,
            (NetKind::Tls(e), _) => write!(f, "cannot reach {addr}: {e}")?,
            (NetKind::Closed(what) | NetKind::Timeout(what), _) => {
                write!(f, "cannot reach {addr}: {what}")?
            }
            (NetKind::Other(detail), _) => write!(f, "cannot reach {addr}: {detail}")?,
        }
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            NetKind::Resolve(e) | NetKind::Connect(e) | NetKind::Io(e) => Some(e),
            NetKind::Tls(e) => Some(e),
            NetKind::Frame(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CertificateError, InvalidMessage};

    fn tls(e: rustls::Error) -> NetError {
        NetError::new("h:3025", NetKind::Tls(e))
    }

    fn after_handshake(e: rustls::Error) -> NetError {
        NetError::new("h:3025", io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn what_a_retry_can_fix_is_transient() {
        use io::ErrorKind::*;
        for kind in [ConnectionRefused, ConnectionReset, TimedOut, UnexpectedEof] {
            let e = NetError::new("h:1", NetKind::Connect(io::Error::from(kind)));
            assert!(e.is_transient(), "{kind:?}");
            assert!(!e.is_wrong_server(), "{kind:?}");
        }
        assert!(NetError::new("h:1", NetKind::Timeout("timed out connecting")).is_transient());
        assert!(NetError::new("h:1", NetKind::Closed("closed")).is_transient());
        assert!(tls(rustls::Error::AlertReceived(
            AlertDescription::InternalError
        ))
        .is_transient());
    }

    #[test]
    fn a_server_of_another_kind_is_permanent_and_named() {
        let garbage = [
            tls(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType,
            )),
            NetError::new(
                "h:3025",
                NetKind::Frame(FrameError::TooLarge { len: 9, max: 1 }),
            ),
            NetError::new("h:3025", NetKind::NoAlpn("teleport-lite auth")),
            tls(rustls::Error::AlertReceived(
                AlertDescription::NoApplicationProtocol,
            )),
        ];
        for e in garbage {
            assert!(!e.is_transient(), "{e}");
            assert!(e.is_wrong_server(), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("h:3025"), "{msg}");
        }
        let msg = tls(rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType,
        ))
        .to_string();
        assert!(msg.starts_with("h:3025 does not speak TLS"), "{msg}");
        assert!(msg.contains("port 3025") && msg.contains("443"), "{msg}");
    }

    #[test]
    fn a_foreign_server_certificate_is_untrusted_not_a_refusal() {
        let e = tls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(e.is_untrusted_server());
        assert!(!e.is_transient());
        assert_eq!(e.refusal(), None);
    }

    #[test]
    fn alerts_about_our_certificate_are_refusals_wherever_they_surface() {
        use AlertDescription::*;
        for (alert, want) in [
            (UnknownCA, Refusal::ForeignCa),
            (BadCertificate, Refusal::ForeignCa),
            (CertificateExpired, Refusal::Expired),
            (DecryptError, Refusal::BadSignature),
        ] {
            for e in [
                tls(rustls::Error::AlertReceived(alert)),
                after_handshake(rustls::Error::AlertReceived(alert)),
            ] {
                assert_eq!(e.refusal(), Some(want), "{alert:?}");
                assert!(!e.is_transient(), "{alert:?}");
                assert!(!e.is_untrusted_server(), "{alert:?}");
            }
        }
        // The same words from the OS or a peer are not a refusal.
        let words = NetError::new("h:1", io::Error::other("received fatal alert: UnknownCA"));
        assert_eq!(words.refusal(), None);
        assert!(words.is_transient());
    }

    #[test]
    fn sources_are_kept() {
        let e = NetError::new(
            "h:1",
            NetKind::Connect(io::ErrorKind::ConnectionRefused.into()),
        );
        let src = std::error::Error::source(&e).expect("a source");
        let io = src.downcast_ref::<io::Error>().expect("the io::Error");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
        let e = tls(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        let src = std::error::Error::source(&e).unwrap();
        assert!(src.downcast_ref::<rustls::Error>().is_some());
        let top = crate::error::Error::from(e);
        assert!(std::error::Error::source(&top)
            .and_then(|s| s.downcast_ref::<rustls::Error>())
            .is_some());
    }
}
