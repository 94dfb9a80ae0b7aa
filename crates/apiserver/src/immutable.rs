//! Fields of built-in kinds that an update may not change, refused with 422 and kube-apiserver's messages:
//! ConfigMap and Secret contents once `immutable: true`, a Secret's `type`, and a Pod's spec beyond the fields
//! Kubernetes lets change (container images, activeDeadlineSeconds, added tolerations, nodeName via binding only).

use serde_json::Value;

/// (field, message, reason) causes.
type Causes = Vec<(String, String, String)>;

const WHEN_IMMUTABLE: &str = "Forbidden: field is immutable when `immutable` is set";

const POD_SPEC: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,\
`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing \
tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn forbidden(field: &str, message: &str) -> (String, String, String) {
    (field.into(), message.into(), "FieldValueForbidden".into())
}

/// A pod spec with what may change blanked out, for comparison.
fn pod_spec_frozen(spec: Option<&Value>) -> Value {
    let mut s = spec.cloned().unwrap_or_default();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
    }
    s
}

/// The causes for changing what `kind` (a core/v1 kind) keeps immutable; empty when the update is allowed.
#[must_use]
pub fn check(kind: &str, old: &Value, new: &Value) -> Causes {
    let mut causes = Causes::new();
    match kind {
        "ConfigMap" | "Secret" => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                let fields: &[&str] = if kind == "Secret" {
                    &["data", "stringData"]
                } else {
                    &["data", "binaryData"]
                };
                for f in fields {
                    if old.get(*f) != new.get(*f) && !(*f == "stringData" && new.get(*f).is_none()) {
                        causes.push(forbidden(f, WHEN_IMMUTABLE));
                    }
                }
                if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                    causes.push(forbidden("immutable", WHEN_IMMUTABLE));
                }
            }
            if kind == "Secret" {
                let t = |v: &Value| {
                    v.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("Opaque")
                        .to_string()
                };
                if t(old) != t(new) {
                    causes.push((
                        "type".into(),
                        format!("Invalid value: \"{}\": field is immutable", t(new)),
                        "FieldValueInvalid".into(),
                    ));
                }
            }
        }
        "Pod" => {
            let (o, n) = (old.get("spec"), new.get("spec"));
            if pod_spec_frozen(o) != pod_spec_frozen(n) {
                causes.push(forbidden("spec", POD_SPEC));
            }
            let tolerations = |s: Option<&Value>| {
                s.and_then(|s| s.get("tolerations"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (before, after) = (tolerations(o), tolerations(n));
            if before.iter().any(|t| !after.contains(t)) && causes.is_empty() {
                causes.push(forbidden("spec", POD_SPEC));
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn immutable_configmaps_keep_their_data() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        assert!(check("ConfigMap", &old, &old).is_empty());
        let causes = check(
            "ConfigMap",
            &old,
            &json!({"immutable": false, "data": {"a": "2"}}),
        );
        let fields: Vec<_> = causes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(fields, ["data", "immutable"]);
        // Not immutable: anything goes.
        assert!(check("ConfigMap", &json!({"data": {"a": "1"}}), &json!({"data": {}})).is_empty());
    }

    #[test]
    fn secret_type_and_pod_spec() {
        assert_eq!(
            check(
                "Secret",
                &json!({"type": "Opaque"}),
                &json!({"type": "kubernetes.io/tls"})
            )[0]
            .1,
            "Invalid value: \"kubernetes.io/tls\": field is immutable"
        );
        let pod =
            json!({"spec": {"containers": [{"name": "c", "image": "a"}], "tolerations": [{"key": "k"}]}});
        let mut image = pod.clone();
        image["spec"]["containers"][0]["image"] = json!("b");
        image["spec"]["tolerations"] = json!([{"key": "k"}, {"key": "more"}]);
        assert!(check("Pod", &pod, &image).is_empty());
        let mut other = pod.clone();
        other["spec"]["containers"][0]["name"] = json!("renamed");
        assert_eq!(check("Pod", &pod, &other)[0].0, "spec");
        let mut dropped = pod.clone();
        dropped["spec"]["tolerations"] = json!([]);
        assert_eq!(check("Pod", &pod, &dropped).len(), 1);
    }
}
