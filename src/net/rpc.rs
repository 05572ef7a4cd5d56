//! The client side of one framed exchange: read the answer within a deadline, and turn an
//! answer that is not the one expected into an error.

use super::Framed;
use crate::error::{Error, NetKind, Result};
use crate::proto::Response;

/// Reads one answer, or fails naming `addr` when the peer closes, stalls or sends garbage.
pub async fn recv<S>(conn: &mut Framed<S>, addr: &str) -> Result<Response>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    match super::with_timeout(super::CONNECT_TIMEOUT * 2, conn.recv::<Response>()).await {
        Some(Ok(Some(r))) => Ok(r),
        Some(Ok(None)) => Err(Error::net(
            addr,
            NetKind::Closed("the server closed the connection"),
        )),
        Some(Err(Error::Wire(w))) => Err(w.at(addr).into()),
        Some(Err(e)) => Err(e),
        None => Err(Error::net(
            addr,
            NetKind::Timeout("timed out waiting for an answer"),
        )),
    }
}

/// An error answer as the error it carries; any other as a protocol error.
pub fn unexpected(r: Response) -> Error {
    match r {
        Response::Error { code, message } => Error::remote(code, message),
        other => Error::Protocol(format!("unexpected answer {other:?}")),
    }
}
