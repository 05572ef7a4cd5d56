//! TCP keepalive for long-lived connections.

use std::os::fd::AsFd;

/// A long-lived connection whose peer vanished without closing it (power lost, cable pulled)
/// is reset by the kernel after this long of silence plus `KEEPALIVE_PROBES` unanswered probes,
/// one per `KEEPALIVE_IDLE`: about 20 s, whatever the messages above it do. The probes are the
/// kernel's, so quiet tunnels stay cheap.
const KEEPALIVE_IDLE_SECS: u64 = 5;
const KEEPALIVE_PROBES: u32 = 3;

/// Turns TCP keepalive on for a long-lived connection (tunnels, heartbeat streams); failures
/// are harmless (the heartbeats still judge the peer), so they are ignored.
pub fn keepalive(tcp: &impl AsFd) {
    use rustix::net::sockopt;
    let every = std::time::Duration::from_secs(KEEPALIVE_IDLE_SECS);
    let _ = sockopt::set_socket_keepalive(tcp, true);
    let _ = sockopt::set_tcp_keepidle(tcp, every);
    let _ = sockopt::set_tcp_keepintvl(tcp, every);
    let _ = sockopt::set_tcp_keepcnt(tcp, KEEPALIVE_PROBES);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keepalive_is_on_with_our_timing() {
        smol::block_on(async {
            let l = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tcp = smol::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            keepalive(&tcp);
            use rustix::net::sockopt;
            assert!(sockopt::socket_keepalive(&tcp).unwrap());
            assert_eq!(
                sockopt::tcp_keepidle(&tcp).unwrap(),
                Duration::from_secs(KEEPALIVE_IDLE_SECS)
            );
            assert_eq!(sockopt::tcp_keepcnt(&tcp).unwrap(), KEEPALIVE_PROBES);
        });
    }
}
