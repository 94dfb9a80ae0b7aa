//! What every request handler shares: who is calling ([`Identity`]), the server's state ([`ApiState`]), one resource
//! request's context ([`Ctx`]), and reading and writing JSON bodies. A leaf: it names the state's parts but no
//! handler, so handlers depend on it and the router ([`crate::app`]) on them, without a cycle.

use std::sync::Arc;

use apiserver_store::Store;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::registry::{Registry, ResourceType};
use crate::request::{Query, ResourcePath};
use crate::status::ApiError;

/// Who is calling (set by the authentication layer; absent in unauthenticated test routers = admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User name shown in 403 messages.
    pub user: String,
    /// Groups the user is in (`kubectl auth whoami` shows them).
    pub groups: Vec<String>,
    /// Whether writes are allowed.
    pub can_write: bool,
}

impl Identity {
    /// The all-powerful administrator.
    #[must_use]
    pub fn admin() -> Self {
        Self {
            user: "kvbox-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            can_write: true,
        }
    }
}

/// State shared by all requests.
#[derive(Debug)]
pub struct ApiState {
    /// The object store.
    pub store: Store,
    /// Served resources.
    pub registry: Registry,
    /// Encoded watch events shared by the watchers of one resource.
    pub watch_cache: crate::watch_cache::EventCache,
    /// Registered admission webhooks.
    pub webhooks: crate::webhook_cache::WebhookCache,
    /// Request counters (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// API aggregation (APIServices served by other servers); `None` serves only local groups.
    pub aggregator: Option<crate::upstreams::Aggregator>,
    /// Where Services get their cluster IPs.
    pub service_range: crate::services::ServiceRange,
    /// The cluster CA (PEM) published in every namespace's `kube-root-ca.crt`; empty publishes none.
    pub root_ca: String,
    /// The key service account tokens are signed with; empty mints nothing that verifies.
    pub sa_key: Vec<u8>,
}

/// Shared handle.
pub type Shared = Arc<ApiState>;

/// Everything one resource request needs.
#[derive(Debug)]
pub struct Ctx {
    /// Shared state.
    pub state: Shared,
    /// The resource type as requested (version included).
    pub rt: ResourceType,
    /// The parsed path.
    pub path: ResourcePath,
    /// Query parameters.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// Who is calling.
    pub identity: Identity,
}

/// Decodes a JSON request body.
///
/// # Errors
/// 415 for protobuf, CBOR and other non-JSON media types; 400 for malformed JSON.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::protobuf::decode(body);
    }
    if !ct.contains("json") && !ct.contains("apply-patch") {
        return Err(ApiError::unsupported_media("application/json"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body could not be decoded: line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// A JSON response with `code`.
pub fn json(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v.clone())).into_response()
}
