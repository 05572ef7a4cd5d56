//! The one accept loop of every listener (auth's and the proxy's TLS ports, diagnostics):
//! accept errors such as EMFILE back off instead of spinning, every connection takes a
//! [`Slot`] under the listener's [`Caps`] or is closed at once, and TLS connections get a
//! handshake deadline (PROXY protocol v2 header included, when required).

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use log::{debug, info, warn};
use smol::net::{TcpListener, TcpStream};

use super::caps::{Caps, Limits, Refused, Slot};
use super::proxy_protocol::{self, Header};
use super::with_timeout;
use crate::rt::Shutdown;

/// First pause after a failed accept; doubles per failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause: a listener out of descriptors retries once a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Backoff after accept errors: exponential, capped, reset by a success. Pure.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
}

impl Backoff {
    /// A failure: how long to pause, and whether it starts a burst (log it only then).
    pub fn failure(&mut self) -> (Duration, bool) {
        self.failures += 1;
        let shift = u32::try_from(self.failures - 1).unwrap_or(u32::MAX).min(16);
        let pause = BACKOFF_MIN.saturating_mul(1 << shift).min(BACKOFF_MAX);
        (pause, self.failures == 1)
    }

    /// A success: the number of failures of the burst it ends, if any.
    pub fn success(&mut self) -> Option<u64> {
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }
}

/// Connections the kernel queues for a listener before we accept them. std's 128 overflowed
/// when thousands of nodes reconnected at once (SYNs dropped, handshakes timing out, more
/// retries); the kernel caps this at `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a TCP listener with `LISTEN_BACKLOG`: std binds and listens with 128, and a second
/// `listen` on a listening socket only raises its backlog (Linux), so no socket is rebuilt.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    rustix::net::listen(&listener, LISTEN_BACKLOG)?;
    TcpListener::try_from(listener)
}

/// Errors that concern one connection only (it went away while queued): no pause needed.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    )
}

/// Accepts TCP connections until shutdown and runs `handler` for each in its own task with
/// the connection's slot, counted against the per-source cap of the TCP peer. Over a cap the
/// connection is closed at once. The handler owns the slot: dropping it releases the place.
pub async fn serve<F, Fut>(listener: TcpListener, caps: Caps, shutdown: Shutdown, handler: F)
where
    F: Fn(TcpStream, SocketAddr, Slot) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_keyed(listener, caps, true, shutdown, handler).await
}

/// `serve`; with `key_peer` false the slot counts only against the global cap until the
/// handler names the source (`Slot::set_source`), as after a PROXY protocol header.
async fn serve_keyed<F, Fut>(
    listener: TcpListener,
    caps: Caps,
    key_peer: bool,
    shutdown: Shutdown,
    handler: F,
) where
    F: Fn(TcpStream, SocketAddr, Slot) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = listener
        .local_addr()
        .map_or_else(|_| "a listener".to_string(), |a| a.to_string());
    let mut backoff = Backoff::default();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let (tcp, peer) = match accepted {
            None => return,
            Some(Ok(x)) => {
                if let Some(n) = backoff.success() {
                    info!("accepting connections on {local} again after {n} failed accepts");
                }
                x
            }
            Some(Err(e)) if transient(&e) => {
                debug!("accept on {local}: {e}");
                continue;
            }
            Some(Err(e)) => {
                let (pause, first) = backoff.failure();
                if first {
                    warn!(
                        "accept on {local} failed: {e}; retrying with backoff (up to {}s) until \
                         it works again. If this says too many open files, raise the limit \
                         (LimitNOFILE=, ulimit -n)",
                        BACKOFF_MAX.as_secs()
                    );
                    crate::metrics::METRICS
                        .accept_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if !shutdown.sleep(pause).await {
                    return;
                }
                continue;
            }
        };
        match caps.try_acquire(key_peer.then_some(peer.ip())) {
            Ok(slot) => crate::rt::spawn(handler(tcp, peer, slot)).detach(),
            Err(why) => debug!("closed a connection from {peer} on {local} at once: {why}"),
        }
        // Tasks run on one thread: let the handler just spawned (and the others) run before
        // the next accept, or a burst in the backlog would be accepted whole first, holding
        // every slot of its source while nothing is served.
        futures_lite::future::yield_now().await;
    }
}

