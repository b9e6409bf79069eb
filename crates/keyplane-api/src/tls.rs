//! HTTPS on the server's own listener (SPEC sections 10 and 11): a certificate chain and key read
//! from PEM files, and reloaded in place (on SIGHUP, by the binary) so a renewed certificate needs
//! no restart. A reload that fails keeps the certificate in use: a half-written file must never
//! take the server off the air.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The server's certificate and key files, and what was last read from them. Cloning shares the
/// certificate: a reload through any clone is seen by every connection accepted after it.
#[derive(Clone)]
pub struct TlsCerts {
    inner: Arc<Inner>,
}

struct Inner {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for TlsCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCerts")
            .field("cert_file", &self.inner.cert_file)
            .field("key_file", &self.inner.key_file)
            .finish_non_exhaustive()
    }
}

/// ring, named once: if another crate in the build enables aws-lc-rs too, rustls has no single
/// default provider and its plain builders would panic.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsCerts {
    /// Reads both files; an unreadable or mismatched pair is an error at start-up.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        let key = read_pair(cert_file, key_file)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cert_file: cert_file.to_path_buf(),
                key_file: key_file.to_path_buf(),
                current: RwLock::new(Arc::new(key)),
            }),
        })
    }

    /// Reads the files again. On success new handshakes present the new certificate (connections
    /// already open keep theirs); on failure nothing changes and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = read_pair(&self.inner.cert_file, &self.inner.key_file)?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// A TLS acceptor that asks this set for its certificate on every handshake. HTTP/1.1 only,
    /// as the listener serves nothing else.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.inner.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

#[derive(Debug)]
struct Resolver(Arc<Inner>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert_file.display()))?;
    if certs.is_empty() {
        bail!(
            "the TLS certificate file {} holds no PEM certificate",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the TLS key {}", key_file.display()))?;
    CertifiedKey::from_der(certs, key, &provider()).with_context(|| {
        format!(
            "the TLS key {} does not fit the certificate {}",
            key_file.display(),
            cert_file.display()
        )
    })
}
