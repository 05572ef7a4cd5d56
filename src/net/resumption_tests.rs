//! A client that keeps its TLS session tickets (rustls's default) gets no way around the
//! verifier: every handshake with a live config (`pki::live`) is a full one.

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{HandshakeKind, ServerConfig};
use smol::net::{TcpListener, TcpStream};

use super::provider;
use crate::pki::ca::{CertAuthority, Sans};
use crate::pki::identity::Identity;
use crate::pki::live::LiveTls;
use crate::pki::Subject;

fn issue(ca: &CertAuthority, role: &str, sans: &Sans) -> Identity {
    let subject = Subject {
        host_id: format!("{role}-id"),
        role: role.into(),
        cluster: "c".into(),
        node_name: "n".into(),
    };
    let (key_pem, cert_pem) = ca
        .issue_local(&subject, sans, std::time::Duration::from_secs(600))
        .unwrap();
    Identity {
        key_pem,
        cert_pem,
        ca_pems: vec![ca.cert_pem.clone()],
    }
}

/// A node's client config with resumption left on, as a client that wants to resume has it.
fn resuming_client(ca: &CertAuthority, node: &Identity) -> futures_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().unwrap()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![node.cert_der().unwrap()], node.key_der().unwrap())
        .unwrap();
    config.resumption = Resumption::in_memory_sessions(16);
    config.alpn_protocols = vec![crate::proto::ALPN_AUTH.to_vec()];
    futures_rustls::TlsConnector::from(Arc::new(config))
}

/// One connection: the server accepts and, if the handshake passed, says "hi". Returns
/// whether the server accepted, what the client read, and the client's handshake kind.
async fn once(
    listener: &TcpListener,
    config: &Arc<ServerConfig>,
    client: &futures_rustls::TlsConnector,
) -> (bool, Vec<u8>, Option<HandshakeKind>) {
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        match super::lean_tls::accept(config.clone(), super::tcp(tcp)).await {
            Ok(mut s) => {
                s.write_all(b"hi").await.unwrap();
                s.close().await.unwrap();
                true
            }
            Err(_) => false,
        }
    };
    let client = async {
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let name = ServerName::try_from(crate::proto::AUTH_SERVER_NAME).unwrap();
        let Ok(mut c) = client.connect(name, tcp).await else {
            return (Vec::new(), None);
        };
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got).await;
        (got, c.get_ref().1.handshake_kind())
    };
    let (accepted, (got, kind)) = futures_lite::future::zip(server, client).await;
    (accepted, got, kind)
}

#[test]
fn a_node_evicted_by_a_rotation_cannot_resume_its_way_back_in() {
    let old = CertAuthority::generate("c").unwrap();
    let new = CertAuthority::generate_named("c", Some("2")).unwrap();
    let sans = Sans {
        dns: vec![crate::proto::AUTH_SERVER_NAME.into()],
        ..Sans::default()
    };
    let live = LiveTls::new(&issue(&old, "Auth", &sans)).unwrap();
    let config = live
        .server_config(vec![crate::proto::ALPN_AUTH.to_vec()])
        .unwrap();
    let client = resuming_client(&old, &issue(&old, "Node", &Sans::default()));
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (accepted, got, kind) = once(&listener, &config, &client).await;
        assert!(accepted);
        assert_eq!(got, b"hi");
        assert_eq!(kind, Some(HandshakeKind::Full));

        // Trust unchanged: the next connection is a full handshake too (nothing to resume).
        let (accepted, got, kind) = once(&listener, &config, &client).await;
        assert!(accepted);
        assert_eq!(got, b"hi");
        assert_eq!(kind, Some(HandshakeKind::Full), "no session was resumed");

        // The rotation drops the old CA: the node's certificate is refused at once, whatever
        // the client kept from its earlier sessions.
        live.set_trust(&[new.cert_der().unwrap()]).unwrap();
        let (accepted, got, _) = once(&listener, &config, &client).await;
        assert!(
            !accepted,
            "a certificate of a CA no longer trusted was accepted"
        );
        assert!(got.is_empty(), "the evicted node read {got:?}");
    });
}
