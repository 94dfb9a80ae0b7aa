//! kube-scheduler's VolumeBinding plugin for the box scheduler: a pod's claims must exist; a bound claim's PV
//! pins the pod to the nodes its node affinity allows; an unbound `WaitForFirstConsumer` claim is placed with the
//! pod (the scheduler writes `volume.kubernetes.io/selected-node`, the provisioner makes the volume there, and the
//! pod is bound once its claims are); an unbound `Immediate` claim keeps the pod pending.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

/// The node the scheduler chose for a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// What the pod's claims say about where it can go.
#[derive(Clone, Debug, PartialEq)]
pub enum Volumes {
    /// Nodes must match each of these (the bound volumes' node affinity); these claims (namespace, name) are to be
    /// placed on the chosen node before the pod is bound.
    Place {
        affinity: Vec<NodeSelector>,
        to_select: Vec<String>,
    },
    /// A claim placed on a node waits for its volume: nothing to do yet.
    Waiting,
    /// The pod cannot be placed: why, in kube-scheduler's words.
    Unschedulable(String),
}

/// The pod's claims against the cached claims, volumes and classes.
#[must_use]
pub fn volumes(
    pod: &Pod,
    pvcs: &[Arc<PersistentVolumeClaim>],
    pvs: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
) -> Volumes {
    let ns = pod.metadata.namespace.as_deref();
    let mut affinity = Vec::new();
    let mut to_select = Vec::new();
    let mut waiting = false;
    let claims = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()));
    for name in claims {
        let Some(pvc) = pvcs
            .iter()
            .find(|c| c.metadata.namespace.as_deref() == ns && c.metadata.name.as_deref() == Some(name))
        else {
            return Volumes::Unschedulable(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Volumes::Unschedulable(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        if let Some(pv_name) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            let Some(pv) = pvs.iter().find(|p| p.metadata.name.as_deref() == Some(pv_name)) else {
                return Volumes::Unschedulable(format!(
                    "pvc {}/{name} bound to non-existent pv {pv_name}",
                    ns.unwrap_or_default()
                ));
            };
            if let Some(required) = pv
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.clone())
            {
                affinity.push(required);
            }
            continue;
        }
        let class = spec
            .storage_class_name
            .as_deref()
            .and_then(|c| classes.iter().find(|k| k.metadata.name.as_deref() == Some(c)));
        let wait_for_consumer =
            class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        if !wait_for_consumer {
            return Volumes::Unschedulable("pod has unbound immediate PersistentVolumeClaims".into());
        }
        if pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SELECTED_NODE))
            .is_some()
        {
            waiting = true;
        } else {
            to_select.push(name.to_string());
        }
    }
    if waiting {
        return Volumes::Waiting;
    }
    Volumes::Place { affinity, to_select }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn arc<T: k8s_openapi::serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pod(claim: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
        .unwrap()
    }

    type Cached = (
        Vec<Arc<PersistentVolumeClaim>>,
        Vec<Arc<PersistentVolume>>,
        Vec<Arc<StorageClass>>,
    );

    fn cases() -> Cached {
        let claim = |name: &str, class: &str, extra: serde_json::Value| {
            let mut v =
                json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"storageClassName": class}});
            if let Some(o) = extra.as_object() {
                for (k, x) in o {
                    if k == "annotations" {
                        v["metadata"]["annotations"] = x.clone();
                    } else {
                        v["spec"][k] = x.clone();
                    }
                }
            }
            arc(v)
        };
        let pvcs = vec![
            claim("bound", "local", json!({"volumeName": "pv-a"})),
            claim("wffc", "local", json!({})),
            claim("placed", "local", json!({"annotations": {SELECTED_NODE: "n1"}})),
            claim("now", "now", json!({})),
        ];
        let pvs = vec![arc(
            json!({"metadata": {"name": "pv-a"}, "spec": {"nodeAffinity": {"required": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}}),
        )];
        let classes = vec![
            arc(
                json!({"metadata": {"name": "local"}, "provisioner": "p", "volumeBindingMode": "WaitForFirstConsumer"}),
            ),
            arc(json!({"metadata": {"name": "now"}, "provisioner": "p", "volumeBindingMode": "Immediate"})),
        ];
        (pvcs, pvs, classes)
    }

    #[test]
    fn claims_place_wait_for_or_refuse_the_pod() {
        let (pvcs, pvs, classes) = cases();
        let v = |c: &str| volumes(&pod(c), &pvcs, &pvs, &classes);
        assert!(
            matches!(v("bound"), Volumes::Place { affinity, to_select } if affinity.len() == 1 && to_select.is_empty())
        );
        assert_eq!(
            v("wffc"),
            Volumes::Place {
                affinity: vec![],
                to_select: vec!["wffc".into()]
            }
        );
        assert_eq!(v("placed"), Volumes::Waiting);
        assert_eq!(
            v("now"),
            Volumes::Unschedulable("pod has unbound immediate PersistentVolumeClaims".into())
        );
        assert_eq!(
            v("nope"),
            Volumes::Unschedulable("persistentvolumeclaim \"nope\" not found".into())
        );
    }
}
