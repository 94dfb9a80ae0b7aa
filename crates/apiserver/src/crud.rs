//! get, list, create, update, pods' binding and access reviews (delete and deletecollection: [`crate::delete`]).

use apiserver_store::{ListOptions, StoreError};
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::context::{Ctx, decode_body, json};
use crate::objects::{self, finalizers, from_kv, meta_mut, meta_str, spec_part, to_bytes_for};
use crate::selectors::{fields_match, labels_match, parse_fields, parse_labels};
use crate::status::ApiError;
use crate::{admit, table};

pub(crate) fn name(ctx: &Ctx) -> &str {
    ctx.path.name.as_deref().unwrap_or_default()
}

pub(crate) fn key(ctx: &Ctx) -> String {
    ctx.rt.key(ctx.path.namespace.as_deref(), name(ctx))
}

/// GET one object (also `/status`).
///
/// # Errors
/// 404 when absent.
pub fn get(ctx: &Ctx) -> Result<Response, ApiError> {
    let kv = ctx
        .state
        .store
        .get(&key(ctx))?
        .ok_or_else(|| ApiError::not_found(&ctx.rt, name(ctx)))?;
    let obj = from_kv(&ctx.rt, &kv)?;
    Ok(table::respond(ctx, StatusCode::OK, obj, false))
}

/// The continue token: base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":"<last key>"}`.
fn encode_continue(rv: i64, start: &str) -> String {
    let t = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

/// The objects a list selects, and the revision and continue token of the page.
pub(crate) fn select(ctx: &Ctx) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
    let mut items = Vec::new();
    let (rv, cont) = select_each(ctx, |obj| {
        items.push(obj);
        Ok(())
    })?;
    Ok((items, rv, cont))
}

/// Lists like [`select`] but hands each matching object to `each` as it is decoded, so nothing holds them all.
fn select_each(
    ctx: &Ctx,
    mut each: impl FnMut(Value) -> Result<(), ApiError>,
) -> Result<(i64, Option<String>), ApiError> {
    let labels =
        parse_labels(ctx.query.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields = parse_fields(ctx.query.get("fieldSelector").unwrap_or_default(), &ctx.rt.kind)
        .map_err(ApiError::bad_request)?;
    let filtered = !labels.is_empty() || !fields.is_empty();
    let mut opts = ListOptions::default();
    if let Some(token) = ctx.query.get("continue") {
        let (rv, start) = decode_continue(token)?;
        opts.revision = Some(rv);
        opts.start_after = Some(start);
    } else if let Some(rv) = ctx.query.get("resourceVersion").filter(|r| *r != "0") {
        let rv: i64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if ctx.query.get("resourceVersionMatch") == Some("Exact") {
            opts.revision = Some(rv);
        } else if rv > ctx.state.store.revision()? {
            return Err(ApiError::too_large_rv(rv));
        }
    }
    // With selectors the whole set is filtered here; the page limit applies only to unfiltered lists.
    let limit = ctx
        .query
        .int("limit")?
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| *l > 0 && !filtered);
    opts.limit = limit;
    let prefix = ctx.rt.prefix_in(ctx.path.namespace.as_deref());
    let page = ctx.state.store.list(&prefix, &opts)?;
    for kv in &page.items {
        let obj = from_kv(&ctx.rt, kv)?;
        let lbl = obj.pointer("/metadata/labels").and_then(Value::as_object);
        if labels_match(&labels, lbl) && fields_match(&fields, &obj) {
            each(obj)?;
        }
    }
    let cont = if page.more {
        page.items
            .last()
            .map(|kv| encode_continue(page.revision, &kv.key))
    } else {
        None
    };
    Ok((page.revision, cont))
}

