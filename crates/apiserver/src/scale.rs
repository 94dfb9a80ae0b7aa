//! The `scale` subresource (`kubectl scale`, HPA): an `autoscaling/v1` Scale view of a CRD's replica paths.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::context::{Ctx, decode_body};
use crate::crud;
use crate::objects::from_kv;
use crate::patch_formats::merge_patch;
use crate::status::ApiError;
use crate::table::jsonpath;

fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, seg| format!("{acc}/{seg}"))
}

fn scale_of(ctx: &Ctx, obj: &Value) -> Result<Value, ApiError> {
    let paths = ctx.rt.scale.as_ref().ok_or_else(ApiError::method_not_allowed)?;
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| jsonpath(obj, p))
        .unwrap_or(json!(""));
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": jsonpath(obj, &paths.spec_replicas).unwrap_or(json!(0))},
        "status": {"replicas": jsonpath(obj, &paths.status_replicas).unwrap_or(json!(0)), "selector": selector},
    }))
}

fn current(ctx: &Ctx) -> Result<Value, ApiError> {
    let name = ctx.path.name.clone().unwrap_or_default();
    let key = ctx.rt.key(ctx.path.namespace.as_deref(), &name);
    let kv = ctx
        .state
        .store
        .get(&key)?
        .ok_or_else(|| ApiError::not_found(&ctx.rt, &name))?;
    from_kv(&ctx.rt, &kv)
}

/// GET `…/scale`.
///
/// # Errors
/// 404 when absent; 405 without a scale subresource.
pub fn get(ctx: &Ctx) -> Result<Response, ApiError> {
    let obj = current(ctx)?;
    Ok(crate::context::json(StatusCode::OK, &scale_of(ctx, &obj)?))
}

/// PUT or PATCH `…/scale`: sets the replicas path of the object.
///
/// # Errors
/// 404, 405, 400 for a bad body, 409 on a stale resourceVersion.
pub fn write(ctx: &Ctx, body: &Bytes, patch: bool) -> Result<Response, ApiError> {
    let obj = current(ctx)?;
    let mut scale = scale_of(ctx, &obj)?;
    let input = decode_body(&ctx.headers, body)?;
    if patch {
        merge_patch(&mut scale, &input);
    } else {
        scale = input;
    }
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                "autoscaling",
                "",
                &[(
                    "spec.replicas".into(),
                    "Required value".into(),
                    "FieldValueRequired".into(),
                )],
            )
        })?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            "",
            &[(
                "spec.replicas".into(),
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "FieldValueInvalid".into(),
            )],
        ));
    }
    let paths = ctx.rt.scale.as_ref().ok_or_else(ApiError::method_not_allowed)?;
    let mut new = obj;
    let ptr = pointer(&paths.spec_replicas);
    match new.pointer_mut(&ptr) {
        Some(slot) => *slot = json!(replicas),
        None => {
            let mut patch = json!(replicas);
            for seg in ptr.trim_start_matches('/').rsplit('/') {
                patch = json!({ seg: patch });
            }
            merge_patch(&mut new, &patch);
        }
    }
    if let Some(rv) = scale.pointer("/metadata/resourceVersion").cloned() {
        new["metadata"]["resourceVersion"] = rv;
    }
    // A `scale` write is a main-resource write of the replicas field (only `status` writes are status-only).
    crud::write(ctx, new, false)?;
    get(ctx)
}
