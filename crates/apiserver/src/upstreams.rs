//! The aggregated API servers this server proxies to: its front-proxy client identity ([`Aggregator`], with the
//! discovery cache), a resolved [`Backend`] and an aggregated [`Group`] — the types [`crate::aggregator`] works with
//! and the server's state holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::status::ApiError;

/// How long a backend's discovery document is reused.
pub(crate) const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// The front proxy's client identity and the discovery cache.
pub struct Aggregator {
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub(crate) discovery: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator").finish_non_exhaustive()
    }
}

/// Where one aggregated group-version is served.
pub struct Backend {
    pub(crate) addr: String,
    pub(crate) server_name: String,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// An aggregated group: its versions, each with the backend's resource list when it could be had.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group.
    pub name: String,
    /// Versions, preferred first, with their APIResourceList `resources` when known.
    pub versions: Vec<(String, Option<Value>)>,
}

/// Accepts whatever certificate the backend shows (`insecureSkipTLSVerify`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", msg)
}

impl Aggregator {
    /// An aggregator presenting the front proxy's `cert_pem`/`key_pem`.
    ///
    /// # Errors
    /// A message when the PEM does not parse.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let cert = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("front-proxy-client.crt: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("front-proxy-client.key: {e}"))?;
        Ok(Self {
            cert,
            key,
            discovery: Mutex::default(),
        })
    }

    pub(crate) fn tls(
        &self,
        ca_bundle: Option<&str>,
        insecure: bool,
    ) -> Result<Arc<rustls::ClientConfig>, ApiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let pem = ca_bundle
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            for c in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(unavailable("the APIService has no usable caBundle"));
            }
            builder.with_root_certificates(roots)
        };
        let mut config = builder
            .with_client_auth_cert(self.cert.clone(), self.key.clone_key())
            .map_err(|e| ApiError::internal(format!("front proxy certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
