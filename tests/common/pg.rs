//! A throwaway PostgreSQL server for tests: `initdb` into a temp dir, `pg_ctl start` on a free
//! port (unix socket in the temp dir too), stopped on drop. PostgreSQL refuses to run as root,
//! so as root every command runs as the `postgres` user (Debian's package creates it) and the
//! temp dir is handed to that user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use super::{free_port, text};

/// Users every test server has: `trusted` (no password over TCP), `teleport` (SCRAM password
/// `PASSWORD`), `certuser` (client certificate, only with TLS), `md5user` (an MD5 password), `clearuser` (a
/// password sent in clear: `password` in pg_hba.conf).
pub const PASSWORD: &str = "s3cret p@ss:/word";

pub struct PgServer {
    pub dir: TempDir,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// With TLS: the CA that signed the server's certificate, and a client certificate.
    pub tls: Option<PgTls>,
}

pub struct PgTls {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, that signed nothing the server uses.
    pub other_ca: PathBuf,
}

/// The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin).
pub fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/deps.sh (Debian's postgresql package)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/*/bin/pg_ctl").1
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a PostgreSQL program as the user that may run it.
fn pg_cmd(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", text(&out));
    out
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// With `tls`, the server has a certificate for 127.0.0.1 and localhost (not 127.0.0.2,
    /// where it listens too), and `certuser` logs in with a client certificate over TLS.
    pub fn start_with(tls: bool) -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("user postgres (Debian's postgresql package creates it)");
            nix::unistd::chown(dir.path(), Some(pg.uid), Some(pg.gid)).unwrap();
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bin_dir();
        let data = dir.path().join("data");
        ok(
            pg_cmd(&bin.join("initdb"))
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                ])
                .args(["--no-sync", "-E", "UTF8", "--locale=C"])
                .output()
                .unwrap(),
            "initdb",
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1,127.0.0.2'\n\
             unix_socket_directories = '{}'\npassword_encryption = 'scram-sha-256'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n",
            dir.path().display()
        );
        let mut hba = String::from("local all all trust\n");
        let tls_files = tls.then(|| make_tls(dir.path(), &mut conf, &mut hba));
        hba.push_str(
            "host all trusted 127.0.0.0/8 trust\nhost all md5user 127.0.0.0/8 md5\n\
             host all clearuser 127.0.0.0/8 password\nhost all all 127.0.0.0/8 scram-sha-256\n",
        );
        append(&data.join("postgresql.conf"), &conf);
        fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = dir.path().join("postgres.log");
        ok(
            pg_cmd(&bin.join("pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()])
                .args(["-w", "-t", "60", "start"])
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        let s = PgServer {
            dir,
            port,
            bin,
            data,
            tls: tls_files,
        };
        s.psql(&format!(
            "CREATE ROLE trusted LOGIN; CREATE ROLE teleport LOGIN PASSWORD '{PASSWORD}'; \
             CREATE ROLE certuser LOGIN; SET password_encryption = 'md5'; \
             CREATE ROLE md5user LOGIN PASSWORD 'pw'; \
             CREATE ROLE clearuser LOGIN PASSWORD 'pw';"
        ));
        s
    }

    /// One server (with TLS) for every test of a test binary. A static is never dropped, so
    /// a watcher process stops the server and removes its directory when this process ends.
    pub fn shared() -> &'static PgServer {
        static S: std::sync::OnceLock<PgServer> = std::sync::OnceLock::new();
        S.get_or_init(|| {
            let s = PgServer::start_with(true);
            let stop =
                format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runas} {pg_ctl} -D {data} \
                 -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
                pid = std::process::id(),
                runas = if is_root() { "runuser -u postgres --" } else { "" },
                pg_ctl = s.bin.join("pg_ctl").display(),
                data = s.data.display(),
                dir = s.dir.path().display(),
            );
            // It outlives this process on purpose: it is the one that cleans up after it.
            #[allow(clippy::zombie_processes)]
            let _watcher = Command::new("sh")
                .args(["-c", &stop])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            s
        })
    }

    /// Runs SQL as the superuser over the unix socket; returns stdout (unaligned, no headers).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = pg_cmd(&self.bin.join("psql"))
            .args(["-h", self.dir.path().to_str().unwrap()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        String::from_utf8(ok(out, &format!("psql {sql}")).stdout).unwrap()
    }

    /// A fresh database owned by `owner`.
    pub fn create_db(&self, name: &str, owner: &str) {
        self.psql(&format!("CREATE DATABASE {name} OWNER {owner}"));
    }

    /// The conn_string of `user` (with `password` if given) for `db`, with extra query
    /// parameters.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str, query: &str) -> String {
        let pw = password
            .map(|p| format!(":{}", encode(p)))
            .unwrap_or_default();
        format!(
            "postgresql://{user}{pw}@127.0.0.1:{}/{db}?{query}",
            self.port
        )
    }

    /// Stops the server (fast shutdown: sessions are closed), as a database outage.
    pub fn stop(&self) {
        ok(
            pg_cmd(&self.bin.join("pg_ctl"))
                .args([
                    "-D",
                    self.data.to_str().unwrap(),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ])
                .output()
                .unwrap(),
            "pg_ctl stop",
        );
    }

    /// Starts a server `stop` stopped, on the same port and data.
    pub fn restart(&self) {
        let log = self.dir.path().join("postgres.log");
        ok(
            pg_cmd(&self.bin.join("pg_ctl"))
                .args([
                    "-D",
                    self.data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                ])
                .args(["-w", "-t", "60", "start"])
                .output()
                .unwrap(),
            "pg_ctl start",
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = pg_cmd(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn append(path: &Path, text: &str) {
    let mut conf = fs::read_to_string(path).unwrap();
    conf.push_str(text);
    fs::write(path, conf).unwrap();
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    ok(out, &format!("openssl {args:?}"));
}

/// A CA, the server's certificate, a client certificate for `certuser` and an unrelated CA;
/// turns TLS on in `conf` and the certificate login in `hba`.
fn make_tls(dir: &Path, conf: &mut String, hba: &mut String) -> PgTls {
    let ca = super::certs::TestCa::new(dir, "pg");
    let other = super::certs::TestCa::new(dir, "other");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-subj",
        "/CN=certuser",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ]);
    openssl(dir, &args);
    fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ca_cert = ca.ca_cert.to_str().unwrap().to_string();
    let ca_key = dir.join("pg-ca.key");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            &ca_cert,
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "client.pem",
        ],
    );
    // The server's key must belong to the server's user and be private.
    if is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for f in [&ca.key, &ca.cert] {
            nix::unistd::chown(f, Some(pg.uid), Some(pg.gid)).unwrap();
        }
    }
    fs::set_permissions(&ca.key, fs::Permissions::from_mode(0o600)).unwrap();
    conf.push_str(&format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
        ca.cert.display(),
        ca.key.display(),
        ca.ca_cert.display()
    ));
    hba.push_str("hostssl all certuser 127.0.0.0/8 cert\n");
    PgTls {
        ca: ca.ca_cert.clone(),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        other_ca: other.ca_cert,
    }
}