/// GET a collection.
///
/// # Errors
/// 400 for bad selectors or tokens; 410 for an expired continue token.
pub fn list(ctx: &Ctx) -> Result<Response, ApiError> {
    if !table::wants_table(&ctx.headers) {
        // Encoded item by item: a large list costs its encoded bytes, not every object as a tree at once.
        let mut body = format!(
            "{{\"kind\":{},\"apiVersion\":{},\"items\":[",
            json!(format!("{}List", ctx.rt.kind)),
            json!(ctx.rt.api_version())
        )
        .into_bytes();
        let mut first = true;
        let (rv, cont) = select_each(ctx, |obj| {
            if !std::mem::take(&mut first) {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, &obj).map_err(ApiError::internal)
        })?;
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(c) = cont {
            meta["continue"] = json!(c);
        }
        body.extend_from_slice(format!("],\"metadata\":{meta}}}").as_bytes());
        let mut resp = Response::new(axum::body::Body::from(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let (items, rv, cont) = select(ctx)?;
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let list = json!({
        "kind": format!("{}List", ctx.rt.kind),
        "apiVersion": ctx.rt.api_version(),
        "metadata": meta,
        "items": items,
    });
    Ok(table::respond(ctx, StatusCode::OK, list, true))
}

pub(crate) fn dry_run(ctx: &Ctx) -> bool {
    ctx.query.get("dryRun") == Some("All")
}

fn check_namespace(ctx: &Ctx) -> Result<(), ApiError> {
    let Some(ns) = ctx.path.namespace.as_deref().filter(|_| ctx.rt.namespaced) else {
        return Ok(());
    };
    match crate::object_store::Resource::core("namespaces").get(&ctx.state.store, None, ns)? {
        None => Err(ApiError::namespace_not_found(ns)),
        Some(nsobj) => {
            if nsobj.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError {
                    code: 403,
                    reason: "Forbidden",
                    message: format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        ctx.rt.qualified(),
                        ""
                    ),
                    details: None,
                });
            }
            Ok(())
        }
    }
}

fn check_type(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str);
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != ctx.rt.kind) || api_version.is_some_and(|a| a != ctx.rt.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or the kind ({}) does not match {}",
            api_version.unwrap_or_default(),
            ctx.rt.api_version(),
            kind.unwrap_or_default(),
            ctx.rt.kind
        )));
    }
    Ok(())
}

/// Unknown fields of custom resources under the request's `fieldValidation` (Strict, Warn — the default — or Ignore).
///
/// # Errors
/// 400 `strict decoding error` under Strict; 400 for an unknown mode.
pub(crate) fn field_validation(ctx: &Ctx, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let Some(schema) = ctx.rt.schema.as_ref() else {
        return Ok(Vec::new());
    };
    let mode = ctx.query.get("fieldValidation").unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation: Invalid value: {mode:?}: must be one of Strict, Warn or Ignore"
        )));
    }
    let mut found = Vec::new();
    crate::fields::unknown(schema, obj, "", mode != "Strict", &mut found);
    crate::fields::apply_defaults(schema, obj);
    let mut problems = Vec::new();
    crate::fields::check(schema, obj, "", &mut problems);
    if !problems.is_empty() {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let causes: Vec<(String, String, String)> = problems
            .into_iter()
            .map(|(f, m)| {
                let reason = if m == "Required value" {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                };
                (f, m, reason.to_string())
            })
            .collect();
        return Err(ApiError::invalid(&ctx.rt.kind, &ctx.rt.group, &name, &causes));
    }
    let described: Vec<String> = found.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match mode {
        "Strict" if !found.is_empty() => Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            described.join(", "),
            kind = ctx.rt.kind,
            v = ctx.rt.version
        ))),
        "Ignore" => Ok(Vec::new()),
        _ => Ok(described),
    }
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = header::HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "'"))) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// The field manager of a non-apply write: `fieldManager`, else the User-Agent's program name (as Kubernetes does).
fn field_manager(ctx: &Ctx) -> String {
    if let Some(m) = ctx.query.get("fieldManager") {
        return m.to_string();
    }
    let ua = ctx
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/').next().unwrap_or(ua).chars().take(128).collect()
}

/// Records a create/update/patch (not an apply, which records itself) in `managedFields`.
fn track_fields(ctx: &Ctx, old: Option<&Value>, new: &mut Value) {
    let is_apply = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    if !is_apply {
        crate::apply::record_update(
            old,
            new,
            &field_manager(ctx),
            &ctx.rt.api_version(),
            &crate::objects::now_rfc3339(),
        );
    }
}

/// POST to a collection.
///
/// # Errors
/// 400/415 for bad bodies, 404 for a missing namespace, 409 if the name exists, 422 for invalid objects.
pub fn create(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let mut obj = decode_body(&ctx.headers, body)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    check_type(ctx, &obj)?;
    let unknown = field_validation(ctx, &mut obj)?;
    check_namespace(ctx)?;
    obj["apiVersion"] = json!(ctx.rt.api_version());
    obj["kind"] = json!(ctx.rt.kind);
    let name = objects::stamp_create(&ctx.rt, &mut obj, ctx.path.namespace.as_deref())?;
    let (mut obj, mut warnings) = admit::on_create(ctx, obj, &name)?;
    warnings.extend(unknown);
    track_fields(ctx, None, &mut obj);
    if ctx.rt.status
        && ctx.rt.crd.is_some()
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    if dry_run(ctx) {
        return Ok(with_warnings(
            table::respond(ctx, StatusCode::CREATED, obj, false),
            &warnings,
        ));
    }
    let kv = match ctx.state.store.create(
        &ctx.rt.key(ctx.path.namespace.as_deref(), &name),
        to_bytes_for(&ctx.rt, &obj)?,
    ) {
        Ok(kv) => kv,
        Err(StoreError::AlreadyExists { .. }) => return Err(ApiError::already_exists(&ctx.rt, &name)),
        Err(e) => return Err(e.into()),
    };
    obj = from_kv(&ctx.rt, &kv)?;
    admit::after_write(ctx, &obj)?;
    Ok(with_warnings(
        table::respond(ctx, StatusCode::CREATED, obj, false),
        &warnings,
    ))
}

