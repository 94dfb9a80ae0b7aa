//! The box scheduler's loop: watches pods and nodes through the API (kube-rs, as any scheduler would), and for each
//! pending pod without a node either binds it (`pods/binding`) or records why it cannot be placed
//! (`PodScheduled=False`, reason `Unschedulable`). Runs until `stop` is notified.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::json;

use crate::volumes::{SELECTED_NODE, Volumes, volumes};
use crate::{Decision, Placed, schedule_with};

/// The claims, volumes and classes the volume binding reads.
struct Claims {
    pvcs: reflector::Store<PersistentVolumeClaim>,
    pvs: reflector::Store<PersistentVolume>,
    classes: reflector::Store<StorageClass>,
}

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

/// Binds `pod` or records why it cannot be; returns the node it is now bound to (also when a bind raced another and
/// the API says the pod is bound already).
async fn place(
    client: &kube::Client,
    pod: &Pod,
    nodes: &[Node],
    bound: &[Placed<'_>],
    claims: &Claims,
) -> Option<String> {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
        return None;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (decision, to_select) = match volumes(
        pod,
        &claims.pvcs.state(),
        &claims.pvs.state(),
        &claims.classes.state(),
    ) {
        Volumes::Waiting => return None,
        Volumes::Unschedulable(why) => (Decision::Unschedulable(why), Vec::new()),
        Volumes::Place { affinity, to_select } => (schedule_with(pod, nodes, bound, &affinity), to_select),
    };
    // Claims that wait for their first consumer are placed with it; the pod is bound once they are.
    if let (Decision::Bind(node), false) = (&decision, to_select.is_empty()) {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        for claim in &to_select {
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            match pvcs
                .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(claim = %format!("{ns}/{claim}"), %node, "volume placed with its pod")
                }
                Err(e) => {
                    tracing::warn!(claim = %format!("{ns}/{claim}"), error = %e, "selecting the volume's node")
                }
            }
        }
        return None;
    }
    match decision {
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
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), %node, "bound");
                    Some(node)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), "already bound");
                    Some(node)
                }
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed");
                    None
                }
            }
        }
        Decision::Unschedulable(message) => {
            if unschedulable_message(pod).as_deref() == Some(message.as_str()) {
                return None;
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
            None
        }
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Schedules pending pods until `stop` is notified; a periodic pass retries pods whose nodes may have changed.
///
/// Like kube-scheduler, a pod it bound is *assumed* on its node until the watch shows the binding, so a pass that
/// runs on a cache older than its own writes neither binds the pod again nor forgets what it takes from the node.
/// Events that arrive together are handled by one pass.
pub async fn run(client: kube::Client, stop: Arc<tokio::sync::Notify>) {
    use futures_util::FutureExt as _;
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let pod_events = reflector(
        pod_writer,
        kube_support::lean_watch(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .applied_objects()
    .map(|_| ());
    let node_events = reflector(
        node_writer,
        kube_support::lean_watch(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .applied_objects()
    .map(|_| ());
    // Claims and volumes: a pass when they change (a claim placed with its pod binds, and the pod can go).
    let (pvcs, pvc_writer) = reflector::store::<PersistentVolumeClaim>();
    let (pvs, pv_writer) = reflector::store::<PersistentVolume>();
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let pvc_events = reflector(
        pvc_writer,
        kube_support::lean_watch(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .applied_objects()
    .map(|_| ());
    let pv_events = reflector(
        pv_writer,
        kube_support::lean_watch(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .applied_objects()
    .map(|_| ());
    let class_events = reflector(
        class_writer,
        kube_support::lean_watch(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .applied_objects()
    .map(|_| ());
    let claims = Claims { pvcs, pvs, classes };
    let mut events = std::pin::pin!(futures_util::stream::select_all([
        pod_events.boxed(),
        node_events.boxed(),
        pvc_events.boxed(),
        pv_events.boxed(),
        class_events.boxed(),
    ]));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    // Pods bound by us that the cache does not show bound yet: uid → node.
    let mut assumed: HashMap<String, String> = HashMap::new();
    // Registered once, so a stop that comes during a pass is not missed.
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    loop {
        tokio::select! {
            () = &mut stopped => return,
            ev = events.next() => if ev.is_none() { return },
            _ = tick.tick() => {}
        }
        // Whatever else is already waiting joins this pass.
        while let Some(ev) = events.next().now_or_never() {
            if ev.is_none() {
                return;
            }
        }
        let state = pods.state();
        let all_nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        // Forget assumptions the cache has caught up with (bound there, or gone).
        let live: HashMap<String, bool> = state
            .iter()
            .map(|p| {
                (
                    uid(p),
                    p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
                )
            })
            .collect();
        assumed.retain(|u, _| live.get(u) == Some(&false));
        // Pods on nodes (bound, or assumed): shared, not copied.
        let mut bound: Vec<(String, Arc<Pod>)> = Vec::new();
        let mut pending: Vec<Arc<Pod>> = Vec::new();
        for p in &state {
            if let Some(node) = assumed.get(&uid(p)) {
                bound.push((node.clone(), p.clone()));
            } else if ours(p) {
                pending.push(p.clone());
            } else if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                bound.push((node, p.clone()));
            }
        }
        for pod in pending {
            let placed: Vec<Placed<'_>> = bound.iter().map(|(n, p)| (n.as_str(), &**p)).collect();
            let done = place(&client, &pod, &all_nodes, &placed, &claims).await;
            if let Some(node) = done {
                // What was just bound counts against its node for the next pod.
                assumed.insert(uid(&pod), node.clone());
                bound.push((node, pod));
            }
        }
    }
}
