//! External admission webhooks: a webhook server started by the test on loopback (HTTPS, its own CA) is called with
//! AdmissionReviews; its patches, denials, warnings, timeouts and failure policies take effect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{app, call, get, post};
use serde_json::{Value, json};

/// A CA and a serving certificate for 127.0.0.1 signed by it: (ca pem, cert pem, key pem).
fn pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "webhook-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

type Seen = Arc<Mutex<Vec<Value>>>;

async fn webhook_server(cert: String, key: String, seen: Seen) -> SocketAddr {
    use axum::routing::post;
    let record = move |seen: Seen| {
        move |axum::Json(review): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(review.clone());
                review
            }
        }
    };
    let mutate = {
        let rec = record(seen.clone());
        move |body| async move {
            let review = rec(body).await;
            let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated-by": "hook"}}]);
            axum::Json(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                "uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
                "warnings": ["mutated by the test webhook"]}}),
            )
        }
    };
    let validate = {
        let rec = record(seen.clone());
        move |body| async move {
            let review = rec(body).await;
            let forbidden = review.pointer("/request/object/data/forbidden").is_some();
            axum::Json(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                "uid": review["request"]["uid"], "allowed": !forbidden,
                "status": {"code": 422, "message": "data.forbidden is not allowed here"}}}),
            )
        }
    };
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    };
    let router = axum::Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/slow", post(slow));
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
        .await
        .unwrap();
    let handle = axum_server::Handle::new();
    let server =
        axum_server::bind_rustls("127.0.0.1:0".parse::<SocketAddr>().unwrap(), tls).handle(handle.clone());
    tokio::spawn(server.serve(router.into_make_service()));
    handle.listening().await.unwrap()
}

fn hook(name: &str, url: &str, ca: &str, extra: Value) -> Value {
    let mut h = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
    });
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

/// Replaces the ValidatingWebhookConfiguration `name` with one holding `hook`.
async fn replace_validating(app: &axum::Router, name: &str, hook: Value) {
    let _ = call(app, "DELETE", &format!("{VALIDATING}/{name}"), None, "").await;
    let cfg = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": [hook]});
    assert_eq!(post(app, VALIDATING, cfg).await.0, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_webhooks_mutate_validate_and_fail_by_policy() {
    let (app, _store) = app();
    let (ca, cert, key) = pki();
    let seen: Seen = Arc::default();
    let addr = webhook_server(cert, key, seen.clone()).await;
    let base = format!("https://{addr}");

    for ns in [
        json!({"metadata": {"name": "hooked", "labels": {"hooks": "on"}}}),
        json!({"metadata": {"name": "plain"}}),
    ] {
        assert_eq!(post(&app, "/api/v1/namespaces", ns).await.0, StatusCode::CREATED);
    }
    let (code, _) = post(
        &app,
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "labeller"},
            "webhooks": [hook("label.test.io", &format!("{base}/mutate"), &ca,
                json!({"namespaceSelector": {"matchLabels": {"hooks": "on"}}}))]}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = post(
        &app,
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "guard"},
            "webhooks": [hook("guard.test.io", &format!("{base}/validate"), &ca, json!({}))]}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);

    // Mutated in the selected namespace, with the webhook's warning.
    let (code, cm) = post(
        &app,
        "/api/v1/namespaces/hooked/configmaps",
        json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{cm}");
    assert_eq!(cm["metadata"]["labels"]["mutated-by"], "hook");
    let (_, stored) = get(&app, "/api/v1/namespaces/hooked/configmaps/a").await;
    assert_eq!(stored["metadata"]["labels"]["mutated-by"], "hook");
    // Not in the other namespace (namespaceSelector), but still validated.
    let (code, cm) = post(
        &app,
        "/api/v1/namespaces/plain/configmaps",
        json!({"metadata": {"name": "b"}, "data": {"k": "v"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(cm["metadata"].get("labels").is_none(), "{cm}");

    // Denied with the webhook's code and message; nothing stored.
    let (code, status) = post(
        &app,
        "/api/v1/namespaces/plain/configmaps",
        json!({"metadata": {"name": "c"}, "data": {"forbidden": "x"}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(
        status["message"],
        "admission webhook \"guard.test.io\" denied the request: data.forbidden is not allowed here"
    );
    assert_eq!(
        get(&app, "/api/v1/namespaces/plain/configmaps/c").await.0,
        StatusCode::NOT_FOUND
    );
    // Updates are reviewed with the old object.
    let (code, _) = call(
        &app,
        "PATCH",
        "/api/v1/namespaces/plain/configmaps/b",
        Some(json!({"data": {"forbidden": "y"}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    let reviews = seen.lock().unwrap().clone();
    let update = reviews
        .iter()
        .find(|r| r["request"]["operation"] == "UPDATE")
        .expect("an UPDATE review");
    assert_eq!(update["request"]["oldObject"]["metadata"]["name"], "b");
    assert_eq!(update["request"]["namespace"], "plain");
    assert_eq!(
        update["request"]["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(update["request"]["userInfo"]["username"], "kvbox-admin");
    assert_eq!(update["apiVersion"], "admission.k8s.io/v1");
    // Other resources are not sent.
    let before = reviews.len();
    assert_eq!(
        post(
            &app,
            "/api/v1/namespaces/plain/secrets",
            json!({"metadata": {"name": "s"}})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // A webhook that does not answer in time: Ignore lets the write through, Fail refuses it.
    for (policy, name, want) in [
        ("Ignore", "d", StatusCode::CREATED),
        ("Fail", "e", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        replace_validating(
            &app,
            "slow",
            hook(
                "slow.test.io",
                &format!("{base}/slow"),
                &ca,
                json!({"failurePolicy": policy, "timeoutSeconds": 1}),
            ),
        )
        .await;
        let (code, body) = post(
            &app,
            "/api/v1/namespaces/plain/configmaps",
            json!({"metadata": {"name": name}}),
        )
        .await;
        assert_eq!(code, want, "{policy}: {body}");
        if policy == "Fail" {
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("failed calling webhook \"slow.test.io\""),
                "{body}"
            );
        }
    }

    // A webhook whose certificate the caBundle does not trust is a call failure.
    let (other_ca, _, _) = pki();
    let _ = call(&app, "DELETE", &format!("{VALIDATING}/slow"), None, "").await;
    replace_validating(
        &app,
        "untrusted",
        hook(
            "untrusted.test.io",
            &format!("{base}/validate"),
            &other_ca,
            json!({}),
        ),
    )
    .await;
    let (code, body) = post(
        &app,
        "/api/v1/namespaces/plain/configmaps",
        json!({"metadata": {"name": "f"}}),
    )
    .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["message"].as_str().unwrap().contains("TLS"), "{body}");
}
