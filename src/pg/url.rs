//! `conn_string`: a `postgresql://` (or `postgres://`) URL as libpq reads it, for the subset
//! teleport-lite supports. The password it may hold is a secret: `Debug` masks it and no error
//! message repeats the URL.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP: passwords are protected by SCRAM, the data is not.
    Disable,
    /// TLS without checking the server's certificate (libpq's `require`; also what `allow`
    /// and `prefer` mean here: we never fall back to plain TCP).
    Require,
    /// TLS; the certificate must chain to `sslrootcert` (or the system roots).
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host: the default.
    VerifyFull,
}

/// Everything needed to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub connect_timeout: Duration,
}

pub const DEFAULT_PORT: u16 = 5432;
/// When the URL has no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("addr", &self.addr())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "MASKED"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .finish()
    }
}

impl ConnParams {
    /// "host:port", for messages (IPv6 literals in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without the password: what logs and `tctl status` show.
    pub fn redacted(&self) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        format!(
            "postgresql://{}{pw}@{}/{}?sslmode={}",
            self.user,
            self.addr(),
            self.database,
            match self.sslmode {
                SslMode::Disable => "disable",
                SslMode::Require => "require",
                SslMode::VerifyCa => "verify-ca",
                SslMode::VerifyFull => "verify-full",
            }
        )
    }

    /// Parses a conn_string. Errors name the part that is wrong, never the password.
    pub fn parse(url: &str) -> Result<ConnParams, String> {
        let url = url.trim();
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or("it must start with postgresql:// (for example postgresql://teleport@db.example.com:5432/teleport?sslmode=verify-full)")?;
        // The user and password end at the '@' before anything else is split: an unencoded
        // '?' or '/' in the password must not send part of it into the path or the query.
        let (userinfo, rest) = match rest.matches('@').count() {
            0 => (None, rest),
            1 => rest
                .split_once('@')
                .map(|(u, r)| (Some(u), r))
                .unwrap_or((None, rest)),
            _ => {
                return Err(
                    "it has more than one '@': percent-encode '@' in the user or \
                            password as %40"
                        .into(),
                )
            }
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (decode(u, "user")?, Some(decode(p, "password")?)),
                None => (decode(u, "user")?, None),
            },
            None => (String::new(), None),
        };
        if user.is_empty() {
            return Err("it names no user: write postgresql://USER@HOST/DATABASE".into());
        }
        let (host, port) = split_host_port(hostport)?;
        let database = decode(path, "database name")?;
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        let mut p = ConnParams {
            host,
            port,
            user,
            password,
            database,
            sslmode: SslMode::VerifyFull,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v, "parameter value")?;
            match k {
                "sslmode" => {
                    p.sslmode = match v.as_str() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" | "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        _ => {
                            return Err("sslmode must be one of disable, require, verify-ca, \
                                        verify-full"
                                .into())
                        }
                    }
                }
                "sslrootcert" => p.sslrootcert = Some(PathBuf::from(v)),
                "sslcert" => p.sslcert = Some(PathBuf::from(v)),
                "sslkey" => p.sslkey = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| (1..=3600).contains(s))
                        .ok_or("connect_timeout must be a number of seconds from 1 to 3600")?;
                    p.connect_timeout = Duration::from_secs(secs);
                }
                "application_name" => {}
                // Never echoed: with an unencoded '&' or '=' in it, it may be password text.
                _ => {
                    return Err("it has an unsupported parameter (percent-encode reserved \
                                characters in the password): use sslmode, sslrootcert, sslcert, \
                                sslkey or connect_timeout"
                        .into())
                }
            }
        }
        if p.sslcert.is_some() != p.sslkey.is_some() {
            return Err("sslcert and sslkey go together: give both or neither".into());
        }
        Ok(p)
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let no_host = || "it names no host: write postgresql://USER@HOST:5432/DATABASE".to_string();
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else if hostport.contains(',') {
        return Err("several hosts are not supported yet: give one host".into());
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let host = decode(&host, "host")?;
    if host.is_empty() {
        return Err(no_host());
    }
    if host.starts_with('/') {
        return Err("unix sockets are not supported: give a TCP host".into());
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the port must be a number from 1 to 65535")?,
    };
    Ok((host, port))
}

/// Percent-decoding. The error names `what` only, never the value (it may be the password).
fn decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("the {what} has a bad %-escape: write %XX, e.g. %40 for @")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8 after %-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() {
        let p = ConnParams::parse(
            "postgresql://tele%40port:p%3Ass%2Fw@db.example.com:6432/auth?sslmode=verify-ca\
             &sslrootcert=/etc/ca.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(p.user, "tele@port");
        assert_eq!(p.password.as_deref(), Some("p:ss/w"));
        assert_eq!(p.addr(), "db.example.com:6432");
        assert_eq!(p.database, "auth");
        assert_eq!(p.sslmode, SslMode::VerifyCa);
        assert_eq!(p.connect_timeout, Duration::from_secs(3));
        assert!(!format!("{p:?}").contains("p:ss"));
        assert!(!p.redacted().contains("p:ss"));
        // Unencoded '?' and '/' stay in the password.
        let p = ConnParams::parse("postgresql://u:a?b/c@h/d?sslmode=disable").unwrap();
        assert_eq!(p.password.as_deref(), Some("a?b/c"));
        assert_eq!((p.host.as_str(), p.database.as_str()), ("h", "d"));
        assert!(!p.redacted().contains("a?b"), "{}", p.redacted());
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let p = ConnParams::parse("postgres://u@[::1]").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 5432));
        assert_eq!(p.database, "u");
        assert_eq!(p.sslmode, SslMode::VerifyFull);
        let p = ConnParams::parse("postgres://u@h/d?sslmode=prefer").unwrap();
        assert_eq!(p.sslmode, SslMode::Require);
    }

    #[test]
    fn errors_name_the_fix_but_never_the_password() {
        for bad in [
            "mysql://u@h/d",
            "postgresql://h/d",
            "postgresql://u@/d",
            "postgresql://u:secret%zz@h/d",
            "postgresql://u:secret@h:99999/d",
            "postgresql://u:secret@h/d?sslmode=maybe",
            "postgresql://u:secret@h/d?sslcert=/c",
            "postgresql://u:secret@h/d?foo=1",
            "postgresql://u:secret@h1,h2/d",
            "postgresql://u:se?cret@h/d?foo=1",
            "postgresql://u:se/cret@h/d?foo=1",
            "postgresql://u:se@cret@h/d",
            "postgresql://u:s&secret=1@h/d?sslmode=secret",
        ] {
            let e = ConnParams::parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
