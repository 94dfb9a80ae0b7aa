//! The VirtualMachine reconciler: turns the run strategy into a VMI (created from the template, the VM as its
//! controller owner, named like the VM) or its absence, and reports `created`, `ready`, `runStrategy`,
//! `observedGeneration` and `printableStatus`.
//!
//! Every VM carries upstream's `kubevirt.io/virtualMachineControllerFinalize` finalizer; a deleted VM first stops its
//! VMI, then lets go.
//!
//! Run strategies: Always (create; a finished VMI is deleted and so recreated), Halted (delete), Manual (only
//! Start/Stop requests in `status.stateChangeRequests` act), RerunOnFailure (create; a Failed VMI is recreated, a
//! Succeeded one stays), Once (create only if never created). Not yet: crash-loop backoff (`startFailure`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use serde_json::{Value, json};

use crate::instancetype::SyncError;

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a call.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
}

impl kube_support::ReconcileError for Error {
    fn kube_error(&self) -> Option<&kube::Error> {
        let Self::Api(e) = self;
        Some(e)
    }
}

/// Shared state.
pub struct Ctx {
    /// The API client.
    pub client: kube::Client,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

fn condition<'a>(
    vmi: &'a VirtualMachineInstance,
    kind: &str,
) -> Option<&'a kubevirt_api::v1::VirtualMachineInstanceCondition> {
    vmi.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.r#type == kind)
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// `status.printableStatus`, first match wins in upstream's order (the subset this control loop can observe).
#[must_use]
pub fn printable_status(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    strategy: &str,
) -> &'static str {
    if vm.metadata.deletion_timestamp.is_some() {
        return "Terminating";
    }
    let Some(vmi) = vmi else { return "Stopped" };
    let final_ = matches!(phase(vmi), "Succeeded" | "Failed");
    if vmi.metadata.deletion_timestamp.is_some() || (strategy == "Halted" && !final_) {
        return "Stopping";
    }
    if condition(vmi, "Paused").is_some_and(|c| c.status == "True") {
        return "Paused";
    }
    if phase(vmi) == "Running" {
        return "Running";
    }
    if condition(vmi, "PodScheduled")
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    {
        return "ErrorUnschedulable";
    }
    if let Some(reason) = condition(vmi, "Synchronized")
        .filter(|c| c.status == "False")
        .and_then(|c| c.reason.as_deref())
        .filter(|r| matches!(*r, "ErrImagePull" | "ImagePullBackOff"))
    {
        return if reason == "ErrImagePull" {
            "ErrImagePull"
        } else {
            "ImagePullBackOff"
        };
    }
    if matches!(phase(vmi), "" | "Pending" | "Scheduling" | "Scheduled") {
        return "Starting";
    }
    if final_ {
        return "Stopped";
    }
    "Unknown"
}

fn requested(vm: &VirtualMachine, action: &str) -> bool {
    vm.status
        .as_ref()
        .and_then(|s| s.state_change_requests.as_ref())
        .is_some_and(|rs| rs.iter().any(|r| r.action == action))
}

/// A disk for every volume that has neither a disk nor a filesystem (upstream's `SetDefaultVolumeDisk`), before a
/// preference fills the disks' buses.
fn default_volume_disks(spec: &mut kubevirt_api::v1::VirtualMachineInstanceSpec) {
    let devices = &mut spec.domain.devices;
    let mut named: Vec<String> = devices.disks.iter().flatten().map(|d| d.name.clone()).collect();
    named.extend(devices.filesystems.iter().flatten().map(|f| f.name.clone()));
    for v in spec.volumes.iter().flatten() {
        if !named.contains(&v.name) {
            devices
                .disks
                .get_or_insert_with(Vec::new)
                .push(kubevirt_api::v1::Disk {
                    name: v.name.clone(),
                    ..Default::default()
                });
        }
    }
}

