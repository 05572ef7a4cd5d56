//! Access to nodes for people: `tctl auth sign --user` (a short-lived user identity),
//! `tctl nodes dial` (a byte pipe to a node's local service, ssh's `ProxyCommand`) and
//! `tctl ssh-config` (the OpenSSH block that makes `ssh root@NODE.CLUSTER` work).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::AuthSign;
use super::client::unexpected;
use super::refusal::{refused_or, Refusal, Watched};
use crate::auth::users::{self, DEFAULT_USER_TTL, MAX_USER_TTL};
use crate::cli::stdio;
use crate::clock;
use crate::config;
use crate::error::{Error, Result};
use crate::net::{self, Framed};
use crate::pki::ca::new_key_and_csr;
use crate::pki::identity::Identity;
use crate::pki::verify::{self, ServerRole};
use crate::proto::{AdminCmd, Request, Response, MAX_RESPONSE_FRAME, PROTOCOL_VERSION};

/// The port a proxy listens on when `--proxy` names none (Teleport's web port).
const DEFAULT_PROXY_PORT: u16 = 3080;

/// `--ttl` of `auth sign`: a duration with a unit, within the bounds auth enforces.
fn user_ttl(arg: Option<&str>) -> Result<Duration> {
    let Some(s) = arg else {
        return Ok(DEFAULT_USER_TTL);
    };
    if s.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "--ttl {s:?} has no unit: write e.g. {s}s, {s}m or {s}h (at most {}h)",
            MAX_USER_TTL.as_secs() / 3600
        )));
    }
    let ttl = clock::parse_duration(s).map_err(|e| Error::Config(format!("--ttl: {e}")))?;
    users::check_ttl(ttl).map_err(Error::Config)?;
    Ok(ttl)
}

/// Checks the arguments of `auth sign` before anything is sent.
pub fn check_sign(a: &AuthSign) -> Result<()> {
    if a.format != "file" {
        return Err(Error::Config(format!(
            "unknown --format {:?}: only \"file\" (key, certificate and CA in one PEM file) is \
             supported",
            a.format
        )));
    }
    users::check_user_name(&a.user).map_err(Error::Config)?;
    user_ttl(a.ttl.as_deref())?;
    if a.out.exists() && !a.overwrite {
        return Err(Error::Config(format!(
            "{} exists: pass --overwrite to replace it",
            a.out.display()
        )));
    }
    Ok(())
}

/// `tctl auth sign --user`: a new key pair here, a certificate from auth, one 0600 file.
pub fn sign(call: impl FnOnce(AdminCmd) -> Result<Response>, a: &AuthSign) -> Result<()> {
    check_sign(a)?;
    let ttl = user_ttl(a.ttl.as_deref())?;
    let (key_pem, csr) = new_key_and_csr(&a.user)?;
    let (cert, ca_certs, expires) = match call(AdminCmd::UserSign {
        user: a.user.clone(),
        ttl_secs: ttl.as_secs(),
        csr,
    })? {
        Response::UserCert {
            cert,
            ca_certs,
            expires,
        } => (cert, ca_certs, expires),
        other => return Err(unexpected(other)),
    };
    let id = Identity {
        key_pem,
        cert_pem: cert,
        ca_pems: ca_certs,
    };
    id.save(&a.out)?;
    println!(
        "\nThe credentials have been written to {} (user {:?}, valid until {}).\n\
         For ssh through a proxy: tctl -i {} ssh-config --proxy=PROXY >> ~/.ssh/config",
        a.out.display(),
        a.user,
        clock::rfc822(expires),
        a.out.display()
    );
    Ok(())
}

/// Refuses an identity that has expired, before the proxy does it less clearly.
fn check_fresh(id: &Identity, path: &Path) -> Result<()> {
    let not_after = id.not_after()?;
    let now = clock::now_unix();
    if not_after <= now {
        return Err(Error::Config(format!(
            "the identity {} expired at {} ({} ago): ask an admin for a new one (tctl auth \
             sign --user=NAME --out=FILE)",
            path.display(),
            clock::rfc822(not_after),
            clock::compact(now - not_after)
        )));
    }
    Ok(())
}

