//! A server refusing our certificate, told by the TLS alert it sent: classified by type (the
//! `rustls::Error` inside the `io::Error`, see `error::Refusal`), never by searching message
//! text, so a peer's words cannot make a client blame the identity file.
//!
//! In TLS 1.3 the client finishes its handshake before the server has judged the client
//! certificate, so the refusal arrives as an alert on the first read (or write) after it.
//! `Watched` sits between the TLS stream and `Framed` and keeps the first refusal it sees.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::error::Error;

pub use crate::error::Refusal;

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
    use rustls::AlertDescription;

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
