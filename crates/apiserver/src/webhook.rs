//! External admission webhooks: objects written through the API are sent, as `admission.k8s.io/v1` AdmissionReviews,
//! to the webhooks registered by MutatingWebhookConfiguration and ValidatingWebhookConfiguration objects.
//!
//! 1. Mutating webhooks run first (configurations and their webhooks in name order, as kube-apiserver orders them);
//!    a JSONPatch in the response is applied to the object. Then built-in admission, then validating webhooks.
//! 2. A webhook matches by `rules` (operations, apiGroups, apiVersions, resources incl. `*` and `res/sub`, scope),
//!    `objectSelector` and `namespaceSelector` (label selectors).
//! 3. A webhook is reached at `clientConfig.url`, or at `clientConfig.service` through that Service's Endpoints (the
//!    certificate must then name `NAME.NAMESPACE.svc`, as in a cluster), over HTTPS, trusting `clientConfig.caBundle`,
//!    with a deadline of `timeoutSeconds` (default 10). Failures obey `failurePolicy` (default `Fail`: the request is refused with 500).
//! 4. A denial becomes the response's `status` (code, default 403), message `admission webhook "NAME" denied the
//!    request: …`; `warnings` are passed to the client.
//!
//! Not supported: `matchConditions` (CEL; a webhook with them is called for every rule match), `reinvocationPolicy`
//! (no second pass), DELETE and CONNECT operations.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::patch_formats::json_patch;
use crate::selectors::{labels_match, parse_selector_object};
use crate::status::ApiError;
use crate::webhook_cache::Phase;

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether one rule covers this request.
fn rule_matches(rule: &Value, ctx: &Ctx, operation: &str) -> bool {
    let resource = match ctx.path.subresource.as_deref() {
        Some(sub) => format!("{}/{sub}", ctx.rt.plural),
        None => ctx.rt.plural.clone(),
    };
    let resources = strs(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        *r == "*/*"
            || *r == resource
            || (*r == "*" && ctx.path.subresource.is_none())
            || r.strip_suffix("/*")
                .is_some_and(|p| p == ctx.rt.plural && ctx.path.subresource.is_some())
            || r.strip_prefix("*/")
                .is_some_and(|s| Some(s) == ctx.path.subresource.as_deref())
    });
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => ctx.rt.namespaced,
        "Cluster" => !ctx.rt.namespaced,
        _ => true,
    };
    has(&strs(rule.get("operations")), operation)
        && has(&strs(rule.get("apiGroups")), &ctx.rt.group)
        && has(&strs(rule.get("apiVersions")), &ctx.rt.version)
        && resource_ok
        && scope_ok
}

fn selector_matches(selector: Option<&Value>, labels: Option<&serde_json::Map<String, Value>>) -> bool {
    match selector {
        None => true,
        Some(sel) => parse_selector_object(sel).is_ok_and(|reqs| labels_match(&reqs, labels)),
    }
}

