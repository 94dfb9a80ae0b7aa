//! kube-apiserver's ServiceAccount admission plugin for new pods: the account (default `default`) must exist, and
//! unless the pod or its account turns automounting off, every container gets the projected `kube-api-access-XXXXX`
//! volume (a token for the account, the cluster CA, the namespace) at `/var/run/secrets/kubernetes.io/serviceaccount`.

use serde_json::{Value, json};

use crate::status::ApiError;

/// Where the token volume is mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token lifetime kube-apiserver asks for (an hour and seven seconds).
const TOKEN_SECONDS: i64 = 3607;
/// Kubernetes' alphabet for generated name suffixes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The projected volume kube-apiserver adds.
fn volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
}

/// Admits a new pod: `account` is the stored ServiceAccount its `serviceAccountName` names (already defaulted).
///
/// # Errors
/// 403 when the account does not exist, with the plugin's message.
pub fn admit(pod: &mut Value, account: Option<&Value>) -> Result<(), ApiError> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/metadata/generateName").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let Some(account) = account else {
        return Err(ApiError::webhook_denied(
            403,
            &format!(
                "pods \"{name}\" is forbidden: error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
            ),
            "",
        ));
    };
    let off = |v: Option<&Value>| v.and_then(Value::as_bool) == Some(false);
    let pod_says = pod.pointer("/spec/automountServiceAccountToken");
    let automount = match pod_says.and_then(Value::as_bool) {
        Some(b) => b,
        None => !off(account.get("automountServiceAccountToken")),
    };
    if !automount {
        return Ok(());
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"];
    let mounted = containers.iter().any(|k| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("volumeMounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
    });
    if mounted {
        return Ok(());
    }
    let vol_name = format!("kube-api-access-{}", suffix());
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(volume(&vol_name));
    }
    for k in ["containers", "initContainers"] {
        for c in spec
            .get_mut(k)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(json!({"name": vol_name, "mountPath": MOUNT_PATH, "readOnly": true}));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pods_get_the_token_volume_unless_they_opt_out() {
        let sa = json!({"metadata": {"name": "default"}});
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "a"}, {"name": "b", "volumeMounts": []}]}});
        admit(&mut pod, Some(&sa)).unwrap();
        let vol = &pod["spec"]["volumes"][0];
        let name = vol["name"].as_str().unwrap();
        assert!(name.starts_with("kube-api-access-") && name.len() == 21, "{name}");
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for c in pod["spec"]["containers"].as_array().unwrap() {
            assert_eq!(c["volumeMounts"][0]["mountPath"], MOUNT_PATH);
            assert_eq!(c["volumeMounts"][0]["name"], name);
        }
        let mut off = json!({"metadata": {"name": "p"}, "spec": {"automountServiceAccountToken": false,
            "serviceAccountName": "default", "containers": [{"name": "a"}]}});
        admit(&mut off, Some(&sa)).unwrap();
        assert!(off["spec"].get("volumes").is_none());
        let quiet = json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false});
        let mut p2 = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "quiet", "containers": [{"name": "a"}]}});
        admit(&mut p2, Some(&quiet)).unwrap();
        assert!(p2["spec"].get("volumes").is_none());
        let e = admit(&mut p2, None).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message.contains(
                "error looking up service account default/quiet: serviceaccount \"quiet\" not found"
            ),
            "{}",
            e.message
        );
    }
}
