//! The etcd side of `kvbox bench-api --etcd URL`: the same create workload written straight into etcd, for a ratio.
//!
//! Each create is what kube-apiserver sends etcd for a create: a transaction "if the key has never been created,
//! put the object" on `/registry/configmaps/<ns>/<name>`, with a stored-object-sized JSON value. It goes through
//! etcd's JSON gateway (`POST /v3/kv/txn`) so the benchmark needs no gRPC stack; etcd is on loopback without TLS,
//! which favours etcd (our server pays for TLS, authentication, admission and JSON re-encoding).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

type Http = Client<HttpConnector, Full<bytes::Bytes>>;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A value shaped like a stored ConfigMap of the API workload.
fn stored_configmap(ns: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": jiff::Timestamp::now().to_string()},
        "data": {"payload": "x".repeat(256)}
    }))
    .unwrap_or_default()
}

async fn create_if_absent(http: &Http, url: &str, key: &str, value: &[u8]) -> anyhow::Result<()> {
    let body = json!({
        "compare": [{"key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [{"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}}],
    });
    let request = http::Request::post(format!("{url}/v3/kv/txn"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(serde_json::to_vec(&body)?)))?;
    let resp = http.request(request).await.context("etcd request")?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "etcd answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Value = serde_json::from_slice(&bytes)?;
    anyhow::ensure!(
        v.get("succeeded").and_then(Value::as_bool) == Some(true),
        "{key} already existed in etcd"
    );
    Ok(())
}

/// Creates `n` keys under a fresh prefix with `concurrency` workers; returns creates per second.
pub(crate) async fn creates(url: &str, ns: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new()).build(connector);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, next, url, ns) = (http.clone(), next.clone(), url.to_string(), ns.to_string());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("e-{i}");
                let key = format!("/registry/configmaps/{ns}/{name}");
                create_if_absent(&http, &url, &key, &stored_configmap(&ns, &name)).await?;
            }
        }));
    }
    for w in workers {
        w.await.context("worker panicked")??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
