//! VirtualMachine lifecycle: `start`, `stop`, `restart`, `migrate`, with upstream's checks in upstream's order and
//! its messages. A request becomes either a change of the run strategy (JSON patch of `spec.runStrategy` or the
//! legacy `spec.running`, guarded by a `test` of the old value) or state-change requests in the VM's status
//! (`Start`, `Stop` with the VMI's uid), which the VM controller carries out; migrate creates a
//! VirtualMachineInstanceMigration. Success is 202 with no body.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kubevirt_api::v1::{
    MigrateOptions, RestartOptions, StartOptions, StopOptions, VirtualMachine, VirtualMachineInstance,
    VirtualMachineInstanceMigration,
};
use serde_json::{Value, json};

use crate::status::{Failure, Reply, accepted};

const VM: &str = "virtualmachine";

/// The recovery message upstream gives when a volume migration left a VM inconsistent.
const RECOVERY: &str = "VM recovery required: Volume migration failed, leaving some volumes pointing to non-consistent \
targets; manual intervention is needed to reassign them to their original volumes.";

/// Decodes an options body (empty is the defaults).
pub(crate) fn decode<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("Can not unmarshal Request body to struct, error: {e}")))
}

fn dry_run(d: Option<&Vec<String>>) -> bool {
    d.is_some_and(|d| d.first().map(String::as_str) == Some("All"))
}

pub(crate) async fn get_vm(api: &Api<VirtualMachine>, name: &str) -> Result<VirtualMachine, Failure> {
    match api.get_opt(name).await {
        Ok(Some(vm)) => Ok(vm),
        Ok(None) => Err(Failure::not_found(VM, name)),
        Err(e) => Err(Failure::internal(format!("unable to retrieve vm [{name}]: {e}"))),
    }
}

async fn get_vmi(
    api: &Api<VirtualMachineInstance>,
    name: &str,
) -> Result<Option<VirtualMachineInstance>, Failure> {
    api.get_opt(name)
        .await
        .map_err(|e| Failure::internal(format!("unable to retrieve vmi [{name}]: {e}")))
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_final(vmi: &VirtualMachineInstance) -> bool {
    matches!(phase(vmi), "Succeeded" | "Failed")
}

fn has_condition(vm: &VirtualMachine, kind: &str) -> bool {
    vm.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.r#type == kind && c.status == "True"))
}

/// The run strategy, or upstream's error when both fields are set.
fn run_strategy(vm: &VirtualMachine) -> Result<String, Failure> {
    if vm.spec.running.is_some() && vm.spec.run_strategy.is_some() {
        return Err(Failure::internal(
            "running and runstrategy are mutually exclusive",
        ));
    }
    Ok(kubevirt_api::defaults::effective_run_strategy(&vm.spec).to_string())
}

/// Upstream's mapping of patch failures: a failed `test` is a conflict (someone changed the VM meanwhile).
fn patch_failure(name: &str, e: &kube::Error) -> Failure {
    let text = e.to_string();
    if text.contains("testing value") || text.contains("test operation does not apply") {
        Failure::conflict(VM, name, &text)
    } else {
        Failure::internal(text)
    }
}

/// Sets the run strategy to `to` (`Always`/`Halted`), or the legacy `running` field when the VM uses it.
async fn running_patch(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    to: &str,
    dry: bool,
) -> Result<(), Failure> {
    let name = vm.metadata.name.clone().unwrap_or_default();
    let ops = match &vm.spec.run_strategy {
        Some(old) => json!([{"op": "test", "path": "/spec/runStrategy", "value": old},
            {"op": "replace", "path": "/spec/runStrategy", "value": to}]),
        None => json!([{"op": "test", "path": "/spec/running", "value": vm.spec.running},
            {"op": "replace", "path": "/spec/running", "value": to == "Always"}]),
    };
    patch_json(api, &name, ops, dry, false).await
}

async fn patch_json(
    api: &Api<VirtualMachine>,
    name: &str,
    ops: Value,
    dry: bool,
    status: bool,
) -> Result<(), Failure> {
    let p: json_patch::Patch =
        serde_json::from_value(ops).map_err(|e| Failure::internal(format!("building the patch: {e}")))?;
    let params = PatchParams {
        dry_run: dry,
        ..Default::default()
    };
    let patch = Patch::Json::<()>(p);
    let r = if status {
        api.patch_status(name, &params, &patch).await
    } else {
        api.patch(name, &params, &patch).await
    };
    r.map(|_| ()).map_err(|e| patch_failure(name, &e))
}

/// Adds `requests` to the VM's `status.stateChangeRequests` as upstream does: guarded by a `test` of the current
/// list; only a lone Stop may replace pending requests; a pending start failure is cleared.
async fn change_requests(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    requests: Value,
    dry: bool,
) -> Result<(), Failure> {
    let name = vm.metadata.name.clone().unwrap_or_default();
    let status = vm.status.clone().unwrap_or_default();
    let empty =
        serde_json::to_value(&status).is_ok_and(|v| v.as_object().is_none_or(serde_json::Map::is_empty));
    let ops = if empty {
        json!([{"op": "add", "path": "/status", "value": {"stateChangeRequests": requests}}])
    } else {
        let current = serde_json::to_value(&status.state_change_requests).unwrap_or(Value::Null);
        let lone_stop = requests
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["action"] == "Stop");
        let op = match &status.state_change_requests {
            None => "add",
            Some(list) if list.is_empty() => "add",
            Some(_) if lone_stop => "replace",
            Some(_) => {
                return Err(Failure::internal(
                    "unable to complete request: stop/start already underway",
                ));
            }
        };
        let mut ops = vec![
            json!({"op": "test", "path": "/status/stateChangeRequests", "value": current}),
            json!({"op": op, "path": "/status/stateChangeRequests", "value": requests}),
        ];
        if status.start_failure.is_some() {
            ops.push(json!({"op": "remove", "path": "/status/startFailure"}));
        }
        Value::Array(ops)
    };
    patch_json(api, &name, ops, dry, true).await
}

