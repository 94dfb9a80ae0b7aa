//! PATCH: the verb, in each of its content types — JSON merge patch, JSON patch, strategic merge patch for
//! built-ins (the formats themselves: [`crate::patch_formats`]) and server-side apply ([`crate::apply`]).

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::context::{Ctx, decode_body};
use crate::crud;
use crate::objects::from_kv;
use crate::patch_formats::{json_patch, merge_patch, strategic_merge};
use crate::status::ApiError;

const ACCEPTED_CR: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// PATCH an object or its status.
///
/// # Errors
/// 404 when absent (except apply, which creates), 415 for SMP on custom resources, 400/422 for bad patches.
pub fn patch(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let ct = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let name = ctx.path.name.clone().unwrap_or_default();
    let key = ctx.rt.key(ctx.path.namespace.as_deref(), &name);
    let patch = decode_body(&ctx.headers, body)?;
    let is_apply = ct.starts_with("application/apply-patch");
    if is_apply && ctx.query.get("fieldManager").is_none() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[(
                "fieldManager".into(),
                "Required value: is required for apply patch".into(),
                "FieldValueRequired".into(),
            )],
        ));
    }
    if !is_apply && ctx.query.flag("force")? {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[(
                "force".into(),
                "Unsupported value: true: may not be specified for non-apply patch".into(),
                "FieldValueNotSupported".into(),
            )],
        ));
    }
    for attempt in 1..=5 {
        let Some(kv) = ctx.state.store.get(&key)? else {
            if is_apply && ctx.path.subresource.is_none() {
                let manager = ctx.query.get("fieldManager").unwrap_or_default();
                let mut obj = crate::apply::apply(
                    None,
                    &patch,
                    manager,
                    &ctx.rt.api_version(),
                    &crate::objects::now_rfc3339(),
                    true,
                )
                .map_err(|c| ApiError::apply_conflict(&ctx.rt, &name, &c))?;
                obj["metadata"]["name"] = Value::String(name);
                let bytes = Bytes::from(serde_json::to_vec(&obj).map_err(ApiError::internal)?);
                let mut resp = crud::create(ctx, &bytes)?;
                *resp.status_mut() = StatusCode::CREATED;
                return Ok(resp);
            }
            return Err(ApiError::not_found(&ctx.rt, &name));
        };
        let mut obj = from_kv(&ctx.rt, &kv)?;
        if ct.starts_with("application/json-patch+json") {
            json_patch(&mut obj, &patch).map_err(|(code, msg)| match code {
                400 => ApiError::bad_request(msg),
                413 => ApiError::too_large(),
                _ => ApiError::invalid(
                    &ctx.rt.kind,
                    &ctx.rt.group,
                    &name,
                    &[(String::new(), msg, "FieldValueInvalid".into())],
                ),
            })?;
        } else if is_apply {
            let manager = ctx.query.get("fieldManager").unwrap_or_default();
            obj = crate::apply::apply(
                Some(&obj),
                &patch,
                manager,
                &ctx.rt.api_version(),
                &crate::objects::now_rfc3339(),
                ctx.query.flag("force")?,
            )
            .map_err(|c| ApiError::apply_conflict(&ctx.rt, &name, &c))?;
        } else if ct.starts_with("application/merge-patch+json") {
            merge_patch(&mut obj, &patch);
        } else if ct.starts_with("application/strategic-merge-patch+json") {
            if ctx.rt.crd.is_some() {
                return Err(ApiError::unsupported_media(ACCEPTED_CR));
            }
            strategic_merge(&mut obj, &patch);
        } else {
            return Err(ApiError::unsupported_media(ACCEPTED_CR));
        }
        // A patch carries no resourceVersion precondition unless the patch itself set one.
        let patched_rv = patch.pointer("/metadata/resourceVersion").is_some();
        if !patched_rv {
            obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
        }
        // Without a resourceVersion in the patch, a concurrent write is not the client's conflict: like
        // kube-apiserver, apply the patch again to the newer object.
        match crud::write(ctx, obj, false) {
            Err(e) if e.code == 409 && e.reason == "Conflict" && !patched_rv && attempt < 5 => {}
            result => return result,
        }
    }
    Err(ApiError::internal("patch retries exhausted"))
}
