//! The node watch: a KubeVirt node whose `kubevirt.io/heartbeat` annotation (written by its handler) is older than
//! the timeout is marked `kubevirt.io/schedulable=false`, and the VMIs still running there are set Failed with
//! reason `NodeUnresponsive` (their VM controllers then recreate them elsewhere, per run strategy).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::json;

/// The annotation handlers refresh.
pub const HEARTBEAT: &str = "kubevirt.io/heartbeat";
/// The label the scheduler's node selector requires.
pub const SCHEDULABLE: &str = "kubevirt.io/schedulable";
/// Upstream's default: five minutes without a heartbeat.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether `node`'s heartbeat is older than `timeout` at `now`. Nodes without a heartbeat are not KubeVirt's.
#[must_use]
pub fn stale(node: &Node, now: jiff::Timestamp, timeout: Duration) -> bool {
    let Some(beat) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HEARTBEAT))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    let age = now.duration_since(beat);
    age.is_positive() && age.unsigned_abs() > timeout
}

async fn check(client: &kube::Client, timeout: Duration) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = jiff::Timestamp::now();
    for node in nodes.list(&ListParams::default()).await?.items {
        if !stale(&node, now, timeout) {
            continue;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let schedulable = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SCHEDULABLE))
            .map(String::as_str);
        if schedulable != Some("false") {
            tracing::warn!(node = %name, "heartbeat stale: marking the node unschedulable");
            let patch = json!({"metadata": {"labels": {SCHEDULABLE: "false"}}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
        for vmi in vmis.list(&ListParams::default()).await?.items {
            let status = vmi.status.as_ref();
            let on_node = status.and_then(|s| s.node_name.as_deref()) == Some(name.as_str());
            let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
            if !on_node || matches!(phase, "Succeeded" | "Failed") {
                continue;
            }
            let (Some(ns), Some(vname)) = (vmi.metadata.namespace.as_deref(), vmi.metadata.name.as_deref())
            else {
                continue;
            };
            let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
            let patch = json!({"status": {"phase": "Failed", "reason": "NodeUnresponsive"}});
            api.patch_status(vname, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::warn!(vmi = %format!("{ns}/{vname}"), node = %name, "failed: node unresponsive");
        }
    }
    Ok(())
}

/// Checks every node periodically until `stop` is notified.
pub async fn run(client: kube::Client, timeout: Duration, stop: Arc<tokio::sync::Notify>) {
    let period = (timeout / 4).clamp(Duration::from_millis(500), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    // Registered once, so a stop that comes during a check is not missed.
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = check(&client, timeout).await {
            tracing::warn!(error = %e, "node heartbeat check failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn staleness() {
        let node = |beat: Option<&str>| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n", "annotations": beat.map(|b| json!({HEARTBEAT: b})).unwrap_or(json!({}))}}))
                .unwrap()
        };
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        assert!(stale(&node(Some("2026-01-01T00:04:00Z")), now, DEFAULT_TIMEOUT));
        assert!(!stale(&node(Some("2026-01-01T00:06:00Z")), now, DEFAULT_TIMEOUT));
        assert!(!stale(&node(None), now, DEFAULT_TIMEOUT), "not a KubeVirt node");
        assert!(!stale(&node(Some("garbage")), now, DEFAULT_TIMEOUT));
    }
}
