//! TLS for listeners: a rustls server configuration from PEM certificate and key files.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// `tls = { listen = "...", cert_file = "...", key_file = "...", client_ca_file = "..." }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Address of the TLS listener.
    pub listen: String,
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: every sender must show a client certificate they signed, and
    /// its events record the certificate's common name as their sender.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Loads the certificate and key; errors name the file and what is wrong with it.
pub fn acceptor(config: &TlsListenerConfig) -> anyhow::Result<TlsAcceptor> {
    // One process-wide crypto provider; a second install is refused, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = crate::http::tls::certificates(&config.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file).with_context(|| {
        format!(
            "cannot read a private key from {}",
            config.key_file.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            builder.with_client_cert_verifier(crate::http::tls::client_verifier(ca, false)?)
        }
    };
    let server = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} does not fit {}",
            config.key_file.display(),
            config.cert_file.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