/// Accepts TCP connections until shutdown, completes each TLS handshake within the limits'
/// deadline in its own task and hands the stream, the client's address and the slot to
/// `handle`. With `proxy_protocol` a PROXY v2 header must come first; the address it names
/// replaces the TCP peer. Without it, a connection that starts with such a header is refused.
///
/// A connection that presents a verified client certificate is no longer anonymous: its slot
/// is released before `handle` runs. Any other connection keeps its slot for its whole life
/// (`handle` should hold it) and is closed after `limits.anonymous_lifetime`.
pub async fn serve_tls<F, Fut>(
    listener: TcpListener,
    acceptor: Arc<rustls::ServerConfig>,
    caps: Caps,
    proxy_protocol: bool,
    shutdown: Shutdown,
    handle: F,
) where
    F: Fn(super::ServerTls, SocketAddr, Slot) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limits = caps.limits();
    let handler = move |tcp, tcp_peer, slot| {
        let (acceptor, handle) = (acceptor.clone(), handle.clone());
        tls_conn(
            tcp,
            tcp_peer,
            slot,
            acceptor,
            proxy_protocol,
            limits,
            handle,
        )
    };
    serve_keyed(listener, caps, !proxy_protocol, shutdown, handler).await
}

/// Why a connection ended before its TLS handshake finished.
enum Opening {
    /// Closed before sending anything (a TCP health check).
    Silent,
    Header(proxy_protocol::Error),
    HeaderCut,
    Read(std::io::Error),
    Unexpected,
    Cap(Refused),
    Tls(std::io::Error),
}

async fn tls_conn<F, Fut>(
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    mut slot: Slot,
    acceptor: Arc<rustls::ServerConfig>,
    proxy_protocol: bool,
    limits: Limits,
    handle: F,
) where
    F: Fn(super::ServerTls, SocketAddr, Slot) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = tcp.set_nodelay(true);
    let opening = async {
        let peer = if proxy_protocol {
            let peer = match read_header(&mut tcp).await? {
                Header::Local => tcp_peer,
                Header::Proxy { source, .. } => {
                    debug!("connection from {source} relayed by {tcp_peer} (PROXY protocol)");
                    source
                }
            };
            slot.set_source(peer.ip()).map_err(Opening::Cap)?;
            peer
        } else {
            refuse_proxy_header(&tcp).await?;
            tcp_peer
        };
        let tls = super::lean_tls::accept(acceptor, super::tcp(tcp))
            .await
            .map_err(Opening::Tls)?;
        Ok::<_, Opening>((Box::new(tls), peer))
    };
    // Boxed: the handshake's state (a rustls connection mid-handshake) would otherwise stay
    // reserved in this task's allocation for the connection's whole life.
    let (tls, peer) = match Box::pin(with_timeout(limits.handshake, opening)).await {
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            log_opening(e, tcp_peer);
            return;
        }
        None => {
            debug!(
                "closed a connection from {tcp_peer}: no finished handshake within {}s",
                limits.handshake.as_secs()
            );
            return;
        }
    };
    let verified = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    if verified {
        slot.release();
        handle(tls, peer, slot).await;
    } else if with_timeout(limits.anonymous_lifetime, handle(tls, peer, slot))
        .await
        .is_none()
    {
        debug!(
            "closed a connection from {peer} without a client certificate after {}s",
            limits.anonymous_lifetime.as_secs()
        );
    }
}

