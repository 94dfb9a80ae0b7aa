//! TLS for the API server: the serving certificate, client certificates verified against the server's CA, and the
//! identity a client certificate carries (CN = user name, O = groups, as kube-apiserver reads them).
//!
//! A client may present no certificate (it then needs a bearer token); a certificate that does not chain to the CA,
//! or lacks the clientAuth usage, fails the TLS handshake.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tower_layer::Layer as _;

/// The DER certificate a client authenticated with, in every request's extensions (`None`: no certificate).
#[derive(Clone, Debug)]
pub struct PeerCert(pub Arc<Vec<u8>>);

/// The rustls configuration: our serving certificate, HTTP/2 and HTTP/1.1, optional client certificates from `ca_pem`.
///
/// # Errors
/// A message when a PEM block does not parse.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt: {e}"))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("serving.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("serving.key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections and tags each request with the client's certificate.
#[derive(Clone)]
pub struct ClientCertAcceptor {
    tls: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ClientCertAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertAcceptor").finish_non_exhaustive()
    }
}

impl ClientCertAcceptor {
    /// An acceptor for `config`.
    #[must_use]
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tls: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

type AcceptFuture<S> = Pin<
    Box<
        dyn Future<
                Output = io::Result<(
                    tokio_rustls::server::TlsStream<TcpStream>,
                    <axum::Extension<Option<PeerCert>> as tower_layer::Layer<S>>::Service,
                )>,
            > + Send,
    >,
>;

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for ClientCertAcceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    type Service = <axum::Extension<Option<PeerCert>> as tower_layer::Layer<S>>::Service;
    type Future = AcceptFuture<S>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let _ = stream.set_nodelay(true);
            let stream = tokio::time::timeout(Duration::from_secs(10), tls.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCert(Arc::new(c.to_vec())));
            Ok((stream, axum::Extension(peer).layer(service)))
        })
    }
}

/// The user (subject CN) and groups (subject O) of a client certificate.
#[must_use]
pub fn subject_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((user, groups))
}
