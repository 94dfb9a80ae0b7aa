//! PATCH: JSON merge patch (RFC 7386), JSON patch (RFC 6902 with Kubernetes' `test`-on-missing = null), strategic
//! merge patch for built-ins, and server-side apply.
//!
//! Written by hand because the semantics Kubernetes clients depend on differ from the `json-patch` crate's (a `test`
//! of a missing path against `null` succeeds; kube-rs finalizers rely on it).
//! Simplifications, for now: strategic merge patch is applied as a merge patch (lists replaced whole, directives
//! ignored), and apply patches merge the intent without field ownership (no managedFields, no conflicts).

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::app::{Ctx, decode_body};
use crate::crud;
use crate::objects::from_kv;
use crate::status::ApiError;

const ACCEPTED_CR: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {pointer:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<(&'a mut Value, String), String> {
    let (last, head) = toks.split_last().ok_or("the root cannot be the target")?;
    let mut cur = doc;
    for t in head {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("missing path element {t:?}"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("invalid array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into {t:?}")),
        };
    }
    Ok((cur, last.clone()))
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    toks.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, toks: &[String], value: Value) -> Result<(), String> {
    if toks.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, toks)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index {i} out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the parent is not a container".into()),
    }
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, String> {
    let (parent, last) = parent_mut(doc, toks)?;
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(|| format!("missing path {last:?}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            (i < a.len())
                .then(|| a.remove(i))
                .ok_or_else(|| format!("array index {i} out of range"))
        }
        _ => Err("the parent is not a container".into()),
    }
}

/// RFC 6902 with Kubernetes' semantics. Errors are `(http code, message)`: 400 for malformed patches, 422 for failed
/// operations.
///
/// # Errors
/// As described.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), (u16, String)> {
    let ops = ops
        .as_array()
        .ok_or((400, "a JSON patch must be an array of operations".to_string()))?;
    if ops.len() > 10_000 {
        return Err((413, "the JSON patch has more than 10000 operations".into()));
    }
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or((400, "a JSON patch operation needs \"op\"".to_string()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or((400, format!("{kind} operation needs \"path\"")))?;
        let toks = tokens(path).map_err(|e| (400, e))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or((400, format!("{kind} operation needs \"value\"")))
        };
        let from = || -> Result<Vec<String>, (u16, String)> {
            tokens(
                op.get("from")
                    .and_then(Value::as_str)
                    .ok_or((400, format!("{kind} operation needs \"from\"")))?,
            )
            .map_err(|e| (400, e))
        };
        let r = match kind {
            "add" => add(doc, &toks, value()?),
            "remove" => remove(doc, &toks).map(|_| ()),
            "replace" => {
                if get(doc, &toks).is_none() {
                    Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                } else {
                    remove(doc, &toks).and_then(|_| add(doc, &toks, value().map_err(|e| e.1)?))
                }
            }
            "move" => {
                let f = from()?;
                remove(doc, &f).and_then(|v| add(doc, &toks, v))
            }
            "copy" => {
                let f = from()?;
                match get(doc, &f).cloned() {
                    Some(v) => add(doc, &toks, v),
                    None => Err("copy operation does not apply: missing from path".into()),
                }
            }
            "test" => {
                let want = value()?;
                let have = get(doc, &toks).cloned().unwrap_or(Value::Null);
                if have == want {
                    Ok(())
                } else {
                    Err(format!("testing value {path} failed"))
                }
            }
            other => return Err((400, format!("unknown JSON patch operation {other:?}"))),
        };
        r.map_err(|e| (422, e))?;
    }
    Ok(())
}

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
    let Some(kv) = ctx.state.store.get(&key)? else {
        if is_apply && ctx.path.subresource.is_none() {
            let mut obj = patch;
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
    } else if ct.starts_with("application/merge-patch+json") || is_apply {
        merge_patch(&mut obj, &patch);
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        if ctx.rt.crd.is_some() {
            return Err(ApiError::unsupported_media(ACCEPTED_CR));
        }
        merge_patch(&mut obj, &patch);
    } else {
        return Err(ApiError::unsupported_media(ACCEPTED_CR));
    }
    // A patch carries no resourceVersion precondition unless the patch itself set one.
    let patched_rv = patch.pointer("/metadata/resourceVersion").is_some();
    if !patched_rv {
        obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
    }
    crud::write(ctx, obj, false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_with_kubernetes_test_semantics() {
        let mut doc = json!({"metadata": {"name": "x"}});
        // kube-rs finalizer(): test that the missing list is null, then add it.
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "g"},
                {"op": "test", "path": "/metadata/finalizers/0", "value": "f"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
                {"op": "replace", "path": "/metadata/name", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"name": "y", "generateName": "x", "finalizers": ["g"]}})
        );
        assert_eq!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/metadata/name", "value": "z"}])
            )
            .unwrap_err()
            .0,
            422
        );
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .0,
            422
        );
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "add", "path": "/a/b", "value": 1}]))
                .unwrap_err()
                .0,
            422
        );
        assert_eq!(json_patch(&mut doc, &json!({"op": "add"})).unwrap_err().0, 400);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "frobnicate", "path": "/x"}]))
                .unwrap_err()
                .0,
            400
        );
    }
}