fn new_vmi(vm: &VirtualMachine) -> VirtualMachineInstance {
    let t = vm.spec.template.metadata.clone().unwrap_or_default();
    let mut spec = vm.spec.template.spec.clone().unwrap_or_default();
    default_volume_disks(&mut spec);
    VirtualMachineInstance {
        api_version: Some("kubevirt.io/v1".into()),
        kind: Some("VirtualMachineInstance".into()),
        metadata: ObjectMeta {
            name: vm.metadata.name.clone(),
            namespace: vm.metadata.namespace.clone(),
            labels: t.labels,
            annotations: t.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachine".into(),
                name: vm.metadata.name.clone().unwrap_or_default(),
                uid: vm.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "reconcile_vm",
        vm = %format!("{}/{}", vm.metadata.namespace.as_deref().unwrap_or_default(), vm.metadata.name.as_deref().unwrap_or_default())
    );
    sync(vm, ctx).instrument(span).await
}

async fn sync(vm: Arc<VirtualMachine>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vm.metadata.name.clone().unwrap_or_default();
    let vms: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), &ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let strategy = kubevirt_api::defaults::effective_run_strategy(&vm.spec).to_string();
    let mut vmi = vmis.get_opt(&name).await?;
    // Only a VMI this VM controls counts.
    if vmi.as_ref().is_some_and(|v| {
        !v.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == vm.metadata.uid.as_ref() && o.controller == Some(true))
    }) {
        vmi = None;
    }
    let mut clear_requests = false;
    // Crash-loop backoff: count a VMI that failed before it ran; hold the next start until retryAfter.
    let now = jiff::Timestamp::now();
    let failure_update = crate::backoff::next(&vm, vmi.as_ref(), now, crate::backoff::jitter());
    let failure = match &failure_update {
        Some(f) => f.clone(),
        None => vm.status.as_ref().and_then(|s| s.start_failure.clone()),
    };
    let backing_off = crate::backoff::waiting(failure.as_ref(), now);
    // Upstream's finalizer: held while the VM lives, so its VMI is stopped before the VM goes.
    if finalizer(&vms, &vmis, &vm, vmi.as_ref()).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Instancetype and preference: revisions stored and referenced before any VMI is made from them.
    let mut sync_error: Option<SyncError> = None;
    let mut refs = (None, None);
    if vm.metadata.deletion_timestamp.is_none()
        && (vm.spec.instancetype.is_some() || vm.spec.preference.is_some())
    {
        // Under the expand policies the instancetype is written into the VM instead (the rewrite is reconciled anew).
        let config = crate::cluster_config(&ctx.client).await;
        if crate::expandpolicy::decide(&config.instancetype_reference_policy(), &vm) == Some(true) {
            match crate::expandpolicy::expand(&ctx.client, &vm, &config).await {
                Ok(true) => return Ok(Action::requeue(Duration::from_secs(1))),
                Ok(false) => {}
                Err(e) => sync_error = Some(e),
            }
        }
        if sync_error.is_none() {
            match crate::instancetype::sync_refs(&ctx.client, &vm).await {
                Ok(r) => refs = r,
                Err(e) => sync_error = Some(e),
            }
        }
    }
    let vm_with_refs = {
        let mut v = (*vm).clone();
        let st = v.status.get_or_insert_with(Default::default);
        if refs.0.is_some() {
            st.instancetype_ref.clone_from(&refs.0);
        }
        if refs.1.is_some() {
            st.preference_ref.clone_from(&refs.1);
        }
        v
    };
    if vm.metadata.deletion_timestamp.is_none() && sync_error.is_none() {
        let exists = vmi
            .as_ref()
            .is_some_and(|v| v.metadata.deletion_timestamp.is_none());
        let final_phase = vmi
            .as_ref()
            .map(|v| phase(v).to_string())
            .filter(|p| p == "Succeeded" || p == "Failed");
        let delete = match strategy.as_str() {
            "Halted" => exists,
            "Always" => exists && (final_phase.is_some() || requested(&vm, "Stop")),
            "RerunOnFailure" => {
                exists && (final_phase.as_deref() == Some("Failed") || requested(&vm, "Stop"))
            }
            "Manual" => exists && requested(&vm, "Stop"),
            _ => false,
        };
        let create = !exists
            && vmi.is_none()
            && backing_off.is_none()
            && match strategy.as_str() {
                "Always" | "RerunOnFailure" => !requested(&vm, "Stop"),
                "Manual" => requested(&vm, "Start"),
                "Once" => vm.status.as_ref().and_then(|s| s.created).is_none(),
                _ => false,
            };
        if delete {
            vmis.delete(&name, &DeleteParams::default()).await?;
            clear_requests = requested(&vm, "Stop");
        } else if create {
            match start_vmi(&ctx.client, &vmis, &vm_with_refs).await {
                Ok(Some(v)) => {
                    vmi = Some(v);
                    clear_requests = requested(&vm, "Start");
                }
                Ok(None) => clear_requests = requested(&vm, "Start"),
                Err(e) => sync_error = Some(e),
            }
        }
    }
    let ready = vmi
        .as_ref()
        .and_then(|v| condition(v, "Ready"))
        .is_some_and(|c| c.status == "True");
    // The VM's Ready condition mirrors its VMI's (the `kubectl get vm` READY column).
    let ready_condition = match vmi.as_ref().and_then(|v| condition(v, "Ready")) {
        Some(c) => json!({"type": "Ready", "status": c.status, "reason": c.reason, "message": c.message,
            "lastTransitionTime": c.last_transition_time, "lastProbeTime": null}),
        None => json!({"type": "Ready", "status": "False", "reason": "VMINotExists",
            "message": "VMI does not exist", "lastProbeTime": null}),
    };
    let mut conditions: Vec<Value> = vm
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.r#type != "Ready" && c.r#type != "Failure")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    conditions.push(ready_condition);
    if let Some(e) = &sync_error {
        conditions.push(failure_condition(&vm, e));
    }
    let mut status = json!({
        "conditions": conditions,
        "created": vmi.is_some(),
        "ready": ready,
        "runStrategy": strategy,
        "printableStatus": if backing_off.is_some() && matches!(strategy.as_str(), "Always" | "RerunOnFailure") && vmi.as_ref().is_none_or(|v| matches!(phase(v), "Succeeded" | "Failed")) && vm.metadata.deletion_timestamp.is_none() {
            "CrashLoopBackOff"
        } else {
            printable_status(&vm, vmi.as_ref(), &strategy)
        },
        "observedGeneration": vm.metadata.generation,
    });
    if let Some(r) = refs
        .0
        .filter(|r| Some(r) != vm.status.as_ref().and_then(|s| s.instancetype_ref.as_ref()))
    {
        status["instancetypeRef"] = serde_json::to_value(r).unwrap_or(Value::Null);
    }
    if let Some(r) = refs
        .1
        .filter(|r| Some(r) != vm.status.as_ref().and_then(|s| s.preference_ref.as_ref()))
    {
        status["preferenceRef"] = serde_json::to_value(r).unwrap_or(Value::Null);
    }
    if clear_requests {
        status["stateChangeRequests"] = json!(null);
    }
    if let Some(f) = failure_update {
        status["startFailure"] = serde_json::to_value(f).unwrap_or(Value::Null);
    }
    vms.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    // A failure is retried soon: what it waits for (an instancetype, a quota) is not watched.
    let retry = if sync_error.is_some() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    Ok(Action::requeue(
        backing_off.map_or(retry, |w| w + Duration::from_millis(500)),
    ))
}