/// Writes `new` over the current object (the shared tail of update and patch): keeps server-owned metadata, splits
/// status from spec when the type has a status subresource, bumps `generation` on spec changes, and removes the object
/// once a deletion has no finalizers left.
///
/// # Errors
/// 404, 409 on a stale `resourceVersion`, 422 for invalid objects.
pub(crate) fn write(ctx: &Ctx, mut new: Value, require_rv: bool) -> Result<Response, ApiError> {
    let key = key(ctx);
    let name = name(ctx).to_string();
    let cur_kv = ctx
        .state
        .store
        .get(&key)?
        .ok_or_else(|| ApiError::not_found(&ctx.rt, &name))?;
    let cur = from_kv(&ctx.rt, &cur_kv)?;
    if !new.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    check_type(ctx, &new)?;
    let unknown = field_validation(ctx, &mut new)?;
    check_name_and_version(ctx, &new, &name, cur_kv.mod_revision, require_rv)?;
    new["apiVersion"] = json!(ctx.rt.api_version());
    new["kind"] = json!(ctx.rt.kind);
    let status_write = ctx.path.subresource.as_deref() == Some("status");
    let mut new = split_status(ctx, new, &cur, status_write);
    keep_server_metadata(ctx, &mut new, &cur, &name)?;
    if ctx.rt.tracks_generation() && spec_part(&new) != spec_part(&cur) && !status_write {
        let generation = cur
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut new)?.insert("generation".into(), json!(generation + 1));
    }
    if ctx.rt.group.is_empty() && !status_write {
        let causes = crate::immutable::check(&ctx.rt.kind, &cur, &new);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&ctx.rt.kind, "", &name, &causes));
        }
    }
    let (mut new, mut warnings) = admit::on_update(ctx, new, &cur)?;
    warnings.extend(unknown);
    track_fields(ctx, Some(&cur), &mut new);
    if dry_run(ctx) {
        return Ok(with_warnings(
            table::respond(ctx, StatusCode::OK, new, false),
            &warnings,
        ));
    }
    if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
        let kv = ctx
            .state
            .store
            .delete(&key, Some(cur_kv.mod_revision))
            .map_err(|e| map_conflict(ctx, e))?;
        let obj = from_kv(&ctx.rt, &kv)?;
        admit::after_delete(ctx, &obj)?;
        return Ok(table::respond(ctx, StatusCode::OK, obj, false));
    }
    let kv = ctx
        .state
        .store
        .update(&key, to_bytes_for(&ctx.rt, &new)?, cur_kv.mod_revision)
        .map_err(|e| map_conflict(ctx, e))?;
    let obj = from_kv(&ctx.rt, &kv)?;
    admit::after_write(ctx, &obj)?;
    Ok(with_warnings(
        table::respond(ctx, StatusCode::OK, obj, false),
        &warnings,
    ))
}

/// The name in the body matches the URL's, and the resourceVersion (required for custom resources' updates) is the
/// stored one.
fn check_name_and_version(
    ctx: &Ctx,
    new: &Value,
    name: &str,
    stored: i64,
    require_rv: bool,
) -> Result<(), ApiError> {
    if meta_str(new, "name").is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(new, "name").unwrap_or_default()
        )));
    }
    match meta_str(new, "resourceVersion") {
        Some(rv) if rv != stored.to_string() => Err(ApiError::conflict(&ctx.rt, name)),
        None if require_rv && ctx.rt.crd.is_some() => Err(ApiError::invalid(
            &ctx.rt.kind,
            &ctx.rt.group,
            name,
            &[(
                "metadata.resourceVersion".into(),
                "Invalid value: 0x0: must be specified for an update".into(),
                "FieldValueInvalid".into(),
            )],
        )),
        _ => Ok(()),
    }
}

