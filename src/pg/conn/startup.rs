//! Opening a connection: TLS after an SSLRequest, then startup and authentication (SCRAM,
//! or a password in clear only to a verified server).

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::{Connection, Stream};
use crate::pg::error::{PgError, PgErrorKind};
use crate::pg::scram::Scram;
use crate::pg::socket::DeadlineSocket;
use crate::pg::url::{ConnParams, SslMode};
use crate::pg::wire::{self, Auth, Backend};

impl Connection {
    pub(super) fn start_tls(
        &mut self,
        p: &ConnParams,
        config: Arc<ClientConfig>,
    ) -> Result<(), PgError> {
        let mut out = Vec::new();
        wire::ssl_request(&mut out);
        self.write_all(&out)?;
        let mut answer = [0u8; 1];
        self.read_raw(&mut answer, "the TLS request")?;
        match answer[0] {
            b'S' => {}
            b'N' => {
                return Err(self.err(PgErrorKind::Config(
                    "the server does not offer TLS: enable ssl in postgresql.conf, or (on a \
                     trusted network only) use sslmode=disable"
                        .into(),
                )))
            }
            other => {
                return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                    "answer {other:#04x} to the TLS request: is this a PostgreSQL server?"
                )))))
            }
        }
        let name = ServerName::try_from(p.host.clone()).map_err(|_| {
            self.err(PgErrorKind::Config(format!(
                "{:?} is not a host name",
                p.host
            )))
        })?;
        let conn =
            ClientConnection::new(config, name).map_err(|e| self.err(PgErrorKind::Tls(e)))?;
        let Stream::Plain(tcp) = &self.stream else {
            unreachable!("TLS is started once, on the plain stream")
        };
        let tcp = tcp
            .tcp()
            .try_clone()
            .map_err(|e| self.err(PgErrorKind::Io(e)))?;
        let mut tls = StreamOwned::new(conn, DeadlineSocket::new(tcp, self.deadline));
        // Finish the handshake now, so a refused certificate is reported as such.
        while tls.conn.is_handshaking() {
            self.set_timeouts()?;
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(self.io_err(e, "the TLS handshake"));
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    pub(super) fn startup(&mut self, p: &ConnParams) -> Result<(), PgError> {
        let mut out = Vec::new();
        wire::startup(
            &mut out,
            &[
                ("user", &p.user),
                ("database", &p.database),
                ("application_name", "teleport"),
                ("client_encoding", "UTF8"),
            ],
        );
        self.write_all(&out)?;
        let mut scram: Option<Scram> = None;
        loop {
            let msg = self.read_message("authentication")?;
            let mut out = Vec::new();
            match msg {
                Backend::Auth(Auth::Ok) => {}
                Backend::Auth(Auth::Cleartext) => {
                    // Only a verified server may read the password: under require (or
                    // disable) an impostor on the path would simply ask for it.
                    if !matches!(p.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) {
                        return Err(self.err(PgErrorKind::Auth(
                            "the server asks for the password in clear and its certificate was \
                             not verified; refused: use sslmode=verify-full with sslrootcert, or \
                             SCRAM (scram-sha-256 in pg_hba.conf)"
                                .into(),
                        )));
                    }
                    let pw = self.password(p)?;
                    wire::password(&mut out, pw);
                }
                Backend::Auth(Auth::Md5) => {
                    return Err(self.err(PgErrorKind::Auth(
                        "the server asks for MD5, which teleport-lite refuses (MD5 passwords are \
                         deprecated and weak): set password_encryption = 'scram-sha-256', set the \
                         user's password again, and write scram-sha-256 in pg_hba.conf"
                            .into(),
                    )))
                }
                Backend::Auth(Auth::Sasl(mechs)) => {
                    if !mechs.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(self.err(PgErrorKind::Auth(format!(
                            "the server offers only SASL {mechs:?}; SCRAM-SHA-256 is needed"
                        ))));
                    }
                    let pw = self.password(p)?.to_string();
                    let (s, first) = Scram::start(&pw, &nonce());
                    scram = Some(s);
                    wire::sasl_initial(&mut out, "SCRAM-SHA-256", &first);
                }
                Backend::Auth(Auth::SaslContinue(data)) => {
                    let Some(s) = scram.as_mut() else {
                        return Err(self.err(PgErrorKind::Auth("SASL data out of order".into())));
                    };
                    let reply = s
                        .server_first(&data)
                        .map_err(|e| PgError::new(&self.addr, PgErrorKind::Auth(e)))?;
                    wire::sasl_response(&mut out, &reply);
                }
                Backend::Auth(Auth::SaslFinal(data)) => {
                    let checked = scram.as_ref().map(|s| s.server_final(&data));
                    match checked {
                        Some(Ok(())) => {}
                        Some(Err(e)) => return Err(self.err(PgErrorKind::Auth(e))),
                        None => {
                            return Err(
                                self.err(PgErrorKind::Auth("SASL final without a start".into()))
                            )
                        }
                    }
                }
                Backend::Auth(Auth::Other(code)) => {
                    return Err(self.err(PgErrorKind::Auth(format!(
                        "method {code} is not supported: use scram-sha-256, cert or trust in \
                         pg_hba.conf"
                    ))))
                }
                Backend::ParameterStatus { .. } | Backend::BackendKeyData { .. } => {}
                Backend::Notice(_) | Backend::NegotiateProtocolVersion => {}
                Backend::ReadyForQuery(_) => {
                    self.broken = false;
                    return Ok(());
                }
                Backend::Error(e) => {
                    self.broken = true;
                    return Err(PgError::new(&self.addr, PgErrorKind::Server(Box::new(e))));
                }
                other => {
                    return Err(self.err(PgErrorKind::Wire(wire::WireError(format!(
                        "unexpected {} during startup",
                        other.name()
                    )))))
                }
            }
            if !out.is_empty() {
                self.write_all(&out)?;
            }
        }
    }

    pub(super) fn password<'p>(&mut self, p: &'p ConnParams) -> Result<&'p str, PgError> {
        match p.password.as_deref() {
            Some(pw) => Ok(pw),
            None => Err(self.err(PgErrorKind::Auth(
                "the server asks for a password and conn_string has none: write \
                 postgresql://USER:PASSWORD@HOST/DB (percent-encode special characters), or use \
                 a client certificate (sslcert, sslkey)"
                    .into(),
            ))),
        }
    }
}

/// 24 random bytes as base64-ish printable characters (no ',').
fn nonce() -> String {
    let mut b = [0u8; 24];
    let _ = SystemRandom::new().fill(&mut b);
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    b.iter().map(|x| CHARS[(x % 64) as usize] as char).collect()
}
