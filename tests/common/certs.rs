//! A throwaway certificate authority made with the real `openssl`, for proxies that serve a
//! "publicly trusted" web certificate (`https_keypairs`) in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::text;

/// A CA and one server certificate it signed for 127.0.0.1 and localhost.
pub struct TestCa {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

impl TestCa {
    /// Makes the files in `dir`, named after `name`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let (ca_key, ca_cert) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let subj = format!("/CN={name} test CA");
        args.extend([
            "-subj", &subj, "-days", "2", "-keyout", &ca_key, "-out", &ca_cert,
        ]);
        openssl(&args, dir);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
        openssl(&args, dir);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                &cert,
            ],
            dir,
        );
        TestCa {
            ca_cert: dir.join(ca_cert),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// The `https_keypairs` lines of a `proxy_service` block.
    pub fn keypairs_yaml(&self) -> String {
        format!(
            "  https_keypairs:\n  - cert_file: {}\n    key_file: {}\n",
            self.cert.display(),
            self.key.display()
        )
    }
}
