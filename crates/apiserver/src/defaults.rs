//! What kube-apiserver stores for the built-in kinds beyond what the client sent: the `SetDefaults_*` functions of
//! core/v1, discovery/v1, storage/v1 and admissionregistration/v1 (on every write), and on create the mutating
//! default admission plugins (ServiceAccount, DefaultTolerationSeconds, StorageObjectInUseProtection,
//! TaintNodesByCondition). `tests/defaults_vs_kube.rs` checks the result against what a real kube-apiserver v1.36
//! stored for the same objects. Services' defaults live in [`crate::services`].

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

mod pod;

/// Applies what kube-apiserver applies to a new object of `plural` in the core (`""`) or another built-in group:
/// the defaults of every write, then what only creation does (the namespace finalizer, the admission plugins).
///
/// # Errors
/// 422 for a Secret whose `stringData` is not a map of strings.
pub fn on_create(group: &str, plural: &str, obj: &mut Value) -> Result<(), ApiError> {
    on_write(group, plural, obj)?;
    match (group, plural) {
        ("", "pods") => pod::pod(obj),
        ("", "namespaces") => namespace_finalizer(obj),
        ("", "nodes") => node_taint(obj),
        ("", "persistentvolumeclaims") => pvc(obj),
        ("", "persistentvolumes") => pv(obj),
        _ => {}
    }
    Ok(())
}

/// Applies the defaults kube-apiserver applies on every write (its `SetDefaults_*` run whenever an object is
/// decoded).
///
/// # Errors
/// As [`on_create`].
pub fn on_update(group: &str, plural: &str, obj: &mut Value) -> Result<(), ApiError> {
    on_write(group, plural, obj)
}

fn on_write(group: &str, plural: &str, obj: &mut Value) -> Result<(), ApiError> {
    match (group, plural) {
        ("", "secrets") => secret(obj)?,
        ("", "namespaces") => namespace_label(obj),
        ("", "nodes") => node(obj),
        ("", "events") => event(obj),
        ("", "endpoints") => endpoints(obj),
        ("", "persistentvolumeclaims") => {
            if let Some(spec) = object(obj, "spec") {
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "persistentvolumes") => pv_spec(obj),
        ("discovery.k8s.io", "endpointslices") => endpoint_slice(obj),
        ("storage.k8s.io", "storageclasses") => storage_class(obj),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => webhooks(obj, true),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => webhooks(obj, false),
        _ => {}
    }
    Ok(())
}

/// Drops every `null` member of every object in `v`, as decoding into Go types (built-ins) or pruning non-nullable
/// fields (CRDs) does before kube-apiserver stores an object: a condition written with `"reason": null` is stored
/// without the key.
pub fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// `v[key]` as a map, made one when missing; `None` when `v` is not an object.
fn object<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let e = v.as_object_mut()?.entry(key).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    m.entry(key).or_insert(value);
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = object(obj, "metadata") else {
        return;
    };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|f| f == finalizer)
    {
        a.push(json!(finalizer));
    }
}

