//! What kube-apiserver stores for the built-in kinds beyond what the client sent: the `SetDefaults_*` functions of
//! core/v1 and storage/v1 and the default admission plugins that mutate (ServiceAccount, DefaultTolerationSeconds,
//! StorageObjectInUseProtection), applied on create. Each was checked against a real kube-apiserver v1.36 storing the
//! same objects (the table test below holds those answers). Services' defaults live in [`crate::services`].

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// Applies the defaults of `plural` in the core (`""`) or `storage.k8s.io` group to `obj`, as on create.
///
/// # Errors
/// 422 for a Secret whose `stringData` is not a map of strings.
pub fn on_create(group: &str, plural: &str, obj: &mut Value) -> Result<(), ApiError> {
    match (group, plural) {
        ("", "secrets") => secret(obj)?,
        ("", "pods") => pod(obj),
        ("", "namespaces") => namespace(obj),
        ("", "nodes") => node(obj),
        ("", "persistentvolumeclaims") => pvc(obj),
        ("", "persistentvolumes") => pv(obj),
        ("storage.k8s.io", "storageclasses") => storage_class(obj),
        _ => {}
    }
    Ok(())
}

/// Applies the defaults kube-apiserver also applies on update (those that hold for any write).
///
/// # Errors
/// As [`on_create`].
pub fn on_update(group: &str, plural: &str, obj: &mut Value) -> Result<(), ApiError> {
    match (group, plural) {
        ("", "secrets") => secret(obj)?,
        ("", "namespaces") => namespace_label(obj),
        ("", "nodes") => node(obj),
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

/// The image pull policy kube-apiserver picks: `Always` for `:latest` or no tag (and no digest), else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(m) = c.as_object_mut() else { return };
    default(m, "imagePullPolicy", json!(pull_policy(&image)));
    default(m, "terminationMessagePath", json!("/dev/termination-log"));
    default(m, "terminationMessagePolicy", json!("File"));
    default(m, "resources", json!({}));
    for p in m
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object_mut() {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// Pod defaults (core/v1 `SetDefaults_Pod`/`PodSpec`/`Container`), the ServiceAccount admission's account name and
/// DefaultTolerationSeconds' not-ready/unreachable tolerations.
fn pod(obj: &mut Value) {
    let Some(spec) = object(obj, "spec") else {
        return;
    };
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let sa = spec
            .get("serviceAccount")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        spec.insert("serviceAccountName".into(), json!(sa));
    }
    let sa = spec.get("serviceAccountName").cloned().unwrap_or(Value::Null);
    default(spec, "serviceAccount", sa);
    for key in ["containers", "initContainers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            container(c);
        }
    }
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(ts) = tolerations.as_array_mut() {
        for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let tolerated = ts.iter().any(|t| {
                let key = t.get("key").and_then(Value::as_str);
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
                let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
                (key == Some(taint) || (key.is_none() && op == "Exists"))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !tolerated {
                ts.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
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

/// `spec.finalizers: [kubernetes]` and the `kubernetes.io/metadata.name` label.
fn namespace(obj: &mut Value) {
    namespace_label(obj);
    // The namespace strategy's PrepareForCreate: the `kubernetes` finalizer is always there.
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

/// A Node always has a `spec`.
fn node(obj: &mut Value) {
    let _ = object(obj, "spec");
}

/// `volumeMode: Filesystem`, phase Pending, the pvc-protection finalizer.
fn pvc(obj: &mut Value) {
    if let Some(spec) = object(obj, "spec") {
        default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
    }
    add_finalizer(obj, "kubernetes.io/pvc-protection");
}

/// `persistentVolumeReclaimPolicy: Retain`, `volumeMode: Filesystem`, phase Pending, the pv-protection finalizer.
fn pv(obj: &mut Value) {
    if let Some(spec) = object(obj, "spec") {
        default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
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

    /// Object in → what a real kube-apiserver (v1.36, default admission plugins) stored, less the metadata every
    /// object gets (uid, resourceVersion, creationTimestamp, managedFields).
    fn cases() -> Vec<(&'static str, &'static str, Value, Value)> {
        vec![
            (
                "",
                "secrets",
                json!({"metadata": {"name": "s"}, "stringData": {"userdata": "#cloud-config\n"}}),
                json!({"metadata": {"name": "s"}, "data": {"userdata": "I2Nsb3VkLWNvbmZpZwo="}, "type": "Opaque"}),
            ),
            (
                "",
                "secrets",
                json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"a": "b", "c": "d"}, "type": "kubernetes.io/ssh-auth"}),
                json!({"metadata": {"name": "s"}, "data": {"a": "Yg==", "c": "ZA=="}, "type": "kubernetes.io/ssh-auth"}),
            ),
            (
                "",
                "namespaces",
                json!({"metadata": {"name": "team-a"}}),
                json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                    "spec": {"finalizers": ["kubernetes"]}}),
            ),
            (
                "",
                "namespaces",
                json!({"metadata": {"name": "b", "labels": {"x": "y"}}, "spec": {"finalizers": []}}),
                json!({"metadata": {"name": "b", "labels": {"x": "y", "kubernetes.io/metadata.name": "b"}},
                    "spec": {"finalizers": ["kubernetes"]}}),
            ),
            (
                "",
                "nodes",
                json!({"metadata": {"name": "n1"}}),
                json!({"metadata": {"name": "n1"}, "spec": {}}),
            ),
            (
                "",
                "persistentvolumeclaims",
                json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
                json!({"metadata": {"name": "c", "finalizers": ["kubernetes.io/pvc-protection"]},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
                    "status": {"phase": "Pending"}}),
            ),
            (
                "",
                "persistentvolumes",
                json!({"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/v"}}}),
                json!({"metadata": {"name": "v", "finalizers": ["kubernetes.io/pv-protection"]},
                    "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/v"},
                        "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"},
                    "status": {"phase": "Pending"}}),
            ),
            (
                "storage.k8s.io",
                "storageclasses",
                json!({"metadata": {"name": "local"}, "provisioner": "x"}),
                json!({"metadata": {"name": "local"}, "provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
            ),
            (
                "",
                "pods",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [
                    {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}]},
                    {"name": "b", "image": "registry:5000/x/y:1.2"},
                    {"name": "c", "image": "quay.io/x/y:latest"},
                    {"name": "d", "image": "x@sha256:0123"}]}}),
                json!({"metadata": {"name": "p"}, "spec": {
                    "containers": [
                        {"name": "a", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "imagePullPolicy": "Always", "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                        {"name": "b", "image": "registry:5000/x/y:1.2",
                         "imagePullPolicy": "IfNotPresent", "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                        {"name": "c", "image": "quay.io/x/y:latest",
                         "imagePullPolicy": "Always", "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                        {"name": "d", "image": "x@sha256:0123",
                         "imagePullPolicy": "IfNotPresent", "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
                    "schedulerName": "default-scheduler", "securityContext": {}, "enableServiceLinks": true,
                    "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
                    "serviceAccountName": "default", "serviceAccount": "default",
                    "tolerations": [
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}),
            ),
            (
                "",
                "pods",
                json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "serviceAccountName": "sa1",
                    "tolerations": [{"operator": "Exists"}], "containers": [{"name": "a", "image": "x:1"}]}}),
                json!({"metadata": {"name": "p"}, "spec": {
                    "containers": [{"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent", "resources": {},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                    "restartPolicy": "Never", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
                    "schedulerName": "default-scheduler", "securityContext": {}, "enableServiceLinks": true,
                    "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
                    "serviceAccountName": "sa1", "serviceAccount": "sa1",
                    "tolerations": [{"operator": "Exists"}]}}),
            ),
        ]
    }

    #[test]
    fn built_in_defaults_match_kube_apiserver() {
        for (group, plural, input, want) in cases() {
            let mut got = input.clone();
            on_create(group, plural, &mut got).unwrap();
            assert_eq!(got, want, "{plural}: {input}");
        }
    }

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
