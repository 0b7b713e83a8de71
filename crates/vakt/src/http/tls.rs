//! TLS on the HTTP listener: the certificate and key from PEM files, reloaded when the files
//! change (certificate rotation needs no restart), optional client certificates checked
//! against a CA (a client that shows one signs in as its subject's common name, with the
//! `ingest` role), HTTP/1.1 and HTTP/2 by ALPN.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are looked at for a change.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Where the listener's certificate, key and client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// The listener's TLS: the acceptor in force, rebuilt when a file changes.
pub struct HttpTls {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

/// The PEM certificates in `path`; none is an error.
pub fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM certificate in {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    // One process-wide crypto provider; a second install is refused, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from {}", files.key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        // A client without a certificate may still sign in with a token.
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, true)?),
    };
    let mut server = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} does not fit {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

impl HttpTls {
    /// Loads the files; errors name the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<HttpTls> {
        let acceptor = build(&files)?;
        Ok(HttpTls {
            loaded: Mutex::new(Loaded {
                acceptor,
                stamps: stamps(&files),
                checked: Instant::now(),
            }),
            files,
        })
    }

    /// The acceptor for the next connection: rebuilt first when a file changed since the
    /// last look (at most every [`RELOAD_CHECK_EVERY`]); a broken new file keeps the old
    /// certificate in force and is logged.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.checked.elapsed() >= RELOAD_CHECK_EVERY {
            loaded.checked = Instant::now();
            let now = stamps(&self.files);
            if now != loaded.stamps {
                loaded.stamps = now;
                match build(&self.files) {
                    Ok(acceptor) => {
                        loaded.acceptor = acceptor;
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(error) => tracing::error!(
                        error = format!("{error:#}"),
                        "the changed TLS files do not load; keeping the certificate in force"
                    ),
                }
            }
        }
        loaded.acceptor.clone()
    }
}

/// Checks client certificates against the CAs in `ca`; with `optional`, a client may
/// also come without one.
pub fn client_verifier(
    ca: &Path,
    optional: bool,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .with_context(|| format!("a certificate in {} is not a CA", ca.display()))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots));
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .with_context(|| format!("cannot use {} as client CA", ca.display()))
}

/// The common name of a client certificate's subject (its first DNS name when it has no
/// common name).
pub fn client_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let common = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    common.or_else(|| {
        parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
            })
    })
}