/// `stringData` is merged into `data` (base64) and dropped; `type` defaults to `Opaque`.
fn secret(obj: &mut Value) -> Result<(), ApiError> {
    if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(sd) = sd.as_object() else {
            return Err(ApiError::invalid(
                "Secret",
                "",
                &name,
                &[(
                    "stringData".into(),
                    "Invalid value: must be a map of strings".into(),
                    "FieldValueInvalid".into(),
                )],
            ));
        };
        let Some(data) = object(obj, "data") else {
            return Ok(());
        };
        for (k, v) in sd {
            let Some(s) = v.as_str() else {
                return Err(ApiError::invalid(
                    "Secret",
                    "",
                    &name,
                    &[(
                        format!("stringData[{k}]"),
                        "Invalid value: must be a string".into(),
                        "FieldValueInvalid".into(),
                    )],
                ));
            };
            data.insert(
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
    if obj.get("type").and_then(Value::as_str).is_none_or(str::is_empty)
        && let Some(m) = obj.as_object_mut()
    {
        m.insert("type".into(), json!("Opaque"));
    }
    Ok(())
}

fn namespace_label(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(meta) = object(obj, "metadata") else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
}

/// The namespace strategy's PrepareForCreate: the `kubernetes` finalizer is always there.
fn namespace_finalizer(obj: &mut Value) {
    if let Some(spec) = object(obj, "spec") {
        let list = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(a) = list.as_array_mut()
            && !a.iter().any(|f| f == "kubernetes")
        {
            a.push(json!("kubernetes"));
        }
    }
}

/// A Node always has a `spec`; `SetDefaults_NodeStatus` (allocatable = capacity) and the zero values Go writes for
/// its status structs and condition times.
fn node(obj: &mut Value) {
    let _ = object(obj, "spec");
    let Some(status) = object(obj, "status") else {
        return;
    };
    if !status.contains_key("allocatable")
        && let Some(c) = status.get("capacity").cloned()
    {
        status.insert("allocatable".into(), c);
    }
    default(status, "daemonEndpoints", json!({"kubeletEndpoint": {"Port": 0}}));
    let info = status.entry("nodeInfo").or_insert_with(|| json!({}));
    if let Some(info) = info.as_object_mut() {
        for k in [
            "architecture",
            "bootID",
            "containerRuntimeVersion",
            "kernelVersion",
            "kubeProxyVersion",
            "kubeletVersion",
            "machineID",
            "operatingSystem",
            "osImage",
            "systemUUID",
        ] {
            default(info, k, json!(""));
        }
    }
    for c in status
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        default(c, "lastHeartbeatTime", Value::Null);
        default(c, "lastTransitionTime", Value::Null);
    }
}

/// The TaintNodesByCondition admission plugin: a new node is `not-ready` (NoSchedule) until the node lifecycle
/// controller sees it Ready.
fn node_taint(obj: &mut Value) {
    let Some(spec) = object(obj, "spec") else {
        return;
    };
    let taints = spec.entry("taints").or_insert_with(|| json!([]));
    if let Some(t) = taints.as_array_mut()
        && !t
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoSchedule")
    {
        t.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
    }
}

/// Core events: the zero values Go writes for the times and reporting fields a client left out.
fn event(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    for k in ["eventTime", "firstTimestamp", "lastTimestamp"] {
        default(m, k, Value::Null);
    }
    for k in ["reportingComponent", "reportingInstance"] {
        default(m, k, json!(""));
    }
}

/// `SetDefaults_Endpoints`: ports are TCP unless said otherwise.
fn endpoints(obj: &mut Value) {
    for ss in obj
        .get_mut("subsets")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for p in ss
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// discovery/v1 `SetDefaults_EndpointPort`: a port's name is `""` and its protocol TCP unless given.
fn endpoint_slice(obj: &mut Value) {
    for p in obj
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        default(p, "name", json!(""));
        default(p, "protocol", json!("TCP"));
    }
}

/// admissionregistration/v1 defaults of each webhook: fail closed, equivalent matching, empty selectors, 10 s,
/// rules for any scope, service port 443; mutating webhooks are not reinvoked.
fn webhooks(obj: &mut Value, mutating: bool) {
    for w in obj
        .get_mut("webhooks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        default(w, "failurePolicy", json!("Fail"));
        default(w, "matchPolicy", json!("Equivalent"));
        default(w, "namespaceSelector", json!({}));
        default(w, "objectSelector", json!({}));
        default(w, "timeoutSeconds", json!(10));
        if mutating {
            default(w, "reinvocationPolicy", json!("Never"));
        }
        for r in w
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            default(r, "scope", json!("*"));
        }
        if let Some(s) = w
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            default(s, "port", json!(443));
        }
    }
}

/// Phase Pending and the pvc-protection finalizer (StorageObjectInUseProtection).
fn pvc(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
    }
    add_finalizer(obj, "kubernetes.io/pvc-protection");
}

/// `persistentVolumeReclaimPolicy: Retain`, `volumeMode: Filesystem`, a host path's type `""`.
fn pv_spec(obj: &mut Value) {
    if let Some(spec) = object(obj, "spec") {
        default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default(spec, "volumeMode", json!("Filesystem"));
        if let Some(h) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            default(h, "type", json!(""));
        }
    }
}

/// Phase Pending since now, the pv-protection finalizer.
fn pv(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert(
            "status".into(),
            json!({"phase": "Pending", "lastPhaseTransitionTime": crate::objects::now_rfc3339()}),
        );
    }
    add_finalizer(obj, "kubernetes.io/pv-protection");
}

/// `reclaimPolicy: Delete`, `volumeBindingMode: Immediate`.
fn storage_class(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default(m, "reclaimPolicy", json!("Delete"));
        default(m, "volumeBindingMode", json!("Immediate"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nulls_are_not_stored() {
        let mut v = json!({"status": {"conditions": [{"type": "Ready", "reason": null, "message": null}]}, "x": null});
        prune_nulls(&mut v);
        assert_eq!(v, json!({"status": {"conditions": [{"type": "Ready"}]}}));
    }

    #[test]
    fn string_data_must_be_strings() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"a": 1}});
        let e = on_create("", "secrets", &mut s).unwrap_err();
        assert_eq!(e.code, 422);
    }
}
