//! The VMI reconciler (virt-controller's part of a VMI's life): creates the launcher pod, moves the phase
//! Pending → Scheduling → Scheduled (node name and the `kubevirt.io/nodeName` label once the pod is bound and
//! Ready), fails the VMI when its pod fails or vanishes, copies the pod's PodScheduled condition, and on deletion
//! removes the launcher pod, then the `kubevirt.io/foregroundDeleteVirtualMachine` finalizer.
//! From Scheduled on, the node's handler owns the phase.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::{Value, json};

use crate::pod::{RenderConfig, render};

/// The finalizer that holds a VMI until its launcher pod is gone.
pub const FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a call.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// The VMI cannot be rendered into a pod.
    #[error("rendering the launcher pod: {0}")]
    Render(#[from] crate::pod::RenderError),
}

impl kube_support::ReconcileError for Error {
    fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// Shared state of the reconciler.
pub struct Ctx {
    /// The API client.
    pub client: kube::Client,
    /// The launcher image.
    pub launcher_image: String,
    /// Launcher pods as last seen by a watch: a reconcile reads them here, never lists.
    pub pods: kube::runtime::reflector::Store<Pod>,
    /// Pods this controller created that the watch has not shown yet, by VMI uid (upstream's "expectations"): while
    /// one is expected no second pod is made. An expectation older than [`EXPECTATION`] is checked by listing.
    expected: std::sync::Mutex<HashMap<String, Instant>>,
}

/// How long a created pod may take to show in the watch before the controller looks for it with a list.
const EXPECTATION: Duration = Duration::from_secs(30);

impl Ctx {
    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.expected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("launcher_image", &self.launcher_image)
            .finish_non_exhaustive()
    }
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// A status patch moving the VMI to `to` (recording the transition time) plus `extra` status fields.
fn phase_patch(vmi: &VirtualMachineInstance, to: &str, mut extra: Value) -> Value {
    let mut transitions = serde_json::to_value(
        vmi.status
            .as_ref()
            .and_then(|s| s.phase_transition_timestamps.clone())
            .unwrap_or_default(),
    )
    .unwrap_or_else(|_| json!([]));
    if let Some(a) = transitions.as_array_mut() {
        a.push(json!({"phase": to, "phaseTransitionTimestamp": now()}));
    }
    extra["phase"] = json!(to);
    extra["phaseTransitionTimestamps"] = transitions;
    json!({"status": extra})
}

async fn reconcile(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "reconcile_vmi",
        vmi = %format!("{}/{}", vmi.metadata.namespace.as_deref().unwrap_or_default(), vmi.metadata.name.as_deref().unwrap_or_default())
    );
    // The pod cache must hold the initial list before "no pod" can mean no pod.
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    sync(vmi, ctx).instrument(span).await
}

