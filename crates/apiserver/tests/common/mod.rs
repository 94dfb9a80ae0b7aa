//! Shared helpers of the HTTP-level tests: an in-memory server (with its garbage collector) behind `Router::oneshot`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::sync::Arc;
use std::time::Duration;

use apiserver::context::ApiState;
use apiserver::registry::Registry;
use apiserver::router;
use apiserver_store::Store;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub fn app() -> (axum::Router, Store) {
    let store = Store::memory();
    let registry = Registry::default();
    apiserver::server::bootstrap(&store, &registry).unwrap();
    let state = Arc::new(ApiState {
        aggregator: None,
        store: store.clone(),
        registry,
        watch_cache: Default::default(),
        webhooks: Default::default(),
        metrics: Default::default(),
        service_range: Default::default(),
        root_ca: String::new(),
        sa_key: Vec::new(),
    });
    apiserver::gc::spawn(state.clone(), Arc::new(tokio::sync::Notify::new()));
    (router(state), store)
}

pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    ct: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let code = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (code, v)
}

pub async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    call(app, "GET", uri, None, "").await
}

pub async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", uri, Some(body), "application/json").await
}

pub fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

pub async fn eventually_gone(app: &axum::Router, uri: &str) {
    testing::eventually_async(
        &format!("{uri} garbage-collected"),
        Duration::from_secs(10),
        || async { get(app, uri).await.0 == StatusCode::NOT_FOUND },
    )
    .await;
}
