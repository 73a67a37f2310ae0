//! [`TestCertificates`]: a private CA and certificates made with `openssl` for TLS tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process;

/// Bound on one `openssl` run.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// A private CA and what it signed, as PEM files in a temporary directory (removed on drop),
/// made with the `openssl` command (P-256 keys, valid two days):
///
/// - `ca.pem`: the CA; `other-ca.pem`: an unrelated CA (a wrong trust anchor);
/// - `server.pem`/`server.key`: a server certificate for `127.0.0.1` and `localhost`;
/// - `elsewhere.pem`/`elsewhere.key`: a server certificate for `elsewhere.invalid` only (a name
///   that does not match);
/// - `client.pem`/`client.key`: a client certificate (mutual TLS).
///
/// ```
/// let certs = rate_guard_testkit::TestCertificates::generate()?;
/// assert!(std::fs::read_to_string(certs.ca())?.starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    dir: TempDir,
}

impl TestCertificates {
    /// Makes the CAs and certificates.
    pub fn generate() -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rate-guard-tls-")
            .tempdir()?;
        let at = dir.path();
        self_signed_ca(at, "ca", "rate-guard test CA")?;
        self_signed_ca(at, "other-ca", "rate-guard unrelated CA")?;
        signed(
            at,
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        signed(
            at,
            "elsewhere",
            "elsewhere.invalid",
            "subjectAltName=DNS:elsewhere.invalid\nextendedKeyUsage=serverAuth\n",
        )?;
        signed(
            at,
            "client",
            "rate-guard test client",
            "extendedKeyUsage=clientAuth\n",
        )?;
        Ok(Self { dir })
    }

    /// The directory of the files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The private CA that signed the other certificates.
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// A CA that signed nothing here.
    #[must_use]
    pub fn other_ca(&self) -> PathBuf {
        self.file("other-ca.pem")
    }

    /// The server certificate for `127.0.0.1` and `localhost`, and its key.
    #[must_use]
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.file("server.pem"), self.file("server.key"))
    }

    /// A server certificate for `elsewhere.invalid` only, and its key.
    #[must_use]
    pub fn elsewhere(&self) -> (PathBuf, PathBuf) {
        (self.file("elsewhere.pem"), self.file("elsewhere.key"))
    }

    /// The client certificate, and its key.
    #[must_use]
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.file("client.pem"), self.file("client.key"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let mut command = Command::new("openssl");
    command.current_dir(dir).args(args);
    let output = process::run(&mut command, OPENSSL_TIMEOUT)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn self_signed_ca(dir: &Path, name: &str, subject: &str) -> io::Result<()> {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={subject}"),
    );
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &pem, "-subj", &subj]);
    args.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args)
}

/// `<name>.pem` and `<name>.key`, signed by `ca.pem`, with the extensions `ext`.
fn signed(dir: &Path, name: &str, common_name: &str, ext: &str) -> io::Result<()> {
    let (key, csr, pem, ext_file, subj) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
        format!("/CN={common_name}"),
    );
    fs::write(dir.join(&ext_file), ext)?;
    let mut args = vec!["req", "-new", "-nodes"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext_file,
        ],
    )
}
