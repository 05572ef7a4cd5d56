//! TLS configurations, a framed message connection over any async byte stream, and (in
//! submodules) the one accept loop of every listener with its caps and the PROXY protocol.

pub mod accept;
pub mod bufpool;
pub mod caps;
pub mod coalesce;
mod deadline;
mod keepalive;
pub mod lean_tls;
pub mod ping_filter;
pub mod proxy_protocol;
pub mod quiet;
pub mod readahead;

/// A TCP stream as TLS sees it: reads taken ahead while data flows (see `readahead`), and no
/// `recv` that would only find nothing (see `quiet`).
pub type Tcp = readahead::ReadAhead<quiet::Quiet<std::net::TcpStream>>;

/// smol's stream as TLS sees it (`Tcp`).
pub fn tcp(stream: TcpStream) -> Tcp {
    readahead::ReadAhead::new(quiet::Quiet::tcp(stream))
}
/// An accepted TLS stream (`lean_tls`: no buffer while idle), boxed: it is handed down through
/// several async functions, and each would otherwise keep a dead copy of it in its state for
/// the connection's whole life.
pub type ServerTls = Box<lean_tls::ServerStream<Tcp>>;
pub mod refusal;
pub mod rpc;
pub mod source;

pub use accept::{serve, serve_tls};
pub use caps::{Caps, Limits, Slot};
pub use deadline::{with_timeout, Deadline};
pub use keepalive::keepalive;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{de::DeserializeOwned, Serialize};
use smol::net::TcpStream;

use crate::error::{Error, NetError, NetKind, Result, WireError};
use crate::pki::identity::Identity;
use crate::proto::AUTH_SERVER_NAME;
use crate::proto::{encode, Decoder};
use rustls::pki_types::pem::PemObject;

pub use crate::proto::ALPN_AUTH;

/// Time allowed for TCP connect plus TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::pki::provider::provider;

fn roots(cas: &[CertificateDer<'static>]) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        store
            .add(ca.clone())
            .map_err(|e| Error::Pki(format!("unusable CA certificate: {e}")))?;
    }
    Ok(store)
}

/// A server config presenting `identity`; client certificates are optional but, when given,
/// must chain to the identity's CAs (handlers then read the role from them).
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&identity.ca_ders()?)?),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| Error::Pki(format!("cannot build client verifier: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Pki(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der()?], identity.key_der()?)
        .map_err(|e| Error::Pki(format!("unusable server certificate: {e}")))?;
    let mut config = config;
    config.alpn_protocols = vec![ALPN_AUTH.to_vec()];
    crate::pki::live::full_handshakes_only(&mut config);
    Ok(Arc::new(config))
}

/// A client config that accepts any server certificate. Used only to fetch CA certificates
/// that are then checked against a pin, or after an explicit `--insecure`.
pub fn insecure_client_config() -> Arc<ClientConfig> {
    let verifier = Arc::new(AcceptAnyServer(provider()));
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_AUTH.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Resolves "host:port" (first address), with an error that names the address.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    let owned = addr.to_string();
    let mut addrs = smol::unblock(move || std::net::ToSocketAddrs::to_socket_addrs(&owned))
        .await
        .map_err(|e| Error::net(addr, NetKind::Resolve(e)))?;
    addrs
        .next()
        .ok_or_else(|| Error::net(addr, "the name resolved to no address"))
}

/// TCP connect and TLS handshake against the auth server name, within `CONNECT_TIMEOUT`.
pub async fn connect_tls(
    addr: &str,
    config: Arc<ClientConfig>,
) -> Result<futures_rustls::client::TlsStream<Tcp>> {
    connect_tls_as(addr, config, AUTH_SERVER_NAME).await
}

/// TCP connect and TLS handshake, verifying the server as `server_name`.
pub async fn connect_tls_as(
    addr: &str,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<futures_rustls::client::TlsStream<Tcp>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| Error::Config(format!("invalid server name {server_name:?}")))?;
    let fut = async {
        let sock = resolve(addr).await?;
        let tcp = source::connect(sock)
            .await
            .map_err(|e| Error::net(addr, NetKind::Connect(e)))?;
        let _ = tcp.set_nodelay(true);
        keepalive(&tcp);
        let offers_auth = config.alpn_protocols.iter().any(|p| p == ALPN_AUTH);
        let tls = TlsConnector::from(config)
            .connect(name, self::tcp(tcp))
            .await
            .map_err(|e| tls_error(addr, e))?;
        // Our auth server always agrees to its ALPN: a TLS server that does not is another
        // kind of server, and waiting for it to answer our frames would only time out.
        if offers_auth && tls.get_ref().1.alpn_protocol() != Some(ALPN_AUTH) {
            return Err(Error::net(addr, NetKind::NoAlpn("teleport-lite auth")));
        }
        Ok(tls)
    };
    with_timeout(CONNECT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|| Err(Error::net(addr, NetKind::Timeout("timed out connecting"))))
}

