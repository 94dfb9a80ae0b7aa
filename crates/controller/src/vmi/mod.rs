//! The VMI reconciler (virt-controller's part of a VMI's life): creates the launcher pod, moves the phase
//! Pending → Scheduling → Scheduled (node name and the `kubevirt.io/nodeName` label once the pod is bound and
//! Ready), fails the VMI when its pod fails or vanishes, copies the pod's PodScheduled condition, and on deletion
//! removes the launcher pod, then the `kubevirt.io/foregroundDeleteVirtualMachine` finalizer.
//! From Scheduled on, the node's handler owns the phase.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::json;

use crate::pod::{RenderConfig, render};

pub mod decide;
#[cfg(test)]
mod tests;
pub mod volumes;

pub use decide::FINALIZER;
use decide::{Decision, Teardown};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::VmiPhase;

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
            Self::Render(_) => None,
        }
    }

    /// A VMI that cannot be rendered into a pod stays so (its spec does not change): upstream's FailedCreate event.
    fn permanent(&self) -> Option<&'static str> {
        matches!(self, Self::Render(_)).then_some("FailedCreate")
    }
}

/// Shared state of the reconciler.
pub struct Ctx {
    /// The API client.
    pub client: kube::Client,
    /// The launcher image.
    pub launcher_image: String,
    /// Events about VMIs.
    pub events: kube_support::Events,
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

/// How often a VMI in a final phase is looked at again.
const FINAL_RECHECK: Duration = Duration::from_secs(300);

async fn sync(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // The pod cache must hold the initial list before "no pod" can mean no pod.
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Observe: the pods this VMI created.
    let Some(owned) = owned_pods(&ctx, &pods, &ns, &uid).await? else {
        // Created, not in the watch yet: wait for its event.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    if vmi.metadata.deletion_timestamp.is_some() {
        return match decide::teardown(&vmi, &owned) {
            Teardown::DeletePods(names) => {
                for n in names {
                    match pods.delete(&n, &DeleteParams::default()).await {
                        Ok(_) => tracing::info!(pod = %n, "deleting the launcher pod"),
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => tracing::warn!(pod = %n, error = %e, "deleting the launcher pod"),
                    }
                }
                Ok(Action::requeue(Duration::from_secs(1)))
            }
            Teardown::Wait => Ok(Action::requeue(Duration::from_secs(1))),
            Teardown::Release(rest) => {
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": vmi.metadata.resource_version}});
                vmis.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(Action::await_change())
            }
            Teardown::Done => Ok(Action::await_change()),
        };
    }
    let pod = owned
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && !volumes::ephemeral(p));
    // Interfaces hot-plugged or unplugged on a running VMI: its pod's secondary networks follow (Multus' dynamic
    // networks controller attaches and detaches them).
    if let Some(p) = pod.filter(|_| VmiPhase::of(&vmi) == VmiPhase::Running) {
        let want = kubevirt_api::network::multus_annotation(&vmi);
        let have = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(kubevirt_api::nad::NETWORKS_ANNOTATION))
            .cloned();
        if want != have {
            let pod_name = p.metadata.name.clone().unwrap_or_default();
            let patch = json!({"metadata": {"annotations": {kubevirt_api::nad::NETWORKS_ANNOTATION: want}}});
            pods.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(pod = %pod_name, "the pod's secondary networks follow the VMI's interfaces");
        }
    }
    let now = jiff::Timestamp::now();
    let finished = pod.and_then(|p| decide::finished_for(p, now));
    match decide::decide(&vmi, pod, finished, &Time(now)) {
        // Nothing will change by itself, but a trigger lost around a restart must not leave a VMI unseen for ever
        // (its deletion above is the work that waits): look again now and then, from the cache only.
        Decision::Wait if VmiPhase::of(&vmi).is_final() => {
            return Ok(Action::requeue(FINAL_RECHECK));
        }
        Decision::Wait => {}
        Decision::RecheckSoon => return Ok(Action::requeue(Duration::from_secs(2))),
        Decision::CreatePod => {
            let cfg = RenderConfig {
                launcher_image: ctx.launcher_image.clone(),
                use_emulation: crate::cluster_config(&ctx.client).await.use_emulation(),
            };
            let rendered = render(&vmi, &cfg)?;
            if let Some(wait) = wait_for_volumes(&ctx, &vmi, &vmis, &pods, &owned, &rendered).await? {
                return Ok(wait);
            }
            pods.create(&PostParams::default(), &rendered).await?;
            let mut expected = ctx.expected();
            expected.retain(|_, t| t.elapsed() < 2 * EXPECTATION);
            expected.insert(uid.clone(), Instant::now());
            tracing::info!("created the launcher pod");
        }
        Decision::Status(status, node) => {
            let old = vmi.status.clone().unwrap_or_default();
            if let Some(patch) = kube_support::merge::diff_of(&old, &*status) {
                vmis.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": patch})),
                )
                .await?;
            }
            if let Some(node) = node {
                let label = json!({"metadata": {"labels": {"kubevirt.io/nodeName": node}}});
                vmis.patch(&name, &PatchParams::default(), &Patch::Merge(&label))
                    .await?;
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Holds the launcher pod back while the VMI's volumes are not ready (the conditions and events say why, a
/// placeholder pod gets WaitForFirstConsumer claims a node); `None` when it may be created (placeholders gone).
async fn wait_for_volumes(
    ctx: &Ctx,
    vmi: &VirtualMachineInstance,
    vmis: &Api<VirtualMachineInstance>,
    pods: &Api<Pod>,
    owned: &[Pod],
    rendered: &Pod,
) -> Result<Option<Action>, Error> {
    use kubevirt_api::state::{self, Condition as _, ConditionType, reason};
    use kubevirt_api::v1::VirtualMachineInstanceCondition as Cond;
    let gate = volumes::gate(&ctx.client, vmi).await?;
    let mut conditions = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let placeholders: Vec<&Pod> = owned.iter().filter(|p| volumes::ephemeral(p)).collect();
    let wait = match gate {
        volumes::Gate::Ready { dvs } => {
            for p in placeholders
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let n = p.metadata.name.clone().unwrap_or_default();
                match pods.delete(&n, &DeleteParams::default()).await {
                    Ok(_) => ctx.events.normal(
                        vmi,
                        "SuccessfulDelete",
                        format!("Deleted WaitForFirstConsumer temporary pod {n}"),
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if dvs {
                let c = Cond::new(ConditionType::DataVolumesReady, "True")
                    .with_reason(reason::ALL_DVS_READY)
                    .with_message("All of the VMI's DVs are bound and ready");
                state::set(&mut conditions, c, &now);
            }
            state::remove(&mut conditions, ConditionType::Provisioning);
            None
        }
        volumes::Gate::Waiting { first_consumer } => {
            let c = Cond::new(ConditionType::DataVolumesReady, "False")
                .with_reason(reason::NOT_ALL_DVS_READY)
                .with_message("Not all of the VMI's DVs are ready");
            state::set(&mut conditions, c, &now);
            if first_consumer {
                state::set(
                    &mut conditions,
                    Cond::new(ConditionType::Provisioning, "True"),
                    &now,
                );
                if placeholders.is_empty() {
                    let created = pods
                        .create(&PostParams::default(), &volumes::placeholder(rendered.clone()))
                        .await?;
                    let n = created.metadata.name.unwrap_or_default();
                    tracing::info!(pod = %n, "a placeholder pod for WaitForFirstConsumer volumes");
                    ctx.expected()
                        .insert(vmi.metadata.uid.clone().unwrap_or_default(), Instant::now());
                }
            }
            Some(Action::requeue(Duration::from_secs(2)))
        }
        volumes::Gate::MissingClaim(claim) => {
            let msg = format!("PVC {claim} does not exist, waiting for it to appear");
            ctx.events.normal(vmi, reason::FAILED_PVC_NOT_FOUND, msg.clone());
            let c = Cond::new(ConditionType::Synchronized, "False")
                .with_reason(reason::FAILED_PVC_NOT_FOUND)
                .with_message(&msg);
            state::set(&mut conditions, c, &now);
            Some(Action::requeue(Duration::from_secs(5)))
        }
    };
    let old = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if old != conditions {
        let patch = json!({"status": {"conditions": conditions}});
        vmis.patch_status(
            vmi.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(wait)
}

/// The pods the VMI with `uid` created, from the watch's cache; `None` while a pod this controller created has not
/// shown in the watch yet. An expectation overdue by [`EXPECTATION`] is checked with a list.
async fn owned_pods(ctx: &Ctx, pods: &Api<Pod>, ns: &str, uid: &str) -> Result<Option<Vec<Pod>>, Error> {
    let cached: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubevirt.io/created-by"))
                    .map(String::as_str)
                    == Some(uid)
        })
        .map(|p| (**p).clone())
        .collect();
    let expected_since = ctx.expected().get(uid).copied();
    Ok(match (cached.is_empty(), expected_since) {
        (false, _) => {
            ctx.expected().remove(uid);
            Some(cached)
        }
        (true, Some(t)) if t.elapsed() < EXPECTATION => None,
        // Long overdue: see for ourselves.
        (true, Some(_)) => {
            ctx.expected().remove(uid);
            let selector = format!("kubevirt.io/created-by={uid}");
            Some(pods.list(&ListParams::default().labels(&selector)).await?.items)
        }
        (true, None) => Some(cached),
    })
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
    let controller = kube_support::lean_controller(vmis, watcher::Config::default()).owns_stream(pod_events);
    let ctx = Arc::new(Ctx {
        events: kube_support::Events::new(client.clone(), "virtualmachineinstance-controller"),
        client: client.clone(),
        launcher_image,
        pods: reader,
        expected: std::sync::Mutex::default(),
    });
    kube_support::run_controller("virt-controller-vmi", client, controller, sync, ctx).await;
}
