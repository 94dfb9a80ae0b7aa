//! Stored objects: what is kept in the store (the object without `resourceVersion`), how a stored object becomes a
//! response (resourceVersion from the store revision, apiVersion of the requested version), and create-time stamping.

use apiserver_store::KeyValue;
use serde_json::{Map, Value, json};

use crate::registry::ResourceType;
use crate::status::ApiError;

/// Largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Field renames between a core/v1 Event (how events are stored) and an events.k8s.io/v1 Event (the other view).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether `rt` is the events.k8s.io/v1 view of core events.
#[must_use]
pub fn is_event_view(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

fn rename(obj: &mut Value, to_view: bool) {
    let Some(m) = obj.as_object_mut() else { return };
    for (core, view) in EVENT_FIELDS {
        let (from, to) = if to_view { (core, view) } else { (view, core) };
        if let Some(v) = m.remove(*from) {
            m.insert((*to).to_string(), v);
        }
    }
}

/// The object a stored value represents, as served at `rt`'s version.
///
/// # Errors
/// 500 if the stored bytes are not JSON (a corrupted store).
pub fn from_kv(rt: &ResourceType, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {}: {e}", kv.key)))?;
    if is_event_view(rt) {
        rename(&mut obj, true);
    }
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(obj)
}

/// The bytes to store for `obj` received through `rt` (no resourceVersion: the store revision is the
/// resourceVersion; events in their core/v1 form).
///
/// # Errors
/// 500 if the object cannot be encoded (not expected).
pub fn to_bytes_for(rt: &ResourceType, obj: &Value) -> Result<Vec<u8>, ApiError> {
    if is_event_view(rt) {
        let mut o = obj.clone();
        rename(&mut o, false);
        o["apiVersion"] = json!("v1");
        return to_bytes(&o);
    }
    to_bytes(obj)
}

/// The bytes to store for an object already in its stored form.
///
/// # Errors
/// 500 if the object cannot be encoded (not expected).
pub fn to_bytes(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&o).map_err(ApiError::internal)
}

/// The object's `metadata` map, created if missing.
///
/// # Errors
/// 400 when `metadata` is not an object.
pub fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    if obj.get("metadata").is_none_or(Value::is_null) {
        obj["metadata"] = json!({});
    }
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// A string field of `metadata`.
#[must_use]
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Now, as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
#[must_use]
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// `at` as Kubernetes writes times: RFC 3339, whole seconds, UTC.
#[must_use]
pub fn rfc3339(at: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(at.as_second())
        .unwrap_or(at)
        .to_string()
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + five random characters from Kubernetes' alphabet.
#[must_use]
pub fn generated_name(prefix: &str) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| char::from(GENERATE_ALPHABET[usize::from(*b) % GENERATE_ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

/// Whether `name` is a valid object name for `rt` (DNS-1123 subdomain; label for namespaces).
#[must_use]
pub fn name_error(rt: &ResourceType, name: &str) -> Option<String> {
    let label = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    let ok = if rt.plural == "namespaces" || rt.plural == "services" {
        label(name)
    } else if rt.group == "rbac.authorization.k8s.io" {
        !name.is_empty() && !name.contains('/') && !name.contains('%') && name != "." && name != ".."
    } else {
        name.len() <= 253 && name.split('.').all(label)
    };
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
    })
}

/// Fills what the server owns on create: name from generateName, namespace, uid, creationTimestamp, generation.
///
/// # Errors
/// 400 for a namespace that disagrees with the URL; 422 for a missing or invalid name.
pub fn stamp_create(rt: &ResourceType, obj: &mut Value, namespace: Option<&str>) -> Result<String, ApiError> {
    let kind = rt.kind.clone();
    let group = rt.group.clone();
    let meta = meta_mut(obj)?;
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        name = generated_name(prefix);
        meta.insert("name".into(), json!(name));
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            &kind,
            &group,
            "",
            &[(
                "metadata.name".into(),
                "Required value: name or generateName is required".into(),
                "FieldValueRequired".into(),
            )],
        ));
    }
    if let Some(msg) = name_error(rt, &name) {
        return Err(ApiError::invalid(
            &kind,
            &group,
            &name,
            &[(
                "metadata.name".into(),
                format!("Invalid value: {name:?}: {msg}"),
                "FieldValueInvalid".into(),
            )],
        ));
    }
    if rt.namespaced {
        let ns = namespace.unwrap_or("default");
        match meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(body_ns) if body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .to_string(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if rt.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    Ok(name)
}

/// The object without metadata and status: what `generation` tracks.
#[must_use]
pub fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

/// The finalizers of an object.
#[must_use]
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}
