//! The local address outgoing connections are made from. Normally the kernel chooses; a
//! future wrapped in [`from`] connects from a given address instead (bind before connect),
//! which `teleport loadgen` uses to spread thousands of agents over several loopback
//! addresses, as hosts behind different addresses would be: per-source limits and the
//! kernel's ephemeral ports for one source and destination then hold per group, not for all.
//!
//! The address is carried like a task-local: it is set on this thread while the wrapped
//! future is polled, which is when `connect` reads it (its socket is created in its first
//! poll). Tasks spawned from inside do not inherit it.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use smol::net::TcpStream;
use smol::Async;

thread_local! {
    static SOURCE: Cell<Option<IpAddr>> = const { Cell::new(None) };
}

/// `fut`, whose connections (made through [`connect`]) come from `ip`.
pub fn from<F: Future>(ip: IpAddr, fut: F) -> From<F> {
    From {
        ip,
        fut: Box::pin(fut),
    }
}

/// A future whose connections come from one local address (see [`from`]).
pub struct From<F> {
    ip: IpAddr,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for From<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let prev = SOURCE.with(|s| s.replace(Some(self.ip)));
        let out = self.fut.as_mut().poll(cx);
        SOURCE.with(|s| s.set(prev));
        out
    }
}

/// A TCP connection to `addr`, from the address of the enclosing [`from`] if there is one.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    match SOURCE.with(Cell::get) {
        Some(ip) if ip.is_ipv4() == addr.is_ipv4() => connect_from(ip, addr).await,
        _ => TcpStream::connect(addr).await,
    }
}

async fn connect_from(ip: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
    rustix::net::bind(&fd, &SocketAddr::new(ip, 0))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = Async::new(std::net::TcpStream::from(fd))?;
    // Writable once the handshake ended; the socket's error says how.
    stream.writable().await?;
    if let Some(e) = stream.get_ref().take_error()? {
        return Err(e);
    }
    Ok(TcpStream::from(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_inside_from_come_from_its_address() {
        smol::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let src: IpAddr = "127.0.0.3".parse().unwrap();
            let c = from(src, connect(addr)).await.unwrap();
            assert_eq!(c.local_addr().unwrap().ip(), src);
            let (_, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip(), src);
            // Outside, the kernel chooses as usual.
            let d = connect(addr).await.unwrap();
            assert_eq!(d.local_addr().unwrap().ip(), addr.ip());
            // A refused connection is an error, not a hang.
            drop(listener);
            assert!(from(src, connect(addr)).await.is_err());
        });
    }
}