/// Status and spec apart: through `/status` only `.status` changes; otherwise a type with a status subresource keeps
/// its stored status.
fn split_status(ctx: &Ctx, new: Value, cur: &Value, status_write: bool) -> Value {
    if status_write {
        let mut merged = cur.clone();
        merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if merged["status"].is_null()
            && let Some(m) = merged.as_object_mut()
        {
            m.remove("status");
        }
        return merged;
    }
    let mut new = new;
    if ctx.rt.status {
        match cur.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    new
}

/// Metadata only the server writes is kept from the stored object; an object being deleted takes no new finalizers.
fn keep_server_metadata(ctx: &Ctx, new: &mut Value, cur: &Value, name: &str) -> Result<(), ApiError> {
    let cur_meta = cur.get("metadata").cloned().unwrap_or_default();
    let meta = meta_mut(new)?;
    for k in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match cur_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    if cur_meta.get("deletionTimestamp").is_none() {
        return Ok(());
    }
    let list = |m: &serde_json::Map<String, Value>| {
        m.get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let before = cur_meta.as_object().map(list).unwrap_or_default();
    if list(meta).iter().any(|f| !before.contains(f)) {
        return Err(ApiError::invalid(
            &ctx.rt.kind,
            &ctx.rt.group,
            name,
            &[(
                "metadata.finalizers".into(),
                "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                "FieldValueForbidden".into(),
            )],
        ));
    }
    Ok(())
}

pub(crate) fn map_conflict(ctx: &Ctx, e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::conflict(&ctx.rt, name(ctx)),
        StoreError::NotFound { .. } => ApiError::not_found(&ctx.rt, name(ctx)),
        other => other.into(),
    }
}

/// PUT an object (or its status).
///
/// # Errors
/// See [`write`].
pub fn update(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let new = decode_body(&ctx.headers, body)?;
    write(ctx, new, true)
}

/// POST `pods/NAME/binding`: the scheduler's assignment of a pod to a node (sets `spec.nodeName` once).
///
/// # Errors
/// 404 for a missing pod; 409 when it is already bound; 400 without a target node.
pub fn bind(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    if !(ctx.rt.group.is_empty() && ctx.rt.plural == "pods") {
        return Err(ApiError::method_not_allowed());
    }
    let binding = decode_body(&ctx.headers, body)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let node = node
        .ok_or_else(|| ApiError::bad_request("binding has no target node name"))?
        .to_string();
    let key = key(ctx);
    let pod_name = name(ctx).to_string();
    let kv = ctx
        .state
        .store
        .get(&key)?
        .ok_or_else(|| ApiError::not_found(&ctx.rt, &pod_name))?;
    let mut pod = from_kv(&ctx.rt, &kv)?;
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on pods/binding \"{pod_name}\": pod {pod_name} is already assigned to node \"{current}\""
            ),
            details: None,
        });
    }
    pod["spec"]["nodeName"] = json!(node);
    let conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conditions.push(
        json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": objects::now_rfc3339()}),
    );
    pod["status"]["conditions"] = json!(conditions);
    ctx.state
        .store
        .update(&key, to_bytes_for(&ctx.rt, &pod)?, kv.mod_revision)
        .map_err(|e| map_conflict(ctx, e))?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// POST `selfsubjectaccessreviews` (`kubectl auth can-i`) or `subjectaccessreviews` (an aggregated API server asking
/// about its caller), answered by [`crate::authz::decide`].
///
/// # Errors
/// 400 for a malformed review.
pub fn access_review(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let mut review = decode_body(&ctx.headers, body)?;
    let spec = review.get("spec").cloned().unwrap_or_default();
    let attrs = crate::authz::from_review(&spec).ok_or_else(|| {
        ApiError::bad_request("spec.resourceAttributes.verb or spec.nonResourceAttributes.verb is required")
    })?;
    let (kind, who) = if ctx.rt.kind == "SubjectAccessReview" {
        let who = crate::authz::subject(&spec);
        if who.user.is_empty() && who.groups.is_empty() {
            return Err(ApiError::bad_request("spec.user or spec.groups is required"));
        }
        ("SubjectAccessReview", who)
    } else {
        ("SelfSubjectAccessReview", ctx.identity.clone())
    };
    let (allowed, reason) = crate::authz::decide(&who, &attrs);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(kind);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": reason})
    } else {
        json!({"allowed": false, "reason": reason})
    };
    Ok(json(StatusCode::CREATED, &review))
}

/// `kubectl auth whoami`: a SelfSubjectReview answered with the caller's user name and groups.
///
/// # Errors
/// None today; the body is not needed.
pub fn self_review(ctx: &Ctx) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::CREATED,
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": ctx.identity.user, "groups": ctx.identity.groups}}}),
    ))
}
