//! Built-in defaults checked against a real kube-apiserver: each object of `defaults/cases.json` is created in box
//! mode's API server and read back, and must equal what kube-apiserver v1.36 stored for it
//! (`defaults/kube-apiserver.json`, recorded by `scripts/record-kube-defaults`), less what differs by nature: uids,
//! resource versions, timestamps, managed fields, allocated cluster IPs and node ports, the random suffix of the
//! service-account token volume, and one OpenShift addition (below).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};

const CASES: &str = include_str!("defaults/cases.json");
const RECORDED: &str = include_str!("defaults/kube-apiserver.json");

/// Replaces what legitimately differs between two servers with placeholders.
fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] {
            m.remove(k);
        }
    }
    if v["kind"] == "Service" {
        let spec = &mut v["spec"];
        if spec.get("clusterIP").is_some_and(|ip| ip != "None") {
            spec["clusterIP"] = json!("<allocated>");
            spec["clusterIPs"] = json!(["<allocated>"]);
        }
        for p in spec["ports"].as_array_mut().into_iter().flatten() {
            if p.get("nodePort").is_some() {
                p["nodePort"] = json!("<allocated>");
            }
        }
    }
    if let Some(t) = v.pointer_mut("/status/lastPhaseTransitionTime") {
        *t = json!("<time>");
    }
    // The recording's kube-apiserver is OpenShift's fork (as vendored in MicroShift): its ServiceAccount admission
    // also projects `openshift-service-ca.crt`, which upstream's does not.
    for vol in v
        .pointer_mut("/spec/volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(sources) = vol
            .pointer_mut("/projected/sources")
            .and_then(Value::as_array_mut)
        {
            sources.retain(|s| s.pointer("/configMap/name") != Some(&json!("openshift-service-ca.crt")));
        }
    }
    token_volume_names(&mut v);
    v
}

/// `kube-api-access-XXXXX` → `kube-api-access-*` wherever a name is.
fn token_volume_names(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if k == "name" && s.starts_with("kube-api-access-") => {
                        *s = "kube-api-access-*".into();
                    }
                    _ => token_volume_names(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(token_volume_names),
        _ => {}
    }
}

#[tokio::test]
async fn stored_objects_match_kube_apiserver() {
    let (app, _store) = common::app();
    let cases: Vec<Value> = serde_json::from_str(CASES).unwrap();
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    let recorded = recorded["stored"].as_array().unwrap();
    assert_eq!(cases.len(), recorded.len(), "re-record after changing the cases");
    let mut diffs = Vec::new();
    for (case, want) in cases.iter().zip(recorded) {
        let path = case["path"].as_str().unwrap();
        let name = case["object"]["metadata"]["name"].as_str().unwrap();
        let (code, created) = common::post(&app, path, case["object"].clone()).await;
        assert_eq!(code, StatusCode::CREATED, "{path} {name}: {created}");
        let (code, got) = common::get(&app, &format!("{path}/{name}")).await;
        assert_eq!(code, StatusCode::OK, "{path}/{name}: {got}");
        let (got, want) = (normalize(got), normalize(want.clone()));
        if got != want {
            diffs.push(format!("{path}/{name}:\n  box:  {got}\n  kube: {want}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} differ:\n{}",
        diffs.len(),
        cases.len(),
        diffs.join("\n")
    );
}