/// Sets the VMI's `terminationGracePeriodSeconds` to `grace` (guarded by a `test` of the old value).
async fn set_grace(
    vmis: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    grace: i64,
    dry: bool,
) -> Result<(), Failure> {
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let ops = json!([{"op": "test", "path": "/spec/terminationGracePeriodSeconds", "value": vmi.spec.termination_grace_period_seconds},
        {"op": "replace", "path": "/spec/terminationGracePeriodSeconds", "value": grace}]);
    let p: json_patch::Patch = serde_json::from_value(ops).map_err(|e| Failure::internal(e.to_string()))?;
    let params = PatchParams {
        dry_run: dry,
        ..Default::default()
    };
    vmis.patch(&name, &params, &Patch::Json::<()>(p))
        .await
        .map(|_| ())
        .map_err(|e| Failure::internal(e.to_string()))
}

/// `PUT …/virtualmachines/{name}/start`.
pub async fn start(client: &kube::Client, ns: &str, name: &str, body: &[u8]) -> Reply {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vm = get_vm(&vms, name).await?;
    let vmi = get_vmi(&vmis, name).await?;
    if let Some(v) = &vmi
        && !is_final(v)
        && !matches!(phase(v), "Unknown" | "")
    {
        return Err(Failure::conflict(VM, name, "VM is already running"));
    }
    if has_condition(&vm, "ManualRecoveryRequired") {
        return Err(Failure::conflict(VM, name, RECOVERY));
    }
    let opts: StartOptions = decode(body)?;
    let dry = dry_run(opts.dry_run.as_ref());
    let paused = opts.paused == Some(true);
    let start = if paused {
        json!({"action": "Start", "data": {"paused": "true"}})
    } else {
        json!({"action": "Start"})
    };
    match run_strategy(&vm)?.as_str() {
        "Halted" if !paused => running_patch(&vms, &vm, "Always", dry).await?,
        "Halted" => change_requests(&vms, &vm, json!([start]), dry).await?,
        s @ ("Manual" | "RerunOnFailure") => {
            let ph = vmi.as_ref().map(phase).unwrap_or_default();
            if s == "RerunOnFailure" && ph == "Failed" {
                return Err(Failure::conflict(
                    VM,
                    name,
                    "RerunOnFailure does not support starting VM from failed state",
                ));
            }
            let restart = (s == "RerunOnFailure" && ph == "Succeeded")
                || (s == "Manual" && vmi.as_ref().is_some_and(is_final));
            let requests = match vmi.as_ref().and_then(|v| v.metadata.uid.clone()) {
                Some(uid) if restart => json!([{"action": "Stop", "uid": uid}, start]),
                _ => json!([start]),
            };
            change_requests(&vms, &vm, requests, dry).await?;
        }
        s @ ("Always" | "Once") => {
            return Err(Failure::conflict(
                VM,
                name,
                &format!("{s} does not support manual start requests"),
            ));
        }
        _ => {}
    }
    Ok(accepted())
}