/// Splits ssh's `%h` (`NAME.CLUSTER`) into the node name; one suffix only, so a node whose own
/// name has dots (`db.internal`) is `db.internal.CLUSTER`.
pub fn strip_cluster<'a>(host: &'a str, cluster: &str) -> Result<&'a str> {
    let cut = host.len().saturating_sub(cluster.len() + 1);
    let (name, suffix) = host.split_at(if host.is_char_boundary(cut) { cut } else { 0 });
    if name.is_empty() || !suffix.eq_ignore_ascii_case(&format!(".{cluster}")) {
        return Err(Error::Config(format!(
            "{host:?} is not NODE.{cluster}: ssh to NODE.{cluster}, where NODE is a name or \
             UUID from tctl nodes ls"
        )));
    }
    Ok(name)
}

/// Pipes stdin/stdout through a proxy to `addr` on `node`, byte for byte.
pub fn dial(id: &Identity, path: &Path, proxy: &str, node: &str, addr: &str) -> Result<()> {
    let proxy = config::normalize_addr(proxy, DEFAULT_PROXY_PORT, "--proxy")?;
    check_fresh(id, path)?;
    // Open both before connecting: a failure here is local and says so.
    let stdin = stdio::raw_stdin().map_err(|e| Error::io("open", "stdin", e))?;
    let stdout = stdio::raw_stdout().map_err(|e| Error::io("open", "stdout", e))?;
    smol::block_on(async {
        let base = verify::client_config(&id.ca_ders()?, Some(id), ServerRole::Proxy)?;
        let config = net::with_alpn(&base, &[crate::proto::ALPN_TRANSPORT]);
        let tls = net::connect_tls_as(&proxy, config, crate::proto::PROXY_SERVER_NAME).await?;
        let mut f = Framed::new(Watched::new(tls), MAX_RESPONSE_FRAME);
        f.send(&Request::Dial {
            version: PROTOCOL_VERSION,
            node: node.to_string(),
            addr: addr.to_string(),
        })
        .await
        .map_err(|e| match Refusal::of(&e) {
            Some(r) => r.error(path),
            None => Error::net(&proxy, e),
        })?;
        match net::with_timeout(Duration::from_secs(20), f.recv::<Response>()).await {
            Some(Ok(Some(Response::DialOk))) => {}
            Some(Ok(Some(Response::Error { code, message }))) => {
                return Err(Error::remote(code, message))
            }
            Some(Ok(None)) => {
                return Err(Error::net(
                    &proxy,
                    "the proxy closed the connection: it accepts dials from admin and user \
                     identities of this cluster only",
                ))
            }
            Some(Err(e)) => return Err(refused_or(e, f.get_ref(), path)),
            Some(Ok(Some(other))) => {
                return Err(Error::Protocol(format!(
                    "unexpected answer from the proxy: {other:?}"
                )))
            }
            None => return Err(Error::net(&proxy, "timed out waiting for the proxy")),
        }
        let (tls, rest) = f.into_parts();
        let mut stdout = stdio::Stdio::new(stdout);
        if !rest.is_empty() {
            stdio::pump(&rest[..], &mut stdout)
                .await
                .map_err(|e| Error::io("write", "stdout", e))?;
        }
        let (rd, mut wr) = futures_lite::io::split(tls);
        // Stdin ending only half-closes (TLS close_notify, then the node's service sees its
        // end of input); the session ends when the node side closes, as with `nc -N`.
        let up = async {
            let _ = stdio::pump(stdio::Stdio::new(stdin), &mut wr).await;
            let _ = futures_lite::AsyncWriteExt::close(&mut wr).await;
            std::future::pending::<()>().await
        };
        let down = async {
            let _ = stdio::pump(rd, &mut stdout).await;
        };
        futures_lite::future::or(up, down).await;
        Ok(())
    })
}