fn log_opening(e: Opening, tcp_peer: SocketAddr) {
    match e {
        Opening::Silent => debug!("connection from {tcp_peer} closed before saying anything"),
        // Health checks of load balancers close without a word, often with a reset.
        Opening::Tls(e) if gone(&e) => {
            debug!("connection from {tcp_peer} closed before the TLS handshake")
        }
        Opening::Tls(e) => {
            warn!("rejected a connection from {tcp_peer}: TLS handshake failed: {e}")
        }
        Opening::Header(e) => warn!("rejected a connection from {tcp_peer}: {e}"),
        Opening::Read(e) => warn!("connection from {tcp_peer} failed in its PROXY header: {e}"),
        Opening::HeaderCut => {
            warn!("rejected a connection from {tcp_peer}: it closed within its PROXY header")
        }
        Opening::Unexpected => warn!(
            "rejected a connection from {tcp_peer}: it starts with a PROXY protocol header, but \
             this port does not accept one: set proxy_service.proxy_protocol: on (proxy port \
             only) if a load balancer sends it, or turn send-proxy off on the load balancer"
        ),
        Opening::Cap(why) => debug!("closed a connection relayed by {tcp_peer}: {why}"),
    }
}

/// The peer closed or reset the connection.
fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// Reads a PROXY v2 header byte-exactly: never a byte past it, so TLS starts where it ends.
async fn read_header(tcp: &mut TcpStream) -> Result<Header, Opening> {
    let mut buf = Vec::with_capacity(proxy_protocol::FIXED_LEN);
    loop {
        if let Some((header, _)) = proxy_protocol::parse(&buf).map_err(Opening::Header)? {
            return Ok(header);
        }
        let filled = buf.len();
        let want = proxy_protocol::wanted(&buf);
        if want <= filled || want > proxy_protocol::FIXED_LEN + proxy_protocol::MAX_LEN {
            // parse() refuses such lengths first; never read unbounded.
            return Err(Opening::Header(proxy_protocol::Error::TooLong(want)));
        }
        buf.resize(want, 0);
        let n = match tcp.read(&mut buf[filled..]).await {
            Ok(n) => n,
            Err(e) if gone(&e) => 0,
            Err(e) => return Err(Opening::Read(e)),
        };
        buf.truncate(filled + n);
        if n == 0 {
            return Err(if filled == 0 {
                Opening::Silent
            } else {
                Opening::HeaderCut
            });
        }
    }
}

/// Refuses a connection that opens with a PROXY header (v2 signature, or v1's `PROXY `) on a
/// port that does not expect one; peeks, so the TLS bytes stay in place.
async fn refuse_proxy_header(tcp: &TcpStream) -> Result<(), Opening> {
    let mut first = [0u8; 6];
    let n = tcp.peek(&mut first).await.map_err(Opening::Tls)?;
    let seen = &first[..n];
    let v2 = n > 0 && proxy_protocol::SIGNATURE.starts_with(seen);
    if v2 || seen == b"PROXY " {
        return Err(Opening::Unexpected);
    }
    Ok(())
}

/// The size of one connection's task with `handle` (for the services' tests: an idle
/// connection costs at least this).
#[cfg(test)]
pub(crate) fn task_size<F, Fut>() -> usize
where
    F: Fn(super::ServerTls, SocketAddr, Slot) -> Fut,
    Fut: Future<Output = ()>,
{
    fn ret<A, B, C, D, E, G, H, R>(_: &impl Fn(A, B, C, D, E, G, H) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    ret(&tls_conn::<F, Fut>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets_after_success() {
        let mut b = Backoff::default();
        assert_eq!(b.success(), None);
        let (d, first) = b.failure();
        assert_eq!((d, first), (BACKOFF_MIN, true));
        let (d, first) = b.failure();
        assert_eq!((d, first), (BACKOFF_MIN * 2, false));
        let pauses: Vec<_> = (0..100).map(|_| b.failure().0).collect();
        assert!(pauses.iter().all(|p| *p <= BACKOFF_MAX));
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        assert_eq!(b.success(), Some(102));
        assert_eq!(b.failure(), (BACKOFF_MIN, true));
    }

    #[test]
    fn only_per_connection_errors_skip_the_pause() {
        let e = |k| std::io::Error::from(k);
        assert!(transient(&e(ErrorKind::ConnectionAborted)));
        assert!(!transient(&std::io::Error::from_raw_os_error(24))); // EMFILE
        assert!(!transient(&std::io::Error::from_raw_os_error(23))); // ENFILE
        assert!(!transient(&std::io::Error::from_raw_os_error(105))); // ENOBUFS
    }
}
