//! The API over HTTP without sockets (`Router::oneshot`): discovery, CRUD semantics, admission, patch, watch, CRDs,
//! tables and Status errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use common::{app, call, cm, get, post};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let (app, _) = app();
    let (code, v) = get(&app, "/version").await;
    assert_eq!((code, v["minor"].as_str()), (StatusCode::OK, Some("32")));
    assert_eq!(get(&app, "/api").await.1["versions"], json!(["v1"]));
    let (_, kv) = get(&app, "/apis/kubevirt.io/v1").await;
    let names: Vec<&str> = kv["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"virtualmachineinstances")
            && names.contains(&"virtualmachines/status")
            && names.contains(&"virtualmachineinstancereplicasets/scale"),
        "{names:?}"
    );
    let groups = get(&app, "/apis").await.1;
    let kubevirt = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "kubevirt.io")
        .unwrap();
    assert_eq!(kubevirt["preferredVersion"]["version"], "v1");

    let req = Request::get("/apis")
        .header(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let v: Value = serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["metadata"]["name"] == "kubevirt.io")
    );
    let (code, v) = get(&app, "/apis/nonexistent.io/v1").await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
}

#[tokio::test]
async fn crud_semantics_and_errors() {
    let (app, _) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    let (code, created) = post(&app, base, cm("one", json!({"app": "a"}))).await;
    assert_eq!(code, StatusCode::CREATED);
    for f in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(created["metadata"][f].is_string(), "{f}: {created}");
    }
    assert_eq!(created["metadata"]["namespace"], "default");
    let (code, v) = post(&app, base, cm("one", json!({}))).await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
    let (code, v) = post(
        &app,
        base,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(
        v["metadata"]["name"].as_str().unwrap().starts_with("gen-")
            && v["metadata"]["name"].as_str().unwrap().len() == 9
    );
    let (code, v) = post(&app, "/api/v1/namespaces/nowhere/configmaps", cm("x", json!({}))).await;
    assert_eq!(
        (code, v["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("namespaces \"nowhere\" not found"))
    );
    let (code, v) = post(
        &app,
        base,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
    )
    .await;
    assert_eq!(
        (code, v["details"]["causes"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("metadata.name"))
    );
    let (code, _) = call(
        &app,
        "POST",
        base,
        Some(json!("not an object")),
        "application/json",
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = call(
        &app,
        "POST",
        base,
        Some(json!({})),
        "application/vnd.kubernetes.protobuf",
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "protobuf without the k8s magic");
    let (code, _) = call(&app, "POST", base, Some(json!({})), "application/cbor").await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // list + label selector
    post(&app, base, cm("two", json!({"app": "b"}))).await;
    let (_, list) = get(&app, &format!("{base}?labelSelector=app%20in%20(a,b)")).await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (code, _) = get(&app, &format!("{base}?labelSelector=app%20in%20a")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, v) = get(&app, &format!("{base}?fieldSelector=spec.nodeName%3Dx")).await;
    assert_eq!(
        (code, v["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("field label not supported: spec.nodeName")
        )
    );
    // pagination
    let (_, page) = get(&app, &format!("{base}?limit=1")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (_, page2) = get(&app, &format!("{base}?limit=5&continue={token}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);

    // update: stale RV is a conflict; no-op keeps the RV
    let mut obj = get(&app, &format!("{base}/one")).await.1;
    let rv = obj["metadata"]["resourceVersion"].clone();
    obj["data"]["k"] = json!("v2");
    let (code, updated) = call(
        &app,
        "PUT",
        &format!("{base}/one"),
        Some(obj.clone()),
        "application/json",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_ne!(updated["metadata"]["resourceVersion"], rv);
    let (code, v) = call(&app, "PUT", &format!("{base}/one"), Some(obj), "application/json").await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );
    let (code, same) = call(
        &app,
        "PUT",
        &format!("{base}/one"),
        Some(updated.clone()),
        "application/json",
    )
    .await;
    assert_eq!(
        (code, &same["metadata"]["resourceVersion"]),
        (StatusCode::OK, &updated["metadata"]["resourceVersion"])
    );

    // delete
    let (code, v) = call(&app, "DELETE", &format!("{base}/one"), None, "").await;
    assert_eq!((code, v["status"].as_str()), (StatusCode::OK, Some("Success")));
    let (code, v) = get(&app, &format!("{base}/one")).await;
    assert_eq!(
        (code, v["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("configmaps \"one\" not found"))
    );
}

#[tokio::test]
async fn kubevirt_objects_go_through_admission() {
    let (app, _) = app();
    let base = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";
    let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "v"},
        "spec": {"domain": {"devices": {}, "memory": {"guest": "128Mi"}}}});
    let (code, v) = post(&app, base, vmi).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(v["spec"]["domain"]["machine"]["type"], "q35");
    assert_eq!(v["status"]["phase"], "Pending");
    let bad = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "w"},
        "spec": {"domain": {"devices": {"disks": [{"name": "d", "disk": {"bus": "ide"}}]}}}});
    let (code, v) = post(&app, base, bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = v["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"spec.domain.devices.disks[0].disk.bus"), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("VirtualMachineInstance.kubevirt.io \"w\" is invalid: ")
    );
    // SMP on a custom resource is refused the way kubectl expects.
    let (code, _) = call(
        &app,
        "PATCH",
        &format!("{base}/v"),
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
        "application/strategic-merge-patch+json",
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (code, v) = call(
        &app,
        "PATCH",
        &format!("{base}/v"),
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(
        (code, &v["metadata"]["labels"]["a"]),
        (StatusCode::OK, &json!("b"))
    );
}

#[tokio::test]
async fn crds_are_served_on_creation_and_take_their_objects_on_deletion() {
    let (app, _) = app();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (code, v) = post(
        &app,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        crd,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["conditions"][1]["type"], "Established");
    let base = "/apis/example.com/v1/namespaces/default/widgets";
    let (code, w) = post(&app, base, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}, "status": {"dropped": true}})).await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(
        w.get("status").is_none(),
        "status is dropped on create with a status subresource"
    );
    let (code, _) = call(
        &app,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        None,
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(get(&app, base).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tables_carry_metadata_and_ages() {
    let (app, _) = app();
    let req = Request::get("/api/v1/namespaces")
        .header(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let v: Value = serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(v["kind"], "Table");
    let cols: Vec<&str> = v["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Status", "Age"]);
    let row = &v["rows"][0];
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert!(row["cells"][2].as_str().unwrap().ends_with('s'), "{row}");
}

async fn lines(app: &axum::Router, uri: &str, n: usize) -> Vec<Value> {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("watch event in time");
        let Some(chunk) = chunk else { break };
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(i) = buf.find('\n') {
            out.push(serde_json::from_str(&buf[..i]).unwrap());
            buf.drain(..=i);
        }
    }
    out
}

#[tokio::test]
async fn watches_stream_events_and_report_expiry_in_band() {
    let (app, store) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    post(&app, base, cm("pre", json!({}))).await;
    let rv = get(&app, base).await.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            post(&app, base, cm("w1", json!({"x": "y"}))).await;
            call(&app, "DELETE", &format!("{base}/w1"), None, "").await;
        })
    };
    let events = lines(&app, &format!("{base}?watch=true&resourceVersion={rv}"), 2).await;
    writer.await.unwrap();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "w1");
    assert_eq!(events[1]["type"], "DELETED");

    // No resourceVersion: the current state first (Python's default).
    let initial = lines(&app, &format!("{base}?watch=1&timeoutSeconds=1"), 1).await;
    assert_eq!(
        (
            initial[0]["type"].as_str(),
            initial[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("pre"))
    );

    // Too old: an ERROR event with a 410 Status inside a 200 stream.
    store.compact_to(store.revision().unwrap()).unwrap();
    let expired = lines(&app, &format!("{base}?watch=true&resourceVersion=1"), 1).await;
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn scale_subresource() {
    let (app, _) = app();
    let base = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstancereplicasets";
    let rs = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}}}}});
    assert_eq!(post(&app, base, rs).await.0, StatusCode::CREATED);
    let (code, s) = get(&app, &format!("{base}/rs/scale")).await;
    assert_eq!(
        (code, s["kind"].as_str(), s["spec"]["replicas"].as_i64()),
        (StatusCode::OK, Some("Scale"), Some(2))
    );
    let (code, s) = call(
        &app,
        "PATCH",
        &format!("{base}/rs/scale"),
        Some(json!({"spec": {"replicas": 5}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!((code, s["spec"]["replicas"].as_i64()), (StatusCode::OK, Some(5)));
    assert_eq!(get(&app, &format!("{base}/rs")).await.1["spec"]["replicas"], 5);
}

#[tokio::test]
async fn unknown_fields_follow_field_validation() {
    let (app, _) = app();
    let base = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
    let vm = |name: &str| {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
        "spec": {"runStrategy": "Halted", "runStrateggy": "typo", "template": {"spec": {"domain": {"devices": {}, "memroy": {}}}}}})
    };
    let (code, v) = post(&app, &format!("{base}?fieldValidation=Strict"), vm("strict")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["message"],
        "VirtualMachine in version \"v1\" cannot be handled as a VirtualMachine: strict decoding error: unknown field \"spec.runStrateggy\", unknown field \"spec.template.spec.domain.memroy\""
    );
    let req = Request::post(base)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vm("warned").to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let warnings: Vec<_> = resp
        .headers()
        .get_all(header::WARNING)
        .iter()
        .map(|w| w.to_str().unwrap().to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown field \\\"spec.runStrateggy\\\"")
                || w.contains("unknown field 'spec.runStrateggy'")),
        "{warnings:?}"
    );
    let (_, stored) = get(&app, &format!("{base}/warned")).await;
    assert!(stored["spec"].get("runStrateggy").is_none(), "pruned");
    let (code, _) = post(&app, &format!("{base}?fieldValidation=Sometimes"), vm("x")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_requests_get_the_right_status_and_never_crash_the_server() {
    let (app, _) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    // Wrong kind / apiVersion for the path.
    let (code, v) = post(
        &app,
        base,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    let (code, _) = post(
        &app,
        base,
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Bodies over 3 MiB.
    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x".repeat(4 << 20)}});
    let (code, v) = post(&app, base, huge).await;
    assert_eq!(
        (code, v["reason"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLarge"))
    );
    // Malformed JSON names the line and column.
    let req = Request::post(base)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\n \"kind\": "))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert!(v["message"].as_str().unwrap().contains("line 2 column"), "{v}");
    // Deep nesting is refused by the decoder's recursion limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let req = Request::post(base)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(deep))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    // Randomised garbage through paths, queries, selectors and bodies: every answer is a Status, never a panic.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const ALPHABET: &[u8] = b"abc=!,() /{}[]\"':.-_0123456789%\\\n\tin notin kubevirt.io/v1 apis namespaces watch=1 labelSelector fieldSelector";
    for _ in 0..400 {
        let len = (next() % 40) as usize;
        let junk: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
            .collect();
        let enc: String = junk.bytes().map(|b| format!("%{b:02X}")).collect();
        for uri in [
            format!("/api/v1/namespaces/default/configmaps?labelSelector={enc}"),
            format!("/api/v1/namespaces/default/pods?fieldSelector={enc}"),
            format!("/apis/kubevirt.io/v1/namespaces/default/virtualmachines?limit={enc}&continue={enc}"),
            format!("/api/v1/{enc}"),
        ] {
            let resp = app
                .clone()
                .oneshot(Request::get(uri.as_str()).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(resp.status().as_u16() < 500, "{uri} -> {}", resp.status());
        }
        for ct in [
            "application/json",
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/vnd.kubernetes.protobuf",
        ] {
            let req = Request::post("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances")
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(junk.clone()))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert!(
                resp.status().is_client_error(),
                "{ct} {junk:?} -> {}",
                resp.status()
            );
        }
    }
}

#[tokio::test]
async fn custom_resources_are_checked_against_their_schema() {
    let (app, _) = app();
    let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "vm1"},
        "spec": {"running": "string", "template": {"spec": {"domain": {"devices": {}}}}}});
    let (code, v) = post(
        &app,
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
        vm,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["message"],
        "VirtualMachine.kubevirt.io \"vm1\" is invalid: spec.running: Invalid value: \"string\": spec.running in body must be of type boolean: \"string\""
    );
    let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "v"},
        "spec": {"domain": {"devices": {"disks": [{"disk": {}}]}, "memory": {"guest": "64Mi"}}}});
    let (code, v) = post(
        &app,
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
        vmi,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["details"]["causes"][0]["field"],
        "spec.domain.devices.disks[0].name"
    );
    assert_eq!(v["details"]["causes"][0]["message"], "Required value");
}
