//! Pod defaults: core/v1 `SetDefaults_Pod`/`PodSpec`/`Container`/probes/volumes, the ServiceAccount admission's
//! account name and DefaultTolerationSeconds' not-ready/unreachable tolerations.

use serde_json::{Map, Value, json};

use super::{default, object};

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

/// The members of `m[key]` when it is an array.
fn each<'a>(m: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `SetDefaults_ObjectFieldSelector`: a `fieldRef` without `apiVersion` means `v1`.
fn field_ref(holder: &mut Map<String, Value>) {
    if let Some(f) = holder.get_mut("fieldRef").and_then(Value::as_object_mut) {
        default(f, "apiVersion", json!("v1"));
    }
}

/// `SetDefaults_HTTPGetAction` of a probe or lifecycle handler.
fn http_get(handler: &mut Map<String, Value>) {
    if let Some(h) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

/// One container of a pod: `SetDefaults_Container`, its probes, handlers, env field refs, ports (host ports
/// under host networking) and requests defaulted from limits (`SetDefaults_Pod`).
fn container(c: &mut Value, host_network: bool) {
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
    for p in each(m, "ports") {
        default(p, "protocol", json!("TCP"));
        if host_network && p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
            let port = p.get("containerPort").cloned().unwrap_or(json!(0));
            p.insert("hostPort".into(), port);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            http_get(p);
        }
    }
    if let Some(l) = m.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get_mut(hook).and_then(Value::as_object_mut) {
                http_get(h);
            }
        }
    }
    for e in each(m, "env") {
        if let Some(from) = e.get_mut("valueFrom").and_then(Value::as_object_mut) {
            field_ref(from);
        }
    }
    if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut)
        && let Some(limits) = r.get("limits").and_then(Value::as_object).cloned()
        && let Some(requests) = object_in(r, "requests")
    {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// `m[key]` as a map, made one when missing.
fn object_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    m.entry(key).or_insert_with(|| json!({})).as_object_mut()
}

/// `SetDefaults_Volume` and the defaults of its sources: file modes 0644, field refs, host path type, token
/// lifetime; a volume naming no source is an emptyDir.
fn volume(v: &mut Map<String, Value>) {
    if v.len() == 1 && v.contains_key("name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            default(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        each(d, "items").for_each(field_ref);
    }
    if let Some(p) = v.get_mut("projected").and_then(Value::as_object_mut) {
        for s in each(p, "sources") {
            if let Some(d) = s.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                each(d, "items").for_each(field_ref);
            }
            if let Some(t) = s.get_mut("serviceAccountToken").and_then(Value::as_object_mut) {
                default(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default(h, "type", json!(""));
    }
}

/// Pod defaults (core/v1 `SetDefaults_Pod`/`PodSpec`/`Container`), the ServiceAccount admission's account name and
/// DefaultTolerationSeconds' not-ready/unreachable tolerations.
pub(super) fn pod(obj: &mut Value) {
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
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    for key in ["containers", "initContainers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            container(c, host_network);
        }
    }
    each(spec, "volumes").for_each(volume);
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
