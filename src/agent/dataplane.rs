//! Streams a proxy opens through a tunnel: each starts with a `dial` to a service on this host;
//! only loopback addresses may be reached, so a tunnel cannot be used to pivot into the node's
//! network.

use std::net::{SocketAddr, ToSocketAddrs};

use log::{debug, info};
use smol::net::TcpStream;

use crate::mux::Stream;
use crate::net::{self, Framed};
use crate::proto::{ErrorCode, Request, Response, MAX_REQUEST_FRAME};

/// Resolves `addr` (possibly a name such as `localhost:22`: DNS blocks, so off the executor)
/// to a loopback address.
async fn loopback_target(addr: &str) -> Option<SocketAddr> {
    let owned = addr.to_string();
    let resolved: Vec<SocketAddr> = smol::unblock(move || owned.to_socket_addrs())
        .await
        .ok()?
        .collect();
    resolved.into_iter().find(|a| a.ip().is_loopback())
}

pub async fn serve(stream: Stream) {
    let mut f = Framed::new(stream, MAX_REQUEST_FRAME);
    let addr =
        match net::with_timeout(std::time::Duration::from_secs(10), f.recv::<Request>()).await {
            Some(Ok(Some(Request::Dial { addr, .. }))) => addr,
            other => {
                debug!("ignored a tunnel stream that did not start with a dial: {other:?}");
                return;
            }
        };
    let Some(target) = loopback_target(&addr).await else {
        let _ = f
            .send(&Response::error(
                ErrorCode::AccessDenied,
                format!("{addr:?} is not a loopback address; nodes only expose local services"),
            ))
            .await;
        return;
    };
    let tcp = match TcpStream::connect(target).await {
        Ok(t) => t,
        Err(e) => {
            let _ = f
                .send(&Response::error(
                    ErrorCode::Unavailable,
                    format!("cannot connect to {addr:?} on the node: {e}"),
                ))
                .await;
            return;
        }
    };
    if f.send(&Response::DialOk).await.is_err() {
        return;
    }
    info!("proxy opened a stream to {addr:?}");
    let m = &crate::diag::METRICS;
    m.node_streams_opened
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (stream, rest) = f.into_parts();
    // Small messages (keystrokes, RPC answers) go out at once, as on the tunnel.
    let _ = tcp.set_nodelay(true);
    let mut tcp = net::quiet::Quiet::tcp(tcp);
    (m.node_bytes.to_service).fetch_add(rest.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if !rest.is_empty()
        && futures_lite::AsyncWriteExt::write_all(&mut tcp, &rest)
            .await
            .is_err()
    {
        return;
    }
    crate::diag::splice(stream, tcp, &m.node_bytes, &m.node_streams_active).await;
}
