//! Object lifecycles over HTTP: finalizers, ownerReferences garbage collection, namespace termination, the two views
//! of events, pod binding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{app, call, cm, eventually_gone, get, post};
use serde_json::{Value, json};

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let (app, _) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    let owned = |name: &str, owner: &Value| {
        let mut c = cm(name, json!({}));
        c["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        c
    };
    // Background: the owner goes at once, its dependents (and theirs) follow.
    let (_, owner) = post(&app, base, cm("owner", json!({}))).await;
    let (_, child) = post(&app, base, owned("child", &owner)).await;
    post(&app, base, owned("grandchild", &child)).await;
    call(&app, "DELETE", &format!("{base}/owner"), None, "").await;
    eventually_gone(&app, &format!("{base}/child")).await;
    eventually_gone(&app, &format!("{base}/grandchild")).await;

    // Foreground: the owner waits, marked, until its dependents are gone.
    let (_, owner) = post(&app, base, cm("fg", json!({}))).await;
    let mut held = owned("held", &owner);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    post(&app, base, held).await;
    let (code, v) = call(
        &app,
        "DELETE",
        &format!("{base}/fg"),
        Some(json!({"propagationPolicy": "Foreground"})),
        "application/json",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(&app, &format!("{base}/fg")).await.0,
        StatusCode::OK,
        "the owner waits for its dependent"
    );
    assert!(get(&app, &format!("{base}/held")).await.1["metadata"]["deletionTimestamp"].is_string());
    let patch = json!({"metadata": {"finalizers": null}});
    call(
        &app,
        "PATCH",
        &format!("{base}/held"),
        Some(patch),
        "application/merge-patch+json",
    )
    .await;
    eventually_gone(&app, &format!("{base}/held")).await;
    eventually_gone(&app, &format!("{base}/fg")).await;

    // Orphan: dependents stay, without the reference.
    let (_, owner) = post(&app, base, cm("orph", json!({}))).await;
    post(&app, base, owned("kept", &owner)).await;
    call(
        &app,
        "DELETE",
        &format!("{base}/orph"),
        Some(json!({"propagationPolicy": "Orphan"})),
        "application/json",
    )
    .await;
    eventually_gone(&app, &format!("{base}/orph")).await;
    let (code, kept) = get(&app, &format!("{base}/kept")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(kept["metadata"]["ownerReferences"], json!([]));
}

#[tokio::test]
async fn core_and_events_k8s_io_events_are_one_store() {
    let (app, _) = app();
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "vm1.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "virt-controller", "reportingInstance": "x",
        "action": "Create", "reason": "SuccessfulCreate", "type": "Normal", "note": "created VMI vm1",
        "regarding": {"kind": "VirtualMachine", "name": "vm1", "namespace": "default", "uid": "u1"}});
    let (code, v) = post(&app, "/apis/events.k8s.io/v1/namespaces/default/events", ev).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["note"], "created VMI vm1");
    // kubectl describe reads core/v1 events by the involved object.
    let (_, list) = get(&app, "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dvm1,involvedObject.kind%3DVirtualMachine").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["message"], "created VMI vm1");
    assert_eq!(items[0]["reportingComponent"], "virt-controller");
    assert_eq!(items[0]["apiVersion"], "v1");
    // And the other way round.
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "pod.2"}, "message": "pulled",
        "reason": "Pulled", "type": "Normal", "count": 2, "involvedObject": {"kind": "Pod", "name": "p"}});
    post(&app, "/api/v1/namespaces/default/events", core).await;
    let (_, v) = get(&app, "/apis/events.k8s.io/v1/namespaces/default/events/pod.2").await;
    assert_eq!(
        (
            v["note"].as_str(),
            v["deprecatedCount"].as_i64(),
            v["regarding"]["name"].as_str()
        ),
        (Some("pulled"), Some(2), Some("p"))
    );
}