async fn sync(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let cached: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubevirt.io/created-by"))
                    == Some(&uid)
        })
        .map(|p| (**p).clone())
        .collect();
    let expected_since = ctx.expected().get(&uid).copied();
    let owned = match (cached.is_empty(), expected_since) {
        (false, _) => {
            ctx.expected().remove(&uid);
            cached
        }
        // Created, not in the watch yet: wait for its event.
        (true, Some(t)) if t.elapsed() < EXPECTATION => return Ok(Action::requeue(Duration::from_secs(1))),
        // Long overdue: see for ourselves.
        (true, Some(_)) => {
            ctx.expected().remove(&uid);
            pods.list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
                .await?
                .items
        }
        (true, None) => cached,
    };

    if vmi.metadata.deletion_timestamp.is_some() {
        for p in owned.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            if let Some(n) = p.metadata.name.as_deref() {
                let _ = pods.delete(n, &DeleteParams::default()).await;
            }
        }
        if owned.is_empty() {
            let finalizers: Vec<String> = vmi
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            if finalizers.len() != vmi.metadata.finalizers.as_ref().map_or(0, Vec::len) {
                let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": vmi.metadata.resource_version}});
                vmis.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let ph = phase(&vmi);
    if matches!(ph, "Succeeded" | "Failed") {
        return Ok(Action::await_change());
    }
    let pod = owned.iter().find(|p| p.metadata.deletion_timestamp.is_none());
    match (ph, pod) {
        ("" | "Pending", None) => {
            let cfg = RenderConfig {
                launcher_image: ctx.launcher_image.clone(),
                use_emulation: crate::cluster_config(&ctx.client).await.use_emulation(),
            };
            let rendered = render(&vmi, &cfg)?;
            pods.create(&PostParams::default(), &rendered).await?;
            let mut expected = ctx.expected();
            expected.retain(|_, t| t.elapsed() < 2 * EXPECTATION);
            expected.insert(uid.clone(), Instant::now());
            tracing::info!("created the launcher pod");
        }
        ("" | "Pending", Some(_)) => {
            let patch = phase_patch(&vmi, "Scheduling", json!({}));
            vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        ("Scheduling", Some(p)) => {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let scheduled = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
                .map(|c| json!({"type": "PodScheduled", "status": c.status, "reason": c.reason, "message": c.message,
                    "lastTransitionTime": c.last_transition_time}));
            if let (Some(node), true) = (node.clone(), pod_ready(p)) {
                let patch = phase_patch(&vmi, "Scheduled", json!({"nodeName": node}));
                vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                let label = json!({"metadata": {"labels": {"kubevirt.io/nodeName": node}}});
                vmis.patch(&name, &PatchParams::default(), &Patch::Merge(&label))
                    .await?;
            } else if scheduled.is_some() || pull_error(p).is_some() {
                // The pod's scheduling and image-pull troubles, as the VMI's PodScheduled and Synchronized
                // conditions (the VM's printableStatus reads them).
                let mut conditions: Vec<Value> = scheduled.into_iter().collect();
                if let Some((reason, message)) = pull_error(p) {
                    conditions.push(
                        json!({"type": "Synchronized", "status": "False", "reason": reason,
                        "message": message, "lastTransitionTime": now()}),
                    );
                }
                let current = serde_json::to_value(vmi.status.as_ref().and_then(|s| s.conditions.clone()))
                    .unwrap_or_default();
                let same = |c: &Value| {
                    current.as_array().is_some_and(|cs| {
                        cs.iter().any(|x| {
                            x["type"] == c["type"] && x["reason"] == c["reason"] && x["status"] == c["status"]
                        })
                    })
                };
                if !conditions.iter().all(same) {
                    let patch = json!({"status": {"conditions": conditions}});
                    vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
            }
            if pod_failed(p) {
                let patch = phase_patch(&vmi, "Failed", json!({"reason": "PodFailed"}));
                vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        ("Scheduling" | "Scheduled" | "Running", None) => {
            let patch = phase_patch(&vmi, "Failed", json!({"reason": "PodNotExists"}));
            vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        // A running VMI's handler reports how its domain ended; only when it has not within a while is the
        // finished pod taken as a failure.
        ("Running", Some(p)) if pod_failed(p) && finished_for(p).is_some_and(|d| d < HANDLER_GRACE) => {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        (_, Some(p)) if pod_failed(p) => {
            let patch = phase_patch(&vmi, "Failed", json!({"reason": "PodFailed"}));
            vmis.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        _ => {}
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// A container of the pod that cannot get its image: `(ErrImagePull | ImagePullBackOff, message)`.
fn pull_error(p: &Pod) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            let reason = w.reason.clone()?;
            matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
                .then(|| (reason, w.message.clone().unwrap_or_default()))
        })
}

/// How long the handler has to report a domain's end after its launcher pod finished.
const HANDLER_GRACE: Duration = Duration::from_secs(15);

/// How long ago the pod's compute container finished.
fn finished_for(p: &Pod) -> Option<Duration> {
    let at = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "compute")?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()?
        .0;
    Some(jiff::Timestamp::now().duration_since(at).unsigned_abs())
}

fn pod_failed(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// Runs the VMI controller until the stream ends. Pod events reach it through the same watch that fills
/// [`Ctx::pods`], so a reconcile never sees a cache older than the event that triggered it.
pub async fn run(client: kube::Client, launcher_image: String) {
    use kube::runtime::WatchStreamExt as _;
    let (reader, writer) = kube::runtime::reflector::store();
    let pods: Api<Pod> = Api::all(client.clone());
    let pod_events = kube::runtime::reflector(
        writer,
        kube_support::lean_watch(
            pods,
            watcher::Config::default().labels("kubevirt.io=virt-launcher"),
        ),
    )
    .touched_objects();
    let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        launcher_image,
        pods: reader,
        expected: std::sync::Mutex::default(),
    });
    let (vmi_reader, vmi_writer) = kube::runtime::reflector::store();
    Controller::for_stream(
        crate::lean_watch(vmis, watcher::Config::default(), vmi_writer),
        vmi_reader,
    )
    .owns_stream(pod_events)
    .run(reconcile, kube_support::error_policy, ctx)
    .for_each(|_| async {})
    .await;
}
