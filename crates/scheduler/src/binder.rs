//! The box scheduler's loop: watches pods and nodes through the API (kube-rs, as any scheduler would), and for each
//! pending pod without a node either binds it (`pods/binding`) or records why it cannot be placed
//! (`PodScheduled=False`, reason `Unschedulable`). Runs until `stop` is notified.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::json;

use crate::{Decision, schedule};

/// The scheduler name pods may ask for (besides none and `default-scheduler`).
pub const NAME: &str = "kvbox-scheduler";

fn ours(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref()).is_none()
        && p.metadata.deletion_timestamp.is_none()
        && matches!(
            spec.and_then(|s| s.scheduler_name.as_deref()),
            None | Some("default-scheduler" | NAME)
        )
        && p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|ph| ph == "Pending")
}

fn unschedulable_message(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message.clone())
}

async fn place(client: &kube::Client, pod: &Pod, nodes: &[Node], bound: &[Pod]) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match schedule(pod, nodes, bound) {
        Decision::Bind(node) => {
            let binding = Binding {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            match api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), %node, "bound"),
                Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed"),
            }
        }
        Decision::Unschedulable(message) => {
            if unschedulable_message(pod).as_deref() == Some(message.as_str()) {
                return;
            }
            let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message,
                "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now())}]}});
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "recording unschedulable failed");
            }
        }
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Schedules pending pods until `stop` is notified; a periodic pass retries pods whose nodes may have changed.
pub async fn run(client: kube::Client, stop: Arc<tokio::sync::Notify>) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let pod_events = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects()
    .map(|_| ());
    let node_events = reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects()
    .map(|_| ());
    let mut events = std::pin::pin!(futures_util::stream::select(pod_events, node_events));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.notified() => return,
            ev = events.next() => if ev.is_none() { return },
            _ = tick.tick() => {}
        }
        let all_pods: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
        let all_nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let (pending, mut bound): (Vec<Pod>, Vec<Pod>) = all_pods.into_iter().partition(ours);
        bound.retain(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some());
        for pod in &pending {
            place(&client, pod, &all_nodes, &bound).await;
            // What was just bound counts against its node for the next pod.
            if let Decision::Bind(node) = schedule(pod, &all_nodes, &bound) {
                let mut p = pod.clone();
                if let Some(s) = p.spec.as_mut() {
                    s.node_name = Some(node);
                }
                bound.push(p);
            }
        }
    }
}
