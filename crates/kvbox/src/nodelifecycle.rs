//! kube-controller-manager's node lifecycle controller, the part box mode needs: each node's NoSchedule taints
//! follow its conditions (Ready False → `not-ready`, Unknown → `unreachable`; memory, disk, PID pressure and network
//! unavailable) and `spec.unschedulable`. It is what lifts the `not-ready` taint every new node gets at admission
//! (TaintNodesByCondition) once the node reports Ready. Taint-based eviction (the NoExecute pass) is not done.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Condition type and status → the NoSchedule taint it calls for.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", "node.kubernetes.io/not-ready"),
    ("Ready", "Unknown", "node.kubernetes.io/unreachable"),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn managed(key: &str) -> bool {
    key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// The NoSchedule taint keys `node`'s conditions and cordon call for.
fn wanted(node: &Node) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            CONDITION_TAINTS
                .iter()
                .find(|(t, s, _)| *t == c.type_ && *s == c.status)
                .map(|(_, _, k)| *k)
        })
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// `node`'s taints with the managed NoSchedule ones replaced by `wanted`, or `None` when they already agree.
fn retainted(node: &Node, now: &str) -> Option<Vec<serde_json::Value>> {
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let is_ours = |t: &Taint| t.effect == "NoSchedule" && managed(&t.key);
    let mut have: Vec<&str> = taints
        .iter()
        .filter(|t| is_ours(t))
        .map(|t| t.key.as_str())
        .collect();
    have.sort_unstable();
    let want = wanted(node);
    if have == want {
        return None;
    }
    let mut out: Vec<serde_json::Value> = taints
        .iter()
        .filter(|t| !is_ours(t) || want.contains(&t.key.as_str()))
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    for key in want.iter().filter(|k| !have.contains(k)) {
        out.push(json!({"key": key, "effect": "NoSchedule", "timeAdded": now}));
    }
    Some(out)
}

/// Keeps every node's condition taints true until `stop`.
pub(crate) async fn run(client: kube::Client, stop: Arc<tokio::sync::Notify>) {
    let dirty = Arc::new(tokio::sync::Notify::new());
    let api = Api::<Node>::all(client);
    let (nodes, task) = kube_support::resync::mirror(api.clone(), dirty.clone());
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = kube_support::resync::settle(&dirty) => {}
        }
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        for node in nodes.state() {
            let Some(taints) = retainted(&node, &now) else {
                continue;
            };
            let name = node.metadata.name.clone().unwrap_or_default();
            let span = tracing::info_span!("node-lifecycle", node = %name);
            let rv = node.metadata.resource_version.clone();
            // Guarded by the resource version: a node changed meanwhile is looked at again.
            let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}});
            let write = async {
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(error = %e, "updating taints");
                    dirty.notify_one();
                }
            };
            tracing::Instrument::instrument(write, span).await;
        }
    }
    task.abort();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn taints_follow_conditions() {
        let fresh = node(json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                                {"key": "gpu", "value": "yes", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert_eq!(
            retainted(&fresh, "t").unwrap(),
            vec![json!({"key": "gpu", "value": "yes", "effect": "NoSchedule"})]
        );
        let down = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}}));
        let got = retainted(&down, "t").unwrap();
        let keys: Vec<&str> = got.iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/disk-pressure",
                "node.kubernetes.io/unreachable",
                "node.kubernetes.io/unschedulable"
            ]
        );
        assert_eq!(got[0]["timeAdded"], "t");
        let settled = node(json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert!(retainted(&settled, "t").is_none());
    }
}
