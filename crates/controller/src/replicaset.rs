//! The VirtualMachineInstanceReplicaSet reconciler: keeps `spec.replicas` VMIs from the template (the set as their
//! controller owner), deletes finished VMIs so they are replaced, scales down preferring VMIs that are not ready and
//! then the newest, honours `spec.paused`, and reports `replicas`, `readyReplicas` and the `labelSelector` the scale
//! subresource serves (`kubectl scale vmirs`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceReplicaSet};
use serde_json::json;

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a call.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// The selector does not parse.
    #[error("spec.selector: {0}")]
    Selector(String),
}

impl kube_support::ReconcileError for Error {
    fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// `a=b,c in (d)` for the scale subresource's `status.labelSelector`.
#[must_use]
pub fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

fn ready(vmi: &VirtualMachineInstance) -> bool {
    vmi.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.r#type == "Ready" && c.status == "True"))
}

fn finished(vmi: &VirtualMachineInstance) -> bool {
    matches!(
        vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Which VMIs to delete when `excess` too many run: not ready first, then the newest.
#[must_use]
pub fn victims(mut vmis: Vec<&VirtualMachineInstance>, excess: usize) -> Vec<String> {
    vmis.sort_by(|a, b| {
        ready(a)
            .cmp(&ready(b))
            .then_with(|| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    vmis.into_iter()
        .take(excess)
        .filter_map(|v| v.metadata.name.clone())
        .collect()
}

async fn sync(rs: Arc<VirtualMachineInstanceReplicaSet>, client: Arc<kube::Client>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rs.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced((*client).clone(), &ns);
    let sets: Api<VirtualMachineInstanceReplicaSet> = Api::namespaced((*client).clone(), &ns);
    let mut owned = Vec::new();
    for v in vmis.list(&ListParams::default()).await?.items {
        let mine = v
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true));
        let selected = kubevirt_api::selector::matches(&rs.spec.selector, v.metadata.labels.as_ref())
            .map_err(|e| Error::Selector(e.0))?;
        if mine && selected && v.metadata.deletion_timestamp.is_none() {
            owned.push(v);
        }
    }
    // Finished VMIs are replaced.
    for v in owned.iter().filter(|v| finished(v)) {
        if let Some(n) = v.metadata.name.as_deref() {
            vmis.delete(n, &DeleteParams::default()).await?;
        }
    }
    let active: Vec<&VirtualMachineInstance> = owned.iter().filter(|v| !finished(v)).collect();
    let want = usize::try_from(rs.spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let paused = rs.spec.paused.unwrap_or(false);
    if !paused && active.len() < want {
        let template = &rs.spec.template;
        let mut meta = template.metadata.clone().unwrap_or_default();
        meta = ObjectMeta {
            generate_name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachineInstanceReplicaSet".into(),
                name: name.clone(),
                uid: uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        };
        for _ in active.len()..want {
            let vmi = VirtualMachineInstance {
                api_version: Some("kubevirt.io/v1".into()),
                kind: Some("VirtualMachineInstance".into()),
                metadata: meta.clone(),
                spec: template.spec.clone().unwrap_or_default(),
                status: None,
            };
            vmis.create(&PostParams::default(), &vmi).await?;
        }
    } else if !paused && active.len() > want {
        for n in victims(active.clone(), active.len() - want) {
            vmis.delete(&n, &DeleteParams::default()).await?;
        }
    }
    let status = json!({"status": {
        "replicas": i32::try_from(active.len()).unwrap_or(i32::MAX),
        "readyReplicas": i32::try_from(active.iter().filter(|v| ready(v)).count()).unwrap_or(i32::MAX),
        "labelSelector": selector_string(&rs.spec.selector),
    }});
    sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Runs the replica-set controller until the stream ends.
pub async fn run(client: kube::Client) {
    let sets: Api<VirtualMachineInstanceReplicaSet> = Api::all(client.clone());
    let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
    let controller = kube_support::lean_controller(sets, watcher::Config::default())
        .owns(vmis, watcher::Config::default());
    kube_support::run_controller(
        "virt-controller-replicaset",
        client.clone(),
        controller,
        sync,
        Arc::new(client),
    )
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vmi(name: &str, created: &str, ready: bool) -> VirtualMachineInstance {
        serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"domain": {"devices": {}}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .unwrap()
    }

    #[test]
    fn scale_down_prefers_not_ready_then_newest() {
        let a = vmi("a", "2026-01-01T00:00:00Z", true);
        let b = vmi("b", "2026-01-02T00:00:00Z", true);
        let c = vmi("c", "2026-01-01T00:00:00Z", false);
        assert_eq!(victims(vec![&a, &b, &c], 2), ["c", "b"]);
    }

    #[test]
    fn label_selector_strings() {
        let s: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "gone", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert_eq!(selector_string(&s), "app=x,tier in (a,b),!gone");
    }
}
