//! Fuzz target: request bodies as the API server decodes them — JSON and YAML-ish text under every content type a
//! client may send, Kubernetes protobuf envelopes, and JSON/merge/strategic patches applied to a decoded object.
//! The first byte picks the content type; the rest is the body. Nothing may panic.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let ct = TYPES[usize::from(pick) % TYPES.len()];
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    let Ok(v) = apiserver::app::decode_body(&headers, body) else { return };
    let mut doc = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}, "spec": {"list": [{"name": "a"}]}});
    let _ = apiserver::patch::json_patch(&mut doc.clone(), &v);
    apiserver::patch::merge_patch(&mut doc, &v);
    apiserver::patch::strategic_merge(&mut doc, &v);
    let _ = apiserver::protobuf::decode(body);
});