fn webhook_matches(hook: &Value, ctx: &Ctx, operation: &str, obj: &Value) -> Result<bool, ApiError> {
    let rules = hook
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !rules.iter().any(|r| rule_matches(r, ctx, operation)) {
        return Ok(false);
    }
    if !selector_matches(
        hook.get("objectSelector"),
        obj.pointer("/metadata/labels").and_then(Value::as_object),
    ) {
        return Ok(false);
    }
    if let (Some(sel), Some(ns)) = (hook.get("namespaceSelector"), ctx.path.namespace.as_deref()) {
        let ns_obj = crate::object_store::Resource::core("namespaces")
            .get(&ctx.state.store, None, ns)?
            .unwrap_or_default();
        let mut labels = ns_obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), json!(ns));
        if !selector_matches(Some(sel), Some(&labels)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn review(ctx: &Ctx, uid: &str, operation: &str, obj: &Value, old: Option<&Value>) -> Value {
    let gvk = json!({"group": ctx.rt.group, "version": ctx.rt.version, "kind": ctx.rt.kind});
    let gvr = json!({"group": ctx.rt.group, "version": ctx.rt.version, "resource": ctx.rt.plural});
    let mut req = json!({
        "uid": uid,
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "operation": operation,
        "userInfo": {"username": ctx.identity.user, "groups": ctx.identity.groups},
        "object": obj,
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": ctx.query.get("dryRun") == Some("All"),
        "options": {"apiVersion": "meta.k8s.io/v1",
            "kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }},
    });
    if let Some(ns) = &ctx.path.namespace {
        req["namespace"] = json!(ns);
    }
    if let Some(sub) = &ctx.path.subresource {
        req["subResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// Why a call failed (before `failurePolicy` decides what that means).
type CallError = String;

/// Where a webhook is reached: the address to connect to, the name its certificate must carry, the request path.
struct Target {
    host: String,
    port: u16,
    server_name: String,
    path: String,
}

fn url_target(url: &str) -> Result<Target, CallError> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("webhook url {url:?} must use https"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("webhook url {url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Target {
        port: uri.port_u16().unwrap_or(443),
        server_name: host.clone(),
        host,
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    })
}

/// `clientConfig.service`: the Service's endpoint (as API aggregation reaches it), verified as `NAME.NS.svc`.
fn service_target(ctx: &Ctx, svc: &Value) -> Result<Target, CallError> {
    let s = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (ns, name) = (s("namespace"), s("name"));
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    let addr =
        crate::aggregator::service_address(&ctx.state, &ns, &name, port).map_err(|e| e.message.clone())?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad endpoint address {addr}"))?;
    Ok(Target {
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port: port.parse().map_err(|_| format!("bad endpoint address {addr}"))?,
        server_name: format!("{name}.{ns}.svc"),
        path: svc.get("path").and_then(Value::as_str).unwrap_or("/").to_string(),
    })
}

async fn post(t: Target, ca_bundle: Option<&[u8]>, body: Vec<u8>) -> Result<Value, CallError> {
    let Target {
        host,
        port,
        server_name,
        path,
    } = t;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_bundle.unwrap_or_default()) {
        let c = c.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(c).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.clone()).map_err(|e| format!("{server_name}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post(path.as_str())
        .header(http::header::HOST, format!("{server_name}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the response is not an AdmissionReview: {e}"))
}

/// Calls one webhook; `Ok(None)` when it failed and `failurePolicy: Ignore` lets the request through.
fn call(ctx: &Ctx, hook: &Value, review: &Value) -> Result<Option<Value>, ApiError> {
    let name = hook.get("name").and_then(Value::as_str).unwrap_or_default();
    let timeout = hook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    let cc = hook.get("clientConfig").cloned().unwrap_or_default();
    let ca = cc
        .get("caBundle")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let target = match (
        cc.get("url").and_then(Value::as_str),
        cc.get("service").filter(|s| !s.is_null()),
    ) {
        (Some(url), _) => url_target(url),
        (None, Some(svc)) => service_target(ctx, svc),
        (None, None) => Err("clientConfig has neither url nor service".into()),
    };
    let result: Result<Value, CallError> = match target {
        Err(e) => Err(e),
        Ok(target) => {
            let body = serde_json::to_vec(review).unwrap_or_default();
            let fut = tokio::time::timeout(Duration::from_secs(timeout), post(target, ca.as_deref(), body));
            match tokio::runtime::Handle::try_current() {
                Ok(h) => h
                    .block_on(fut)
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout}s"))),
                Err(_) => Err("no async runtime to call the webhook from".into()),
            }
        }
    };
    match result {
        Ok(v) => Ok(Some(v)),
        Err(why) if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") => {
            tracing::warn!(webhook = name, error = %why, "ignoring a failed admission webhook");
            Ok(None)
        }
        Err(why) => Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{name}\": {why}"
        ))),
    }
}

/// Runs the webhooks of `phase` matching this request; returns the (possibly patched) object and their warnings.
///
/// # Errors
/// A webhook denied the request (its status, default 403), failed under `failurePolicy: Fail` (500), or returned a
/// patch that does not apply (500).
pub fn run(
    ctx: &Ctx,
    phase: Phase,
    operation: &str,
    mut obj: Value,
    old: Option<&Value>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    if ctx.rt.group == "admissionregistration.k8s.io" {
        return Ok((obj, warnings));
    }
    for hook in ctx.state.webhooks.get(&ctx.state.store, phase)?.iter() {
        if !webhook_matches(hook, ctx, operation, &obj)? {
            continue;
        }
        let name = hook
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let uid = uuid::Uuid::new_v4().to_string();
        let Some(answer) = call(ctx, hook, &review(ctx, &uid, operation, &obj, old))? else {
            continue;
        };
        let resp = answer.get("response").cloned().unwrap_or_default();
        warnings.extend(strs(resp.get("warnings")).into_iter().map(str::to_string));
        if resp.get("allowed").and_then(Value::as_bool) != Some(true) {
            let status = resp.get("status").cloned().unwrap_or_default();
            let code = status.get("code").and_then(Value::as_u64).unwrap_or(403);
            let message = status.get("message").and_then(Value::as_str).unwrap_or_default();
            let reason = status.get("reason").and_then(Value::as_str).unwrap_or_default();
            return Err(ApiError::webhook_denied(
                u16::try_from(code).unwrap_or(403),
                &format!("admission webhook \"{name}\" denied the request: {message}"),
                reason,
            ));
        }
        if phase == Phase::Mutating
            && let Some(patch) = resp.get("patch").and_then(Value::as_str)
        {
            let bad = |why: String| {
                ApiError::internal(format!(
                    "Internal error occurred: admission webhook \"{name}\" returned {why}"
                ))
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .map_err(|e| bad(format!("a patch that is not base64: {e}")))?;
            let ops: Value =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("a patch that is not JSON: {e}")))?;
            json_patch(&mut obj, &ops).map_err(|(_, e)| bad(format!("a patch that does not apply: {e}")))?;
        }
    }
    Ok((obj, warnings))
}
