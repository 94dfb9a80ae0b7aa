//! What every request handler shares: the Kubernetes client, whom to believe about callers, and the client for the
//! handlers' endpoints.

use std::sync::Arc;

use handler::client::HandlerClient;

use crate::authn::RequestHeader;
use crate::status::Failure;

/// What every request needs.
pub struct App {
    /// The Kubernetes API.
    pub client: kube::Client,
    /// Whom to believe about callers.
    pub request_header: RequestHeader,
    /// The install namespace (the handler client certificate is there).
    pub namespace: String,
    /// The key upload tokens are signed with (CDI's UploadTokenRequest), when this server issues them.
    pub tokens: Option<Arc<crate::upload::Tokens>>,
    handler: tokio::sync::OnceCell<HandlerClient>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl App {
    /// virt-api over `client`, trusting `request_header`, with the handler client certificate from `namespace`.
    #[must_use]
    pub fn new(client: kube::Client, request_header: RequestHeader, namespace: &str) -> Arc<Self> {
        Self::with_tokens(client, request_header, namespace, None)
    }

    /// As [`App::new`], also issuing upload tokens signed with `tokens`.
    #[must_use]
    pub fn with_tokens(
        client: kube::Client,
        request_header: RequestHeader,
        namespace: &str,
        tokens: Option<Arc<crate::upload::Tokens>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            request_header,
            namespace: namespace.to_string(),
            tokens,
            handler: tokio::sync::OnceCell::new(),
        })
    }

    /// The client for handler endpoints (its certificate read once).
    ///
    /// # Errors
    /// 500 when the certificate cannot be read.
    pub async fn handler(&self) -> Result<&HandlerClient, Failure> {
        self.handler
            .get_or_try_init(|| HandlerClient::from_cluster(&self.client, &self.namespace))
            .await
            .map_err(|e| Failure::internal(format!("the handler client certificate: {e}")))
    }
}
