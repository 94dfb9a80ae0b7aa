//! DELETE and deletecollection: DeleteOptions, preconditions, propagation (foreground/orphan finalizers), graceful
//! pod deletion, finalizer-held objects marked rather than removed, and retries when another writer raced the delete.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::context::{Ctx, decode_body, json};
use crate::crud::{dry_run, key, map_conflict, name, select};
use crate::objects::{self, finalizers, from_kv, meta_mut, meta_str, to_bytes_for};
use crate::status::ApiError;
use crate::{admit, table};

/// DeleteOptions from the body (kubectl, kube-rs) and the query (Python).
fn delete_options(ctx: &Ctx, body: &Bytes) -> Result<Value, ApiError> {
    let mut opts = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode_body(&ctx.headers, body)?
    };
    if let Some(p) = ctx.query.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
        opts["gracePeriodSeconds"] = json!(g);
    }
    Ok(opts)
}

/// DELETE one object: immediate, or marked for deletion while finalizers remain.
///
/// # Errors
/// 404 when absent; 409 when a precondition fails.
pub fn delete(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let opts = delete_options(ctx, body)?;
    delete_one(ctx, &key(ctx), name(ctx), &opts)
}

pub(crate) fn delete_one(ctx: &Ctx, key: &str, name: &str, opts: &Value) -> Result<Response, ApiError> {
    // As kube-apiserver's guaranteed update: a write that raced this one (a controller's status update) is read
    // again rather than failing the delete; a failed precondition fails every attempt alike.
    let mut attempt = 0;
    loop {
        match delete_attempt(ctx, key, name, opts) {
            Err(e) if e.code == 409 && attempt < 16 => attempt += 1,
            done => return done,
        }
    }
}

fn delete_attempt(ctx: &Ctx, key: &str, name: &str, opts: &Value) -> Result<Response, ApiError> {
    let kv = ctx
        .state
        .store
        .get(key)?
        .ok_or_else(|| ApiError::not_found(&ctx.rt, name))?;
    let mut obj = from_kv(&ctx.rt, &kv)?;
    if let Some(pre) = opts.get("preconditions") {
        let uid_ok = pre
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(|u| Some(u) == meta_str(&obj, "uid"));
        let rv_ok = pre
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_none_or(|r| r == kv.mod_revision.to_string());
        if !uid_ok || !rv_ok {
            return Err(ApiError::conflict(&ctx.rt, name));
        }
    }
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Background");
    let orphan = policy == "Orphan" || opts.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let mut fins = finalizers(&obj);
    match policy {
        "Foreground" if !fins.iter().any(|f| f == "foregroundDeletion") => {
            fins.push("foregroundDeletion".into())
        }
        _ if orphan && !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
        _ => {}
    }
    if dry_run(ctx) {
        return Ok(table::respond(ctx, StatusCode::OK, obj, false));
    }
    // A namespace always terminates first: its contents are deleted (finalizers honoured) before it goes.
    let strategy = crate::strategy::of(&ctx.rt);
    let deletion = strategy.deletion(ctx, &obj, opts)?;
    let (namespace, grace) = (deletion.terminate, deletion.grace);
    if !fins.is_empty() || namespace || grace.is_some() {
        if namespace {
            obj["status"] = json!({"phase": "Terminating"});
        }
        let meta = meta_mut(&mut obj)?;
        let shorter = |g: i64| {
            meta.get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|old| g < old)
        };
        match grace {
            // A running pod's kubelet gets the grace period to stop it, then deletes it for good (grace 0);
            // a second delete may only shorten the period.
            Some(g) if !meta.contains_key("deletionTimestamp") || shorter(g) => {
                let at = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(g))
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                meta.insert("deletionTimestamp".into(), json!(objects::rfc3339(at)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(g));
            }
            Some(_) => {}
            None if !meta.contains_key("deletionTimestamp") => {
                meta.insert("deletionTimestamp".into(), json!(objects::now_rfc3339()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            None => {}
        }
        if !fins.is_empty() {
            meta.insert("finalizers".into(), json!(fins));
        }
        let kv = ctx
            .state
            .store
            .update(key, to_bytes_for(&ctx.rt, &obj)?, kv.mod_revision)
            .map_err(|e| map_conflict(ctx, e))?;
        let obj = from_kv(&ctx.rt, &kv)?;
        admit::after_write(ctx, &obj)?;
        return Ok(table::respond(ctx, StatusCode::OK, obj, false));
    }
    let kv = ctx
        .state
        .store
        .delete(key, Some(kv.mod_revision))
        .map_err(|e| map_conflict(ctx, e))?;
    let obj = from_kv(&ctx.rt, &kv)?;
    admit::after_delete(ctx, &obj)?;
    if crate::strategy::of(&ctx.rt).delete_returns_object() {
        return Ok(json(StatusCode::OK, &obj));
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": ctx.rt.group, "kind": ctx.rt.plural, "uid": meta_str(&obj, "uid")},
        }),
    ))
}

/// DELETE a collection (with selectors).
///
/// # Errors
/// 400 for bad selectors.
pub fn delete_collection(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let opts = delete_options(ctx, body)?;
    let (items, rv, _) = select(ctx)?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = meta_str(&obj, "namespace").map(String::from);
        let key = ctx.rt.key(ns.as_deref(), &name);
        match delete_one(ctx, &key, &name, &opts) {
            Ok(_) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", ctx.rt.kind),
            "apiVersion": ctx.rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": deleted,
        }),
    ))
}
