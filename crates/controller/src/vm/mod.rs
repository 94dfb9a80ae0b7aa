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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use serde_json::{Value, json};

use crate::instancetype::SyncError;

pub mod datavolumes;
pub mod decide;
pub mod network;
#[cfg(test)]
mod tests;

use decide::Act;
pub use decide::printable_status;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::RunStrategy;
use kubevirt_api::v1::InstancetypeStatusRef;

/// Why a reconcile failed: only API calls fail it (instancetype troubles are the VM's Failure condition).
type Error = kube_support::ApiError;

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
            owner_references: Some(vec![owner_ref(vm)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// What the VM loop works with: the API and upstream's `virtualmachine-controller` events.
struct Ctx {
    client: kube::Client,
    events: kube_support::Events,
}

async fn sync(vm: Arc<VirtualMachine>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let client = &ctx.client;
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vm.metadata.name.clone().unwrap_or_default();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &ns);
    // Observe: the VMI this VM controls (only that one counts), the crash-loop backoff.
    let mut vmi = vmis.get_opt(&name).await?.filter(|v| controlled_by(v, &vm));
    let now = jiff::Timestamp::now();
    let start_failure = crate::backoff::next(&vm, vmi.as_ref(), now, crate::backoff::jitter());
    let failure = match &start_failure {
        Some(f) => f.clone(),
        None => vm.status.as_ref().and_then(|s| s.start_failure.clone()),
    };
    let backing_off = crate::backoff::waiting(failure.as_ref(), now);
    // Upstream's finalizer: held while the VM lives, so its VMI is stopped before the VM goes.
    if finalizer(&vms, &vmis, &vm, vmi.as_ref()).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Instancetype and preference: revisions stored and referenced before any VMI is made from them.
    let (refs, mut sync_error) = match instancetype_refs(client, &vm).await {
        Ok(None) => return Ok(Action::requeue(Duration::from_secs(1))),
        Ok(Some(refs)) => (refs, None),
        Err(e) => ((None, None), Some(e)),
    };
    let strategy = RunStrategy::of(&vm);
    // The template's DataVolumes exist (also for a halted VM); a VMI waits for them.
    let volumes = datavolumes::sync(client, &ctx.events, &vm).await?;
    // Decide, then act.
    let plan = if vm.metadata.deletion_timestamp.is_none() && sync_error.is_none() {
        let mut plan = decide::plan(strategy, &vm, vmi.as_ref(), backing_off.is_some());
        if plan.act == Act::Create && !volumes.ready {
            tracing::info!("the VMI waits for its DataVolumes");
            plan.act = Act::Nothing;
        }
        plan
    } else {
        decide::Plan {
            act: Act::Nothing,
            clears_requests: false,
        }
    };
    let mut cleared_requests = false;
    match plan.act {
        Act::Nothing => {}
        Act::Delete => {
            let uid = vmi
                .as_ref()
                .and_then(|v| v.metadata.uid.clone())
                .unwrap_or_default();
            if let Err(e) = vmis.delete(&name, &DeleteParams::default()).await {
                let why = format!("Error deleting virtual machine instance {name}: {e}");
                ctx.events.warning(&*vm, "FailedDelete", why);
                return Err(e.into());
            }
            let note = format!("Stopped the virtual machine by deleting the virtual machine instance {uid}");
            ctx.events.normal(&*vm, "SuccessfulDelete", note);
            cleared_requests = plan.clears_requests;
        }
        Act::Create => match start_vmi(client, &vmis, &with_refs(&vm, &refs)).await {
            Ok(created) => {
                if let Some(v) = &created {
                    let note = format!(
                        "Started the virtual machine by creating the new virtual machine instance {}",
                        v.metadata.name.as_deref().unwrap_or_default()
                    );
                    ctx.events.normal(&*vm, "SuccessfulCreate", note);
                }
                vmi = created.or(vmi);
                cleared_requests = plan.clears_requests;
            }
            Err(e) => {
                let why = e.message.trim_start_matches("Failure while starting VMI: ");
                let note = format!("Error creating virtual machine instance: {why}");
                ctx.events.warning(&*vm, "FailedCreate", note);
                sync_error = Some(e);
            }
        },
    }
    // Upstream's network sync: hot-plugged, unplugged and relinked interfaces reach the VMI; unplugged ones leave
    // the template once gone everywhere.
    if let Some(v) = vmi.as_ref().filter(|v| v.metadata.deletion_timestamp.is_none())
        && let Some((ifaces, nets)) = network::vmi_interfaces(&vm, v)
    {
        let patch = json!({"metadata": {"resourceVersion": v.metadata.resource_version},
            "spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}});
        vmis.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!("interfaces of the template carried to the VMI");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if vm.metadata.deletion_timestamp.is_none()
        && let Some((ifaces, nets)) = network::template_interfaces(&vm, vmi.as_ref())
    {
        let patch = json!({"metadata": {"resourceVersion": vm.metadata.resource_version},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}});
        vms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!("unplugged interfaces dropped from the template");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let outcome = decide::Outcome {
        vmi: vmi.as_ref(),
        backing_off: backing_off.is_some(),
        start_failure,
        refs,
        error: sync_error.as_ref(),
        cleared_requests,
        volumes: volumes.printable,
    };
    let status = decide::status(&vm, &outcome, &Time(jiff::Timestamp::now()));
    let old = vm.status.clone().unwrap_or_default();
    if let Some(patch) = kube_support::merge::diff_of(&old, &status) {
        vms.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": patch})),
        )
        .await?;
    }
    // A failure is retried soon: what it waits for (an instancetype, a quota) is not watched.
    let retry = if sync_error.is_some() || volumes.printable.is_some() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    Ok(Action::requeue(
        backing_off.map_or(retry, |w| w + Duration::from_millis(500)),
    ))
}

/// The controller reference to `vm` its VMI and DataVolumes carry.
pub(crate) fn owner_ref(vm: &VirtualMachine) -> OwnerReference {
    OwnerReference {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        name: vm.metadata.name.clone().unwrap_or_default(),
        uid: vm.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `vmi` is controlled by `vm` (its controller owner reference names the VM's uid).
fn controlled_by(vmi: &VirtualMachineInstance, vm: &VirtualMachine) -> bool {
    vmi.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == vm.metadata.uid.as_ref() && o.controller == Some(true))
}

type Refs = (Option<InstancetypeStatusRef>, Option<InstancetypeStatusRef>);

/// The instancetype and preference revisions of a live VM that names them. `Ok(None)`: the VM was rewritten under
/// an expand reference policy (the rewrite is reconciled anew).
async fn instancetype_refs(client: &kube::Client, vm: &VirtualMachine) -> Result<Option<Refs>, SyncError> {
    if vm.metadata.deletion_timestamp.is_some()
        || (vm.spec.instancetype.is_none() && vm.spec.preference.is_none())
    {
        return Ok(Some((None, None)));
    }
    let config = crate::cluster_config(client).await;
    if crate::expandpolicy::decide(&config.instancetype_reference_policy(), vm) == Some(true)
        && crate::expandpolicy::expand(client, vm, &config).await?
    {
        return Ok(None);
    }
    crate::instancetype::sync_refs(client, vm).await.map(Some)
}

/// The VM with the revisions it references written into its status, as the VMI is made from it.
fn with_refs(vm: &VirtualMachine, refs: &Refs) -> VirtualMachine {
    let mut v = vm.clone();
    let st = v.status.get_or_insert_with(Default::default);
    if refs.0.is_some() {
        st.instancetype_ref.clone_from(&refs.0);
    }
    if refs.1.is_some() {
        st.preference_ref.clone_from(&refs.1);
    }
    v
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

/// Runs the VM controller until the stream ends.
pub async fn run(client: kube::Client) {
    let vms: Api<VirtualMachine> = Api::all(client.clone());
    let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
    let controller =
        kube_support::lean_controller(vms, watcher::Config::default()).owns(vmis, watcher::Config::default());
    let ctx = Arc::new(Ctx {
        events: kube_support::Events::new(client.clone(), "virtualmachine-controller"),
        client: client.clone(),
    });
    kube_support::run_controller("virt-controller-vm", client, controller, sync, ctx).await;
}
