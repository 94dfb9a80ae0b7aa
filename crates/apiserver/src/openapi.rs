//! OpenAPI v3, as much as clients use: the index of group-versions (`/openapi/v3`) and one document per group-version
//! with a PATCH operation per kind (its `fieldValidation` parameter makes kubectl validate on the server) and the
//! kind's schema under `components.schemas` (`kubectl explain`). Built-in kinds are described as open objects; CRD
//! kinds by their structural schema. Strategic merge patch is not advertised, so kubectl falls back to its compiled-in
//! types for built-ins and to merge patches for custom resources.

use std::hash::{Hash as _, Hasher as _};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::context::Shared;
use crate::registry::ResourceType;
use crate::status::ApiError;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn schema_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", t.version, t.kind)
}

/// The document of one group-version.
#[must_use]
pub fn document(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = format!("/{}", gv_path(group, version));
        let item = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(t))});
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", t.kind),
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": verb,
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                ],
                "requestBody": {"content": {
                    "application/json-patch+json": {"schema": {"type": "object"}},
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                    "application/apply-patch+yaml": {"schema": {"type": "object"}},
                }},
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            })
        };
        paths.insert(item, json!({"patch": op("patch"), "get": op("get")}));
        let mut schema = t.schema.clone().unwrap_or_else(|| {
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}})
        });
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        if schema.get("description").is_none() {
            schema["description"] = json!(format!("{} ({}).", t.kind, t.api_version()));
        }
        schemas.insert(schema_name(t), schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0+kvbox"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn hash(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `GET /openapi/v3`.
pub async fn index(State(state): State<Shared>) -> Response {
    let types = state.registry.all();
    let mut paths = serde_json::Map::new();
    for (group, versions) in state.registry.groups() {
        for v in versions {
            let p = gv_path(&group, &v);
            let h = hash(&document(&types, &group, &v));
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
            );
        }
    }
    Json(json!({"paths": paths})).into_response()
}

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/G/V`.
pub async fn group_version(State(state): State<Shared>, Path(rest): Path<String>) -> Response {
    let parts: Vec<&str> = rest.split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => (String::new(), (*v).to_string()),
        ["apis", g, v] => ((*g).to_string(), (*v).to_string()),
        _ => return ApiError::no_route().into_response(),
    };
    let types = state.registry.all();
    if !types.iter().any(|t| t.group == group && t.version == version) {
        return ApiError::no_route().into_response();
    }
    let mut resp = Json(document(&types, &group, &version)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    resp
}