/// Where this `tctl` is, as ssh must call it: the path it was run by, made absolute without
/// resolving links (the binary is `tctl` only through its link's name).
fn tctl_path() -> Result<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next().unwrap_or_default());
    let unknown = || {
        Error::Config(
            "cannot tell where tctl is installed: run it by its full path (e.g. \
             /usr/local/bin/tctl ssh-config ...)"
                .into(),
        )
    };
    if argv0.components().count() > 1 {
        return std::path::absolute(&argv0).map_err(|_| unknown());
    }
    let path = std::env::var_os("PATH").ok_or_else(unknown)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&argv0))
        .find(|p| p.is_file() && p.is_absolute())
        .ok_or_else(unknown)
}

/// One word for ssh's `ProxyCommand`, which expands `%` tokens and then runs `sh -c`.
fn sh_word(s: &str) -> Result<String> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(Error::Config(format!(
            "{s:?} contains a line break and cannot go into an ssh config"
        )));
    }
    Ok(format!("'{}'", s.replace('\'', "'\\''").replace('%', "%%")))
}

/// `tctl ssh-config`: the block for `~/.ssh/config`.
pub fn ssh_config(id: &Identity, path: &Path, proxy: &str) -> Result<()> {
    let proxy = config::normalize_addr(proxy, DEFAULT_PROXY_PORT, "--proxy")?;
    let subject = id.subject()?;
    let cluster = subject.cluster;
    if cluster.is_empty()
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(Error::Config(format!(
            "{}: the cluster name {cluster:?} cannot be an ssh host pattern",
            path.display()
        )));
    }
    let id_path = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    let tctl = sh_word(&tctl_path()?.to_string_lossy())?;
    let id_word = sh_word(&id_path.to_string_lossy())?;
    let proxy_word = sh_word(&proxy)?;
    print!(
        "# teleport-lite: ssh to the nodes of cluster {cluster} through proxy {proxy}\n\
         # as {} {:?} (identity {}, valid until {}).\n\
         Host *.{cluster}\n    \
         ProxyCommand {tctl} -i {id_word} nodes dial --proxy={proxy_word} --strip-cluster '%h' \
         127.0.0.1:%p\n",
        subject.role.to_lowercase(),
        subject.host_id,
        id_path.display(),
        clock::rfc822(id.not_after()?)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_suffix_is_removed_once() {
        let c = "example.test";
        assert_eq!(strip_cluster("web-1.example.test", c).unwrap(), "web-1");
        assert_eq!(strip_cluster("WEB-1.Example.TEST", c).unwrap(), "WEB-1");
        assert_eq!(
            strip_cluster("db.internal.example.test", c).unwrap(),
            "db.internal"
        );
        assert_eq!(
            strip_cluster("x.example.test.example.test", c).unwrap(),
            "x.example.test"
        );
        for bad in [
            "web-1",
            ".example.test",
            "example.test",
            "web-1.other.test",
            "é",
        ] {
            assert!(strip_cluster(bad, c).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttl_needs_a_unit_and_a_bound() {
        assert_eq!(user_ttl(None).unwrap(), DEFAULT_USER_TTL);
        assert_eq!(user_ttl(Some("8h")).unwrap(), Duration::from_secs(8 * 3600));
        assert!(user_ttl(Some("5"))
            .unwrap_err()
            .to_string()
            .contains("no unit"));
        assert!(user_ttl(Some("31h")).is_err());
        assert!(user_ttl(Some("0s")).is_err());
    }

    #[test]
    fn proxy_command_words_are_quoted_for_the_shell_and_ssh() {
        assert_eq!(sh_word("/a b/tctl").unwrap(), "'/a b/tctl'");
        assert_eq!(sh_word("/x'y%h").unwrap(), "'/x'\\''y%%h'");
        assert!(sh_word("a\nb").is_err());
    }
}