/// The finalizer upstream's VM controller keeps on every VM.
pub const FINALIZER: &str = "kubevirt.io/virtualMachineControllerFinalize";

/// Adds the finalizer to a live VM; on a deleted one stops its VMI, then removes the finalizer once the VMI is gone.
/// True when it wrote the VM (the next pass sees the result).
async fn finalizer(
    vms: &Api<VirtualMachine>,
    vmis: &Api<VirtualMachineInstance>,
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
) -> Result<bool, Error> {
    let name = vm.metadata.name.clone().unwrap_or_default();
    let list: Vec<String> = vm.metadata.finalizers.clone().unwrap_or_default();
    let has = list.iter().any(|f| f == FINALIZER);
    let write = |list: Vec<String>| {
        // The resourceVersion turns a concurrent change of the list into a conflict, retried.
        let finalizers = if list.is_empty() { Value::Null } else { json!(list) };
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": vm.metadata.resource_version}})
    };
    let result = if vm.metadata.deletion_timestamp.is_none() {
        if has {
            return Ok(false);
        }
        let mut with = list;
        with.push(FINALIZER.to_string());
        vms.patch(&name, &PatchParams::default(), &Patch::Merge(&write(with)))
            .await
    } else {
        if !has {
            return Ok(false);
        }
        // `--cascade=orphan` keeps the VMI running.
        let orphaning = list.iter().any(|f| f == "orphan");
        if let Some(v) = vmi.filter(|_| !orphaning) {
            if v.metadata.deletion_timestamp.is_none() {
                match vmis.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(false);
        }
        let without = list.into_iter().filter(|f| f != FINALIZER).collect();
        vms.patch(&name, &PatchParams::default(), &Patch::Merge(&write(without)))
            .await
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Creates the VM's VMI with its instancetype and preference expanded; `None` when it exists already.
async fn start_vmi(
    client: &kube::Client,
    vmis: &Api<VirtualMachineInstance>,
    vm: &VirtualMachine,
) -> Result<Option<VirtualMachineInstance>, SyncError> {
    let mut vmi = new_vmi(vm);
    crate::instancetype::apply_to_vmi(client, vm, &mut vmi).await?;
    match vmis.create(&PostParams::default(), &vmi).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => {
            let message = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            tracing::warn!(error = %message, "creating the VMI");
            Err(SyncError {
                reason: "FailedCreate",
                message: format!("Failure while starting VMI: {message}"),
            })
        }
    }
}

/// The `Failure` condition for a sync error; its transition time kept while the failure stays the same.
fn failure_condition(vm: &VirtualMachine, e: &SyncError) -> Value {
    let same = vm
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == "Failure"))
        .filter(|c| {
            c.reason.as_deref() == Some(e.reason) && c.message.as_deref() == Some(e.message.as_str())
        });
    let at = same
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    json!({"type": "Failure", "status": "True", "reason": e.reason, "message": e.message,
        "lastTransitionTime": at, "lastProbeTime": null})
}

/// Runs the VM controller until the stream ends.
pub async fn run(ctx: Arc<Ctx>) {
    let vms: Api<VirtualMachine> = Api::all(ctx.client.clone());
    let vmis: Api<VirtualMachineInstance> = Api::all(ctx.client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    Controller::for_stream(crate::lean_watch(vms, watcher::Config::default(), writer), reader)
        .owns(vmis, watcher::Config::default())
        .run(reconcile, kube_support::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