/// `PUT …/virtualmachines/{name}/stop`.
pub async fn stop(client: &kube::Client, ns: &str, name: &str, body: &[u8]) -> Reply {
    let opts: StopOptions = decode(body)?;
    let dry = dry_run(opts.dry_run.as_ref());
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vm = get_vm(&vms, name).await?;
    let strategy = run_strategy(&vm)?;
    let vmi = get_vmi(&vmis, name).await?;
    let live = vmi.as_ref().filter(|v| !is_final(v));
    let old_grace = live.and_then(|v| v.spec.termination_grace_period_seconds);
    // The grace period is shortened first, as upstream does (a 409 below may still follow).
    if let (Some(v), Some(grace)) = (live, opts.grace_period) {
        set_grace(&vmis, v, grace, dry).await?;
    }
    let stop_request = || json!([{"action": "Stop", "uid": live.and_then(|v| v.metadata.uid.clone())}]);
    match strategy.as_str() {
        "Halted" => {
            if live.is_none() {
                return Err(Failure::conflict(VM, name, "VM is not running"));
            }
            let shorter = match (opts.grace_period, old_grace) {
                (None, _) => false,
                (Some(g), Some(old)) => g < old,
                (Some(_), None) => true,
            };
            if !shorter {
                return Err(Failure::conflict(
                    VM,
                    name,
                    "Halted only supports manual stop requests with a shorter graceperiod",
                ));
            }
            change_requests(&vms, &vm, stop_request(), dry).await?;
        }
        "Manual" | "RerunOnFailure" => {
            if live.is_none() {
                return Err(Failure::conflict(VM, name, "VM is not running"));
            }
            change_requests(&vms, &vm, stop_request(), dry).await?;
        }
        "Always" | "Once" => running_patch(&vms, &vm, "Halted", dry).await?,
        _ => {}
    }
    Ok(accepted())
}

/// `PUT …/virtualmachines/{name}/restart`.
pub async fn restart(client: &kube::Client, ns: &str, name: &str, body: &[u8]) -> Reply {
    let opts: RestartOptions = decode(body)?;
    let dry = dry_run(opts.dry_run.as_ref());
    match opts.grace_period_seconds {
        Some(g) if g > 0 => {
            return Err(Failure::bad_request(
                "For force restart, only gracePeriod=0 is supported for now",
            ));
        }
        Some(g) if g < 0 => {
            return Err(Failure::bad_request(
                "gracePeriod has to be greater or equal to 0",
            ));
        }
        _ => {}
    }
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vm = get_vm(&vms, name).await?;
    if has_condition(&vm, "VolumesChange") {
        return Err(Failure::conflict(VM, name, RECOVERY));
    }
    if matches!(run_strategy(&vm)?.as_str(), "Halted" | "Once") {
        // Upstream's words, spelling included.
        return Err(Failure::conflict(
            VM,
            name,
            "RunStategy Halted does not support manual restart requests",
        ));
    }
    let Some(vmi) = get_vmi(&vmis, name).await? else {
        return Err(Failure::conflict(VM, name, "VM is not running: Halted"));
    };
    if opts.grace_period_seconds == Some(0) {
        // A forced restart: the VMI gets one second to go.
        set_grace(&vmis, &vmi, 1, dry).await?;
    }
    let requests = json!([{"action": "Stop", "uid": vmi.metadata.uid}, {"action": "Start"}]);
    change_requests(&vms, &vm, requests, dry).await?;
    Ok(accepted())
}

/// `PUT …/virtualmachines/{name}/migrate`: a VirtualMachineInstanceMigration for the VMI (carried out by the
/// migration controller).
pub async fn migrate(client: &kube::Client, ns: &str, name: &str, body: &[u8]) -> Reply {
    let opts: MigrateOptions = decode(body)?;
    let dry = dry_run(opts.dry_run.as_ref());
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    get_vm(&vms, name).await?;
    let vmi = get_vmi(&vmis, name)
        .await?
        .ok_or_else(|| Failure::not_found("virtualmachineinstance", name))?;
    if phase(&vmi) != "Running" {
        return Err(Failure::conflict(VM, name, "VM is not running"));
    }
    let migration: VirtualMachineInstanceMigration = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": "kubevirt-migrate-vm-", "namespace": ns},
        "spec": {"vmiName": name, "addedNodeSelector": opts.added_node_selector},
    }))
    .map_err(|e| Failure::internal(e.to_string()))?;
    let migrations: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), ns);
    let params = PostParams {
        dry_run: dry,
        ..Default::default()
    };
    migrations
        .create(&params, &migration)
        .await
        .map_err(|e| Failure::internal(e.to_string()))?;
    Ok(accepted())
}

/// `memorydump` / `removememorydump`: the VM must exist; dumping guest memory to a PVC is not implemented yet, which
/// the caller is told plainly (400) instead of being left with an unknown endpoint.
pub async fn memory_dump(client: &kube::Client, ns: &str, name: &str, op: &str) -> Reply {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    get_vm(&vms, name).await?;
    Err(Failure::bad_request(format!(
        "{op} is not supported by kubevirt-rs yet: guest memory dumps to a PVC need the storage and migration work that is not done"
    )))
}
