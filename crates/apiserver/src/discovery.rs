//! Discovery: `/version`, legacy (`/api`, `/api/v1`, `/apis`, `/apis/G`, `/apis/G/V`) and aggregated v2 (`/api`, `/apis`
//! with the `apidiscovery.k8s.io` Accept), generated from the registry so a new CRD is discoverable at once.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::context::ApiState;
use crate::registry::ResourceType;
use crate::request::Target;
use crate::status::ApiError;

/// `/version`: minor 32, so the kubectl dispatcher picks kubectl 1.32.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0+kvbox-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "kubevirt-rs",
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    }))
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Whether the client asks for aggregated discovery (v2).
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    crate::table::prefers(headers, "as=APIGroupDiscoveryList")
}

/// Serves a discovery path.
///
/// # Errors
/// 404 for unknown groups or versions.
pub fn serve(
    state: &ApiState,
    target: &Target,
    headers: &HeaderMap,
    remote: &[crate::upstreams::Group],
) -> Result<Response, ApiError> {
    let all = state.registry.all();
    match target {
        Target::CoreVersions if wants_aggregated(headers) => Ok(aggregated(&all, true, &[])),
        Target::Groups if wants_aggregated(headers) => Ok(aggregated(&all, false, remote)),
        Target::CoreVersions => Ok(Json(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }))
        .into_response()),
        Target::Groups => {
            let groups: Vec<Value> = state
                .registry
                .groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| group_json(&g, &vs))
                .chain(remote.iter().map(|r| group_json(&r.name, &remote_versions(r))))
                .collect();
            Ok(Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response())
        }
        Target::Group(g) => {
            let (_, vs) = state
                .registry
                .groups()
                .into_iter()
                .find(|(name, _)| name == g)
                .or_else(|| {
                    remote
                        .iter()
                        .find(|r| &r.name == g)
                        .map(|r| (r.name.clone(), remote_versions(r)))
                })
                .ok_or_else(ApiError::no_route)?;
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            Ok(Json(v).into_response())
        }
        Target::GroupVersion(g, v) => {
            let types: Vec<&ResourceType> = all.iter().filter(|t| &t.group == g && &t.version == v).collect();
            if types.is_empty() {
                return Err(ApiError::no_route());
            }
            let mut resources = Vec::new();
            for t in types {
                resources.push(json!({
                    "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                    "verbs": VERBS, "shortNames": t.short_names, "categories": t.categories,
                }));
                if t.status {
                    resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
                }
                if t.group.is_empty() && t.plural == "pods" {
                    resources.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
                }
                if t.scale.is_some() {
                    resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
                }
            }
            let gv = if g.is_empty() {
                v.clone()
            } else {
                format!("{g}/{v}")
            };
            Ok(Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})).into_response())
        }
        Target::Resource(_) => Err(ApiError::no_route()),
    }
}

fn remote_versions(r: &crate::upstreams::Group) -> Vec<String> {
    r.versions.iter().map(|(v, _)| v.clone()).collect()
}

fn group_json(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// An aggregated group's entry: each version's resources from the backend's APIResourceList (`name` `a/b` is
/// subresource `b` of `a`); a version whose backend could not answer is `Stale` and empty.
fn remote_entry(r: &crate::upstreams::Group) -> Value {
    let versions: Vec<Value> = r
        .versions
        .iter()
        .map(|(v, list)| {
            let Some(list) = list.as_ref().and_then(Value::as_array) else {
                return json!({"version": v, "freshness": "Stale", "resources": []});
            };
            let mut resources: Vec<Value> = Vec::new();
            for item in list {
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                let scope = if item.get("namespaced").and_then(Value::as_bool).unwrap_or(true) { "Namespaced" } else { "Cluster" };
                let kind = json!({"group": r.name, "version": v, "kind": item.get("kind").cloned().unwrap_or_default()});
                let verbs = item.get("verbs").cloned().unwrap_or_else(|| json!([]));
                match name.split_once('/') {
                    None => resources.push(json!({"resource": name, "responseKind": kind, "scope": scope,
                        "singularResource": item.get("singularName").cloned().unwrap_or_default(), "verbs": verbs, "subresources": []})),
                    Some((parent, sub)) => {
                        let entry = json!({"subresource": sub, "responseKind": kind, "verbs": verbs});
                        match resources.iter_mut().find(|x| x["resource"] == parent) {
                            Some(x) => {
                                if let Some(a) = x["subresources"].as_array_mut() {
                                    a.push(entry);
                                }
                            }
                            None => resources.push(json!({"resource": parent, "responseKind": kind, "scope": scope,
                                "singularResource": "", "verbs": [], "subresources": [entry]})),
                        }
                    }
                }
            }
            json!({"version": v, "freshness": "Current", "resources": resources})
        })
        .collect();
    json!({"metadata": {"name": r.name}, "versions": versions})
}

fn aggregated(all: &[ResourceType], core: bool, remote: &[crate::upstreams::Group]) -> Response {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in all.iter().filter(|t| t.group.is_empty() == core) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, mut vs)| {
            vs.sort_by_key(|v| std::cmp::Reverse(crate::registry::version_priority(v)));
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(|t| {
                            let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
                            let mut subs = Vec::new();
                            if t.status {
                                subs.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
                            }
                            if t.scale.is_some() {
                                subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
                            }
                            json!({
                                "resource": t.plural, "responseKind": kind,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular, "verbs": VERBS,
                                "shortNames": t.short_names, "categories": t.categories, "subresources": subs,
                            })
                        })
                        .collect();
                    json!({"version": v, "freshness": "Current", "resources": resources})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .chain(remote.iter().map(remote_entry))
        .collect();
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
    );
    resp
}
