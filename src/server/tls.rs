//! Serving certificate: load, optional client-certificate verification, and reload on
//! file change (cert-manager and kubelet rotate files in place or by symlink swap).
//! A reload that fails keeps the previous configuration.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use crate::source::watch;

/// Paths of the TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is missing or wrong.
        what: String,
    },
    /// rustls refused the material (e.g. key does not match the certificate).
    #[error("invalid TLS material")]
    Rustls(#[from] rustls::Error),
    /// The client CA bundle is unusable.
    #[error("invalid client CA: {0}")]
    ClientCa(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = rustls_pemfile_certs(&bytes).map_err(|what| TlsError::Pem {
        path: path.display().to_string(),
        what,
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            what: "no CERTIFICATE found".into(),
        });
    }
    Ok(certs)
}

fn rustls_pemfile_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_reader_iter(&mut BufReader::new(bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        what: format!("no usable PRIVATE KEY: {e}"),
    })
}

/// A loaded serving configuration and when its leaf certificate expires.
#[derive(Debug)]
pub struct ServingCert {
    /// The rustls configuration.
    pub config: ServerConfig,
    /// The leaf's notAfter, seconds since the Unix epoch (`None` if unparsable).
    pub not_after: Option<i64>,
}

/// Loads the serving material and reads the leaf certificate's expiry.
pub fn load(paths: &TlsPaths) -> Result<ServingCert, TlsError> {
    let config = server_config(paths)?;
    let not_after = certs(&paths.cert)?.first().and_then(|leaf| {
        x509_parser::parse_x509_certificate(leaf.as_ref())
            .ok()
            .map(|(_, c)| c.validity().not_after.timestamp())
    });
    Ok(ServingCert { config, not_after })
}

/// Builds a rustls server configuration (HTTP/1.1 only: the apiserver pools HTTP/1.1
/// connections to webhooks). Checks that key and certificate pair.
pub fn server_config(paths: &TlsPaths) -> Result<ServerConfig, TlsError> {
    let chain = certs(&paths.cert)?;
    let key = key(&paths.key)?;
    let builder = ServerConfig::builder();
    let builder = match &paths.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reloads the serving configuration whenever one of its files changes. Runs until
/// the watcher stops; failures are logged and counted, the old config stays.
pub async fn reload_on_change(paths: TlsPaths, config: RustlsConfig, metrics: Metrics) {
    let mut files = vec![paths.cert.clone(), paths.key.clone()];
    files.extend(paths.client_ca.clone());
    let mut changes = match watch::watch(&files, Duration::from_secs(30)) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch TLS files; certificate rotation will need a restart");
            return;
        }
    };
    let mut current = fingerprint(&files);
    while changes.recv().await.is_some() {
        let now = fingerprint(&files);
        if now == current {
            continue;
        }
        match load(&paths) {
            Ok(c) => {
                config.reload_from_config(Arc::new(c.config));
                metrics.record_tls_reload(true);
                metrics.record_tls_expiry(c.not_after);
                warn_if_expiring(c.not_after);
                current = now;
                tracing::info!(cert = %paths.cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                // Typically a half-written rotation; the next change event retries.
                metrics.record_tls_reload(false);
                tracing::warn!(error = %e, "serving certificate reload failed; keeping the previous one");
            }
        }
    }
}

/// File contents hash, so that touch-only events and repeated events are ignored.
fn fingerprint(files: &[PathBuf]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().to_vec()
}

/// Logs when the serving certificate is expired or expires within a week: the
/// apiserver will refuse the handshake, and with `failurePolicy: Fail` every Istio change
/// fails with it.
pub fn warn_if_expiring(not_after: Option<i64>) {
    let Some(not_after) = not_after else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let left = not_after - now;
    if left <= 0 {
        tracing::error!(not_after, "the serving certificate has expired");
    } else if left < 7 * 24 * 3600 {
        tracing::warn!(
            not_after,
            hours_left = left / 3600,
            "the serving certificate expires soon"
        );
    }
}