#[tokio::test]
async fn namespaces_terminate_after_their_contents() {
    let (app, _) = app();
    post(
        &app,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await;
    let base = "/api/v1/namespaces/team/configmaps";
    post(&app, base, cm("plain", json!({}))).await;
    let mut held = cm("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    post(&app, base, held).await;
    let (code, v) = call(&app, "DELETE", "/api/v1/namespaces/team", None, "").await;
    assert_eq!(
        (code, v["status"]["phase"].as_str()),
        (StatusCode::OK, Some("Terminating"))
    );
    eventually_gone(&app, &format!("{base}/plain")).await;
    let (code, v) = post(&app, base, cm("new", json!({}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        get(&app, "/api/v1/namespaces/team").await.0,
        StatusCode::OK,
        "waits for the finalizer"
    );
    call(
        &app,
        "PATCH",
        &format!("{base}/held"),
        Some(json!({"metadata": {"finalizers": null}})),
        "application/merge-patch+json",
    )
    .await;
    eventually_gone(&app, "/api/v1/namespaces/team").await;
    let (code, _) = call(&app, "DELETE", "/api/v1/namespaces/default", None, "").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pods_are_bound_to_nodes_once() {
    let (app, _) = app();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    post(&app, "/api/v1/namespaces/default/pods", pod).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node1"}});
    let (code, _) = post(&app, "/api/v1/namespaces/default/pods/p/binding", binding.clone()).await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, p) = get(&app, "/api/v1/namespaces/default/pods/p").await;
    assert_eq!(p["spec"]["nodeName"], "node1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, _) = post(&app, "/api/v1/namespaces/default/pods/p/binding", binding).await;
    assert_eq!(code, StatusCode::CONFLICT);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (app, _) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    let mut obj = cm("held", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    post(&app, base, obj).await;
    let (code, v) = call(&app, "DELETE", &format!("{base}/held"), None, "").await;
    assert_eq!(code, StatusCode::OK);
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    // kube-rs finalizer(): JSON patch with test + remove.
    let patch = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/cleanup"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
    let (code, _) = call(
        &app,
        "PATCH",
        &format!("{base}/held"),
        Some(patch),
        "application/json-patch+json",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(get(&app, &format!("{base}/held")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn immutable_fields_are_refused_with_422() {
    let (app, _) = app();
    let mut cm = cm("frozen", json!({}));
    cm["immutable"] = json!(true);
    assert_eq!(
        post(&app, "/api/v1/namespaces/default/configmaps", cm).await.0,
        StatusCode::CREATED
    );
    let (code, status) = call(
        &app,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/frozen",
        Some(json!({"data": {"k": "changed"}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        status["message"],
        "ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    // Labels may still change.
    let (code, _) = call(
        &app,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/frozen",
        Some(json!({"metadata": {"labels": {"x": "y"}}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

/// A delete racing another writer (a controller updating the object meanwhile) is retried on the fresh object, as
/// kube-apiserver's guaranteed update does, instead of answering 409 to a client that sent no preconditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_updates_does_not_conflict() {
    let (app, _store) = app();
    let base = "/api/v1/namespaces/default/configmaps";
    for round in 0..20 {
        let name = format!("raced-{round}");
        let mut obj = cm(&name, json!({}));
        obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
        assert_eq!(post(&app, base, obj).await.0, StatusCode::CREATED);
        let writer = {
            let (app, uri) = (app.clone(), format!("{base}/{name}"));
            tokio::spawn(async move {
                for i in 0..30 {
                    let patch = json!({"data": {"k": i.to_string()}});
                    call(&app, "PATCH", &uri, Some(patch), "application/merge-patch+json").await;
                }
            })
        };
        let (code, body) = call(&app, "DELETE", &format!("{base}/{name}"), None, "").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        writer.await.unwrap();
        let (_, held) = get(&app, &format!("{base}/{name}")).await;
        assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    }
}
