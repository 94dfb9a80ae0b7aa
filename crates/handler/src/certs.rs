//! The certificates of the handler's endpoint, as upstream's operator lays them out in the install namespace: the
//! KubeVirt CA bundle (ConfigMap `kubevirt-ca`, key `ca-bundle`), the handler's serving certificate (Secret
//! `kubevirt-virt-handler-server-certs`, CN `kubevirt.io:system:node:virt-handler`) and the client certificate
//! virt-api presents to it (Secret `kubevirt-virt-handler-certs`, CN `kubevirt.io:system:client:virt-handler`).
//! From them come the two rustls configurations: the server's (client certificates required, chained to the CA
//! and with the client CN) and the client's (the handler's certificate chained to the CA, for the service name
//! [`SERVER_NAME`], whatever address the handler is reached at).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ConfigMap with the CA bundle.
pub const CA_CONFIGMAP: &str = "kubevirt-ca";
/// Its key.
pub const CA_BUNDLE_KEY: &str = "ca-bundle";
/// The Secret with the CA itself (certificate and key; only the operator — in box mode `kvbox server` — reads it).
pub const CA_SECRET: &str = "kubevirt-ca";
/// The Secret with the handler's serving certificate.
pub const SERVER_SECRET: &str = "kubevirt-virt-handler-server-certs";
/// The Secret with the client certificate callers of the handler present.
pub const CLIENT_SECRET: &str = "kubevirt-virt-handler-certs";
/// The serving certificate's common name.
pub const SERVER_CN: &str = "kubevirt.io:system:node:virt-handler";
/// The client certificate's common name.
pub const CLIENT_CN: &str = "kubevirt.io:system:client:virt-handler";
/// The DNS name the serving certificate is issued for and clients verify (upstream's handler service).
pub const SERVER_NAME: &str = "virt-handler.kubevirt.svc";

/// Why certificate material is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The API refused or failed.
    #[error("reading {what}: {source}")]
    Api {
        /// The object.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// An object is missing or lacks a key.
    #[error("{0}")]
    Missing(String),
    /// PEM or TLS setup failed.
    #[error("{0}")]
    Tls(String),
}

/// A certificate with its key, as PEM, and the CA bundle that verifies the peer.
#[derive(Clone)]
pub struct Identity {
    /// The CA bundle (PEM).
    pub ca_bundle: String,
    /// The certificate chain (PEM).
    pub cert: String,
    /// The private key (PEM).
    pub key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

fn secret_text(secret: &Secret, key: &str, name: &str) -> Result<String, CertError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| CertError::Missing(format!("secret {name} has no {key}")))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| CertError::Tls(format!("secret {name}: {key} is not PEM")))
}

/// Reads the CA bundle and the certificate in Secret `secret` (`tls.crt`, `tls.key`) from `namespace`.
///
/// # Errors
/// [`CertError`]: an object is missing (not created yet) or unreadable.
pub async fn load(client: &kube::Client, namespace: &str, secret: &str) -> Result<Identity, CertError> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let api = |what: String| move |source| CertError::Api { what, source };
    let cm = cms
        .get_opt(CA_CONFIGMAP)
        .await
        .map_err(api(format!("configmap {namespace}/{CA_CONFIGMAP}")))?
        .ok_or_else(|| CertError::Missing(format!("configmap {namespace}/{CA_CONFIGMAP} not found")))?;
    let ca_bundle = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CA_BUNDLE_KEY))
        .cloned()
        .ok_or_else(|| CertError::Missing(format!("configmap {CA_CONFIGMAP} has no {CA_BUNDLE_KEY}")))?;
    let s = secrets
        .get_opt(secret)
        .await
        .map_err(api(format!("secret {namespace}/{secret}")))?
        .ok_or_else(|| CertError::Missing(format!("secret {namespace}/{secret} not found")))?;
    Ok(Identity {
        ca_bundle,
        cert: secret_text(&s, "tls.crt", secret)?,
        key: secret_text(&s, "tls.key", secret)?,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_bundle: &str) -> Result<Arc<rustls::RootCertStore>, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots
            .add(c.map_err(|e| CertError::Tls(format!("CA bundle: {e}")))?)
            .map_err(|e| CertError::Tls(format!("CA bundle: {e}")))?;
    }
    if roots.is_empty() {
        return Err(CertError::Tls("the CA bundle holds no certificate".into()));
    }
    Ok(Arc::new(roots))
}

fn chain_and_key(id: &Identity) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
    let certs = CertificateDer::pem_slice_iter(id.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Tls(format!("tls.crt: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes())
        .map_err(|e| CertError::Tls(format!("tls.key: {e}")))?;
    Ok((certs, key))
}

/// The server side: our certificate; every client must present one chained to the CA (its CN is checked by
/// [`common_name`] after the handshake).
///
/// # Errors
/// [`CertError::Tls`] when the material does not parse.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&id.ca_bundle)?, provider())
            .build()
            .map_err(|e| CertError::Tls(format!("client verifier: {e}")))?;
    let (certs, key) = chain_and_key(id)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| CertError::Tls(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: our client certificate; the handler must present a certificate for [`SERVER_NAME`] chained to
/// the CA.
///
/// # Errors
/// [`CertError::Tls`] when the material does not parse.
pub fn client_config(id: &Identity) -> Result<Arc<rustls::ClientConfig>, CertError> {
    let (certs, key) = chain_and_key(id)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_root_certificates(roots(&id.ca_bundle)?)
        .with_client_auth_cert(certs, key)
        .map_err(|e| CertError::Tls(format!("client certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject common name of a DER certificate.
#[must_use]
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}
