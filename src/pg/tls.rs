//! The TLS side of `sslmode`: which server certificates are accepted, and the client
//! certificate (`sslcert`/`sslkey`) when the server asks for one.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::url::{ConnParams, SslMode};

/// The client config for `p`, or `None` for `sslmode=disable`. Errors say which file is wrong.
pub fn client_config(p: &ConnParams) -> Result<Option<Arc<ClientConfig>>, String> {
    if p.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let provider = crate::net::provider();
    let verifier: Arc<dyn ServerCertVerifier> = match p.sslmode {
        SslMode::Require => Arc::new(Checked {
            inner: None,
            provider: provider.clone(),
        }),
        _ => {
            let roots = roots(p)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the trusted roots: {e}"))?;
            if p.sslmode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(Checked {
                    inner: Some(webpki),
                    provider: provider.clone(),
                })
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&p.sslcert, &p.sslkey) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "sslcert")?;
            let key_pem = read(key, "sslkey")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("unusable sslcert/sslkey: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // PostgreSQL 17 checks the protocol name when the client offers one.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `sslrootcert`, or the system's roots when it is not given.
fn roots(p: &ConnParams) -> Result<RootCertStore, String> {
    let certs = match &p.sslrootcert {
        Some(path) => read_certs(path, "sslrootcert")?,
        None => crate::net::system_roots(),
    };
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(certs);
    if store.is_empty() {
        return Err(match &p.sslrootcert {
            Some(path) => format!("sslrootcert {} holds no usable certificate", path.display()),
            None => "no trusted roots: set sslrootcert=/path/to/ca.pem in conn_string (the CA \
                     that signed the database's certificate)"
                .into(),
        });
    }
    Ok(store)
}

// Files are read whole and parsed as slices: the same PEM code the rest of the executable uses.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(&read(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// `require` (no `inner`: any certificate, but the handshake signature is still checked) and
/// `verify-ca` (`inner` checks the chain; a name mismatch is accepted).
#[derive(Debug)]
struct Checked {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
