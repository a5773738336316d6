//! A test CA and certificates made with the `openssl` CLI: a server
//! certificate for 127.0.0.1 (IP SAN, serverAuth) and client certificates
//! (clientAuth), all ECDSA P-256, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{have, require, sh};

/// A CA in `dir`: `ca.pem` and `ca-key.pem`.
pub struct Ca {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    sh(Command::new("openssl").current_dir(dir).args(args));
}

impl Ca {
    /// A new CA named `name` in `dir` (made if missing); `None` to skip
    /// when openssl is missing.
    pub fn new(dir: &Path, name: &str) -> Option<Ca> {
        if !require(have("openssl"), "openssl (apt-get install openssl)") {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let subj = format!("/CN={name}");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", &subj]);
        openssl(dir, &args);
        Some(Ca { dir: dir.to_path_buf() })
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate signed by this CA: `NAME-cert.pem` and `NAME-key.pem`
    /// in the CA's directory; `server` gives serverAuth and the IP SAN
    /// 127.0.0.1, else clientAuth. Returns (cert, key).
    pub fn issue(&self, name: &str, server: bool) -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) =
            (format!("{name}-cert.pem"), format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.ext"));
        let usage = if server {
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        } else {
            "extendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.dir.join(&ext), format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{usage}"))
            .unwrap();
        let subj = format!("/CN={}", if server { "127.0.0.1" } else { name });
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        (self.dir.join(cert), self.dir.join(key))
    }

    /// A docker client certificate directory: `ca.pem`, and with `client`
    /// a client certificate as `cert.pem` and `key.pem`.
    pub fn docker_dir(&self, dir: &Path, client: bool) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(self.cert(), dir.join("ca.pem")).unwrap();
        if client {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let (cert, key) = self.issue(&name, false);
            std::fs::copy(cert, dir.join("cert.pem")).unwrap();
            std::fs::copy(key, dir.join("key.pem")).unwrap();
        }
        dir.to_path_buf()
    }
}