/// A copy of `config` that offers the given ALPN protocols.
pub fn with_alpn(config: &ClientConfig, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut c = config.clone();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// The host part of "host:port" (brackets of IPv6 literals removed).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Certificate bundles where Linux distributions keep the system roots.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's trusted roots: `$SSL_CERT_FILE` if set, else the first bundle found.
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    let env = std::env::var("SSL_CERT_FILE").ok();
    let candidates = env.iter().map(String::as_str).chain(SYSTEM_BUNDLES);
    for path in candidates {
        if let Ok(text) = std::fs::read_to_string(path) {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
                .filter_map(|c| c.ok())
                .collect();
            if !certs.is_empty() {
                return certs;
            }
        }
    }
    Vec::new()
}

/// Like `client_config`, but skips roots the TLS library cannot use (system bundles hold a
/// few odd ones).
pub fn client_config_lenient(cas: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>> {
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(cas.iter().cloned());
    if added == 0 {
        return Err(Error::Pki("no usable trusted root certificate".into()));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Pki(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Types a handshake failure, keeping its source. A cluster certificate of the wrong role is
/// told apart here (`pki` knows the role check); everything else is classified by `NetError`.
fn tls_error(addr: &str, e: std::io::Error) -> Error {
    let Some(tls) = crate::error::net::tls_in(&e) else {
        return Error::net(addr, NetKind::Connect(e));
    };
    if let Some(why) = crate::pki::verify::wrong_role_of(tls) {
        return Error::Pki(format!("the server at {addr} was refused: {why}"));
    }
    let tls = tls.clone();
    NetError::new(addr, NetKind::Tls(tls)).into()
}

/// A connection that sends and receives whole messages. Thousands of them sit idle in auth and
/// the proxies (one per node stream or tunnel), so the read buffer starts small, grows while
/// reads fill it (a big message), and is given back once a message has been read whole.
pub struct Framed<S> {
    io: S,
    decoder: Decoder,
    buf: Vec<u8>,
}

/// The read buffer of an idle connection: a heartbeat or its ack fits.
const READ_MIN: usize = 256;
/// The most one read takes at a time.
const READ_MAX: usize = 16 * 1024;

impl<S> Framed<S> {
    pub fn new(io: S, max_frame: usize) -> Self {
        Framed {
            io,
            decoder: Decoder::new(max_frame),
            buf: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes received of a message not yet whole: a big one still arriving.
    pub fn pending(&self) -> usize {
        self.decoder.pending()
    }

    /// The stream and any bytes read past the last frame (for switching to raw bytes).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.io, self.decoder.into_rest())
    }
}

/// A peer that does not take a message within this time is gone: its connection is dropped
/// instead of holding a task and its buffers forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: futures_lite::AsyncWrite + Unpin> Framed<S> {
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        self.send_raw(&encode(msg)).await
    }

    /// Writes already-encoded frames in one go (coalesces TLS records).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        // Boxed: every task that holds a connection would otherwise carry the write and its
        // timer in its own size for its whole life.
        Box::pin(with_timeout(WRITE_TIMEOUT, write))
            .await
            .unwrap_or_else(|| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer stopped reading",
                ))
            })
    }

    pub async fn close(&mut self) {
        let _ = self.io.close().await;
    }
}

impl<S: futures_lite::AsyncRead + Unpin> Framed<S> {
    /// The next message; `Ok(None)` on a clean end of stream.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        loop {
            if let Some(msg) = self
                .decoder
                .next_frame()
                .map_err(|e| Error::Wire(WireError::Frame(e)))?
            {
                if self.buf.len() > READ_MIN {
                    self.buf = Vec::new();
                }
                return Ok(Some(msg));
            }
            if self.buf.is_empty() {
                self.buf = vec![0u8; READ_MIN];
            }
            let n = self
                .io
                .read(&mut self.buf)
                .await
                .map_err(|e| Error::Wire(WireError::Read(e)))?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.feed(&self.buf[..n]);
            if n == self.buf.len() && n < READ_MAX {
                self.buf = vec![0u8; (n * 4).min(READ_MAX)];
            }
        }
    }
}

/// The address a local client uses to reach a listener (0.0.0.0 becomes loopback).
pub fn dial_addr(listen: SocketAddr) -> String {
    use std::net::IpAddr;
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port()).to_string()
}

#[cfg(test)]
mod resumption_tests;
