//! TLS for `rediss://`: which CAs to trust, a client certificate for mutual TLS, and the two
//! opt-outs (hostname check, peer verification), as [`TlsSettings`]; loaded from their files
//! into [`Tls`] once per connect.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redis::{Client, ClientTlsConfig, ConnectionAddr, TlsCertificates};

use super::config::RedisConfig;
use super::error::ConnectionError;

/// The TLS settings of a configuration (used only with a `rediss` scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// PEM bundle of the CAs to trust instead of the built-in web roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and its key, for mutual TLS.
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    /// Whether the server's certificate is verified at all (`ssl_cert_reqs=none` turns it off).
    pub(crate) verify_peer: bool,
    /// Whether the certificate must name the host connected to.
    pub(crate) verify_hostname: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            verify_peer: true,
            verify_hostname: true,
        }
    }
}

/// TLS material read from its files, ready for every connection of a [`Connection`].
///
/// [`Connection`]: super::Connection
#[derive(Clone)]
pub(crate) struct Tls {
    certificates: Arc<TlsCertificates>,
    /// A `TcpTls` address that carries the parsed certificates (the redis crate does not name
    /// their type); each connection's address is made from it.
    template: ConnectionAddr,
    verify_peer: bool,
    verify_hostname: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("verify_peer", &self.verify_peer)
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The TLS of `config`: `None` without TLS; an error for TLS settings without a TLS URL.
    pub(crate) fn for_config(config: &RedisConfig) -> Result<Option<Self>, ConnectionError> {
        if config.tls {
            Self::load(&config.tls_settings).map(Some)
        } else if config.tls_settings == TlsSettings::default() {
            Ok(None)
        } else {
            Err(ConnectionError::Tls(
                "TLS settings need a rediss:// URL (or rediss+sentinel://, rediss+cluster://)"
                    .to_owned(),
            ))
        }
    }

    /// Reads and checks the files of `settings`: each must be readable PEM, and a certificate
    /// needs its key (and the other way round).
    pub(crate) fn load(settings: &TlsSettings) -> Result<Self, ConnectionError> {
        let root_cert = settings
            .ca_file
            .as_deref()
            .map(|path| read_pem(path, "CA bundle", "CERTIFICATE"))
            .transpose()?;
        let client_tls = match (&settings.cert_file, &settings.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_pem(cert, "client certificate", "CERTIFICATE")?,
                client_key: read_pem(key, "client key", "PRIVATE KEY")?,
            }),
            (Some(_), None) => {
                return Err(ConnectionError::Tls(
                    "a client certificate needs its key (ssl_keyfile / tls_key_file)".to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConnectionError::Tls(
                    "a client key needs its certificate (ssl_certfile / tls_cert_file)".to_owned(),
                ))
            }
        };
        let certificates = TlsCertificates {
            client_tls,
            root_cert,
        };
        let mut template = ConnectionAddr::TcpTls {
            host: String::new(),
            port: 0,
            insecure: false,
            tls_params: None,
        };
        if certificates.client_tls.is_some() || certificates.root_cert.is_some() {
            // The redis crate parses the PEM here, so a bad file fails now rather than at the
            // first connection.
            let client = Client::build_with_tls(template, certificates.clone())
                .map_err(|e| ConnectionError::Tls(e.to_string()))?;
            template = client.get_connection_info().addr().clone();
        }
        Ok(Self {
            certificates: Arc::new(certificates),
            template,
            verify_peer: settings.verify_peer,
            verify_hostname: settings.verify_hostname,
        })
    }

    /// The address of `host:port` over this TLS.
    pub(crate) fn address(&self, host: &str, port: u16) -> ConnectionAddr {
        let tls_params = match &self.template {
            ConnectionAddr::TcpTls { tls_params, .. } => tls_params.clone(),
            _ => None,
        };
        let mut address = ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: !self.verify_peer,
            tls_params,
        };
        if !self.verify_hostname {
            address.set_danger_accept_invalid_hostnames(true);
        }
        address
    }

    /// What a cluster client builder needs.
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        let c = &*self.certificates;
        (c.client_tls.is_some() || c.root_cert.is_some()).then(|| c.clone())
    }

    pub(crate) fn verify_peer(&self) -> bool {
        self.verify_peer
    }

    pub(crate) fn verify_hostname(&self) -> bool {
        self.verify_hostname
    }
}

/// The PEM file at `path`, which must hold at least one `-----BEGIN …{label}-----` block.
fn read_pem(path: &Path, what: &str, label: &str) -> Result<Vec<u8>, ConnectionError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConnectionError::Tls(format!("cannot read the {what} `{}`: {e}", path.display()))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")));
    if !has_block {
        return Err(ConnectionError::Tls(format!(
            "the {what} `{}` holds no PEM {label}",
            path.display()
        )));
    }
    Ok(bytes)
}
