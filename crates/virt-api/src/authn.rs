//! Who is calling. virt-api is an aggregated API server: the Kubernetes API server authenticates users and forwards
//! their requests with the user in request headers, proving itself with its front-proxy client certificate. We read
//! whom to trust from `kube-system/extension-apiserver-authentication` (the front proxy's CA, allowed names and
//! header names), as every extension API server does; a request without such a certificate is unauthenticated.

use std::sync::Arc;

use axum::http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The ConfigMap with the front proxy's trust settings.
const CONFIGMAP: &str = "extension-apiserver-authentication";

/// Whom to believe about callers.
#[derive(Clone, Debug)]
pub struct RequestHeader {
    /// The front proxy's CA (PEM).
    pub ca_pem: String,
    /// Accepted certificate CNs (empty: any from the CA).
    pub allowed_names: Vec<String>,
    /// Headers naming the user, first present wins.
    pub user_headers: Vec<String>,
    /// Headers naming groups (each value one group).
    pub group_headers: Vec<String>,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
}

fn list(cm: &ConfigMap, key: &str, default: &str) -> Vec<String> {
    let raw = cm
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map_or(default, String::as_str);
    serde_json::from_str(raw).unwrap_or_default()
}

impl RequestHeader {
    /// Reads the trust settings from the cluster.
    ///
    /// # Errors
    /// The ConfigMap is missing or has no front-proxy CA.
    pub async fn load(client: &kube::Client) -> Result<Self, Error> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let cm = cms
            .get_opt(CONFIGMAP)
            .await?
            .ok_or_else(|| Error::Setup(format!("configmap kube-system/{CONFIGMAP} not found")))?;
        let ca_pem = cm
            .data
            .as_ref()
            .and_then(|d| d.get("requestheader-client-ca-file"))
            .cloned()
            .ok_or_else(|| {
                Error::Setup(format!(
                    "configmap {CONFIGMAP} has no requestheader-client-ca-file"
                ))
            })?;
        Ok(Self {
            ca_pem,
            allowed_names: list(&cm, "requestheader-allowed-names", "[]"),
            user_headers: list(&cm, "requestheader-username-headers", r#"["X-Remote-User"]"#),
            group_headers: list(&cm, "requestheader-group-headers", r#"["X-Remote-Group"]"#),
        })
    }

    /// The TLS settings: our serving certificate; client certificates, when presented, must chain to the front
    /// proxy's CA (health checks come without one).
    ///
    /// # Errors
    /// PEM that does not parse.
    pub fn server_config(&self, cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, Error> {
        let tls = |e: &dyn std::fmt::Display| Error::Setup(format!("TLS: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls(&e))?;
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| tls(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The caller of a request that came over a connection whose certificate had CN `cn` (`None` without one).
    #[must_use]
    pub fn caller(&self, cn: Option<&str>, headers: &HeaderMap) -> Option<Caller> {
        let cn = cn?;
        if !self.allowed_names.is_empty() && !self.allowed_names.iter().any(|n| n == cn) {
            return None;
        }
        let user = self
            .user_headers
            .iter()
            .find_map(|h| headers.get(h.as_str()).and_then(|v| v.to_str().ok()))
            .filter(|u| !u.is_empty())?
            .to_string();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()).iter())
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        Some(Caller { user, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_come_from_the_front_proxys_headers_only() {
        let rh = RequestHeader {
            ca_pem: String::new(),
            allowed_names: vec!["front-proxy-client".into()],
            user_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
        };
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", "alice".parse().unwrap());
        h.append("x-remote-group", "system:masters".parse().unwrap());
        h.append("x-remote-group", "dev".parse().unwrap());
        let c = rh.caller(Some("front-proxy-client"), &h).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.groups, ["system:masters", "dev"]);
        assert!(rh.caller(Some("someone"), &h).is_none(), "another CN");
        assert!(rh.caller(None, &h).is_none(), "no certificate");
    }
}
