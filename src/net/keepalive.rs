//! TCP keepalive for long-lived connections.

use smol::net::TcpStream;

/// A long-lived connection whose peer vanished without closing it (power lost, cable pulled)
/// is reset by the kernel after this long of silence plus `KEEPALIVE_PROBES` unanswered probes,
/// one per `KEEPALIVE_IDLE`: about 20 s, whatever the messages above it do. The probes are the
/// kernel's, so quiet tunnels stay cheap.
const KEEPALIVE_IDLE_SECS: i32 = 5;
const KEEPALIVE_PROBES: i32 = 3;

/// Turns TCP keepalive on for a long-lived connection (tunnels, heartbeat streams); failures
/// are harmless (the heartbeats still judge the peer), so they are ignored.
#[allow(unsafe_code)]
pub fn keepalive(tcp: &TcpStream) {
    use nix::libc::{self, c_int};
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let set = |level: c_int, name: c_int, value: c_int| {
        let len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: `fd` is the open socket `tcp` borrows for this call; the option value is a
        // `c_int` on the stack and `len` is its size.
        unsafe { libc::setsockopt(fd, level, name, (&value as *const c_int).cast(), len) };
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_IDLE_SECS);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keepalive_is_on_with_our_timing() {
        smol::block_on(async {
            let l = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            keepalive(&tcp);
            use rustix::net::sockopt;
            assert!(sockopt::socket_keepalive(&tcp).unwrap());
            assert_eq!(
                sockopt::tcp_keepidle(&tcp).unwrap(),
                Duration::from_secs(KEEPALIVE_IDLE_SECS as u64)
            );
            assert_eq!(sockopt::tcp_keepcnt(&tcp).unwrap(), KEEPALIVE_PROBES as u32);
        });
    }
}
