//! A server refusing our certificate, told by the TLS alert it sent: classified by type (the
//! `rustls::Error` inside the `io::Error`), never by searching message text, so a peer's words
//! cannot make tctl blame the identity file.
//!
//! In TLS 1.3 the client finishes its handshake before the server has judged the client
//! certificate, so the refusal arrives as an alert on the first read (or write) after it.
//! `Watched` sits between the TLS stream and `Framed` and keeps the first refusal it sees.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::AlertDescription;

use crate::error::Error;

/// Why the server would not accept our certificate.
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
    /// The refusal carried by a TLS alert inside `e`, if that is what `e` is.
    pub fn of(e: &io::Error) -> Option<Refusal> {
        let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
        match tls {
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
                Some(Refusal::Expired)
            }
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
            | rustls::Error::AlertReceived(AlertDescription::BadCertificate) => {
                Some(Refusal::ForeignCa)
            }
            // What rustls sends for a certificate whose issuer's signature fails.
            rustls::Error::AlertReceived(AlertDescription::DecryptError) => {
                Some(Refusal::BadSignature)
            }
            _ => None,
        }
    }

    /// The error to show: which file was refused and what to do about it.
    pub fn error(self, path: &Path) -> Error {
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
        Error::Config(format!(
            "the server refused the identity {}: {why}",
            path.display()
        ))
    }
}

/// A stream that remembers the first refusal of our certificate seen on it.
pub struct Watched<S> {
    inner: S,
    refusal: Option<Refusal>,
}

impl<S> Watched<S> {
    pub fn new(inner: S) -> Self {
        Watched {
            inner,
            refusal: None,
        }
    }

    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    fn note<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            self.refusal = self.refusal.or(Refusal::of(e));
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_close(cx);
        self.note(r)
    }
}

/// `e` as a refusal of the identity at `path` if the stream saw one, else unchanged.
pub fn refused_or<S>(e: Error, stream: &Watched<S>, path: &Path) -> Error {
    stream.refusal().map_or(e, |r| r.error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(a: AlertDescription) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(a))
    }

    #[test]
    fn alerts_about_our_certificate_are_refusals() {
        use AlertDescription::*;
        assert_eq!(
            Refusal::of(&alert(CertificateExpired)),
            Some(Refusal::Expired)
        );
        assert_eq!(Refusal::of(&alert(UnknownCA)), Some(Refusal::ForeignCa));
        assert_eq!(
            Refusal::of(&alert(BadCertificate)),
            Some(Refusal::ForeignCa)
        );
        assert_eq!(
            Refusal::of(&alert(DecryptError)),
            Some(Refusal::BadSignature)
        );
        assert_eq!(Refusal::of(&alert(HandshakeFailure)), None);
    }

    #[test]
    fn words_in_a_message_are_not_a_refusal() {
        // What text matching used to take for a refusal: a peer's or the OS's words.
        for text in ["CertificateExpired", "received fatal alert: UnknownCA"] {
            let e = io::Error::other(text);
            assert_eq!(Refusal::of(&e), None, "{text}");
        }
        let e = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(Refusal::of(&e), None);
    }

    #[test]
    fn the_first_refusal_on_a_stream_is_kept() {
        let mut w = Watched::new(futures_lite::io::empty());
        let _ = w.note::<()>(Poll::Ready(Err(io::Error::other("reset"))));
        assert_eq!(w.refusal(), None);
        let _ = w.note::<()>(Poll::Ready(Err(alert(
            AlertDescription::CertificateExpired,
        ))));
        let _ = w.note::<()>(Poll::Ready(Err(alert(AlertDescription::UnknownCA))));
        assert_eq!(w.refusal(), Some(Refusal::Expired));
        let msg = Refusal::ForeignCa.error(Path::new("/x/id.pem")).to_string();
        assert_eq!(
            msg,
            "the server refused the identity /x/id.pem: it was not issued by this cluster's CA"
        );
    }
}
