//! `addvolume` / `removevolume` on VMs and VMIs, recorded as upstream records them: with the
//! `DeclarativeHotplugVolumes` gate (on by default) a VM's template gets the volume and disk; with `HotplugVolumes` a
//! VM gets a `status.volumeRequests` entry, and a VMI (ephemeral hotplug) its own spec. Every change is a JSON patch
//! guarded by a `test` of the lists it replaces; a hotplugged volume is always marked `hotpluggable`. Attaching the
//! disk to the running guest is the storage side's work, not this module's.

use kube::api::{Api, Patch, PatchParams};
use kubevirt_api::v1::{
    AddVolumeOptions, RemoveVolumeOptions, VirtualMachine, VirtualMachineInstance,
    VirtualMachineInstanceSpec, VirtualMachineVolumeRequest, Volume,
};
use serde_json::{Value, json};

use crate::status::{Failure, Reply, accepted};

const NOT_ENABLED: &str = "Enable DeclarativeHotplugVolumes or HotplugVolumes feature gate to use this API.";

/// The feature gates that decide where a request is recorded.
async fn gates(client: &kube::Client) -> (bool, bool) {
    let kvs: Api<kubevirt_api::v1::KubeVirt> = Api::all(client.clone());
    let list = kvs
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let cfg = kubevirt_api::config::ClusterConfig::from_kubevirt(list.first());
    (cfg.gate("HotplugVolumes"), cfg.gate("DeclarativeHotplugVolumes"))
}

/// The request from the body, with upstream's checks and normalisation.
fn request(add: bool, body: &[u8]) -> Result<VirtualMachineVolumeRequest, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::bad_request(
            "Request with no body, a new name is expected as the request body",
        ));
    }
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("Can not unmarshal Request body to struct, error: {e}")))?;
    let present = |k: &str| raw.get(k).is_some_and(|v| !v.is_null());
    let name_set = raw
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if add {
        if !name_set {
            return Err(Failure::bad_request("AddVolumeOptions requires name to be set"));
        }
        if !present("disk") {
            return Err(Failure::bad_request(
                "AddVolumeOptions requires disk to not be nil",
            ));
        }
        if !present("volumeSource") {
            return Err(Failure::bad_request(
                "AddVolumeOptions requires VolumeSource to not be nil",
            ));
        }
        let mut opts: AddVolumeOptions = serde_json::from_value(raw).map_err(|e| {
            Failure::bad_request(format!("Can not unmarshal Request body to struct, error: {e}"))
        })?;
        opts.disk.name.clone_from(&opts.name);
        if let Some(dv) = &mut opts.volume_source.data_volume {
            dv.hotpluggable = Some(true);
        } else if let Some(pvc) = &mut opts.volume_source.persistent_volume_claim {
            pvc.hotpluggable = Some(true);
        }
        Ok(VirtualMachineVolumeRequest {
            add_volume_options: Some(opts),
            remove_volume_options: None,
        })
    } else {
        if !name_set {
            return Err(Failure::bad_request(
                "RemoveVolumeOptions requires name to be set",
            ));
        }
        let opts: RemoveVolumeOptions = serde_json::from_value(raw).map_err(|e| {
            Failure::bad_request(format!("Can not unmarshal Request body to struct, error: {e}"))
        })?;
        Ok(VirtualMachineVolumeRequest {
            add_volume_options: None,
            remove_volume_options: Some(opts),
        })
    }
}

fn dry(r: &VirtualMachineVolumeRequest) -> bool {
    let d = r
        .add_volume_options
        .as_ref()
        .and_then(|o| o.dry_run.as_ref())
        .or_else(|| r.remove_volume_options.as_ref().and_then(|o| o.dry_run.as_ref()));
    d.and_then(|d| d.first()).is_some_and(|d| d == "All")
}

fn source_name(v: &Volume) -> Option<&str> {
    v.data_volume
        .as_ref()
        .map(|d| d.name.as_str())
        .or_else(|| v.persistent_volume_claim.as_ref().map(|p| p.claim_name.as_str()))
}

fn hotpluggable(v: &Volume) -> bool {
    v.data_volume
        .as_ref()
        .and_then(|d| d.hotpluggable)
        .unwrap_or(false)
        || v.persistent_volume_claim
            .as_ref()
            .and_then(|p| p.hotpluggable)
            .unwrap_or(false)
}

/// Upstream's checks of a request against the volumes there are.
fn verify(volumes: &[Volume], r: &VirtualMachineVolumeRequest) -> Result<(), String> {
    if let Some(add) = &r.add_volume_options {
        let src = add
            .volume_source
            .data_volume
            .as_ref()
            .map(|d| d.name.clone())
            .or_else(|| {
                add.volume_source
                    .persistent_volume_claim
                    .as_ref()
                    .map(|p| p.claim_name.clone())
            })
            .unwrap_or_default();
        for v in volumes {
            if v.name == add.name {
                return Err(format!(
                    "Unable to add volume [{}] because volume with that name already exists",
                    add.name
                ));
            }
            if source_name(v) == Some(src.as_str()) {
                return Err(format!(
                    "Unable to add volume source [{src}] because it already exists"
                ));
            }
        }
        return Ok(());
    }
    if let Some(rm) = &r.remove_volume_options {
        match volumes
            .iter()
            .find(|v| v.name == rm.name || source_name(v) == Some(rm.name.as_str()))
        {
            Some(v) if !hotpluggable(v) => {
                return Err(format!(
                    "Unable to remove volume [{}] because it is not hotpluggable",
                    v.name
                ));
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "Unable to remove volume [{}] because it does not exist",
                    rm.name
                ));
            }
        }
    }
    Ok(())
}

/// The spec with the request applied (upstream's `ApplyVolumeRequestOnVMISpec`).
fn apply(spec: &VirtualMachineInstanceSpec, r: &VirtualMachineVolumeRequest) -> VirtualMachineInstanceSpec {
    let mut s = spec.clone();
    if let Some(add) = &r.add_volume_options {
        let volumes = s.volumes.get_or_insert_with(Vec::new);
        if volumes.iter().all(|v| v.name != add.name) {
            let mut v = Volume {
                name: add.name.clone(),
                ..Default::default()
            };
            if let Some(pvc) = &add.volume_source.persistent_volume_claim {
                let mut pvc = pvc.clone();
                pvc.hotpluggable = Some(true);
                v.persistent_volume_claim = Some(pvc);
            } else if let Some(dv) = &add.volume_source.data_volume {
                let mut dv = dv.clone();
                dv.hotpluggable = Some(true);
                v.data_volume = Some(dv);
            }
            volumes.push(v);
            let mut disk = add.disk.clone();
            disk.name.clone_from(&add.name);
            s.domain.devices.disks.get_or_insert_with(Vec::new).push(disk);
        }
    } else if let Some(rm) = &r.remove_volume_options {
        if let Some(v) = &mut s.volumes {
            v.retain(|v| v.name != rm.name);
        }
        if let Some(d) = &mut s.domain.devices.disks {
            d.retain(|d| d.name != rm.name);
        }
    }
    s
}

/// The JSON patch of the spec lists under `prefix` (`/spec/template` or ``).
fn spec_patch(prefix: &str, spec: &VirtualMachineInstanceSpec, r: &VirtualMachineVolumeRequest) -> Value {
    let new = apply(spec, r);
    let vols = format!("{prefix}/spec/volumes");
    let disks = format!("{prefix}/spec/domain/devices/disks");
    let old_v = spec.volumes.clone().unwrap_or_default();
    let old_d = spec.domain.devices.disks.clone().unwrap_or_default();
    let op = |empty: bool| if empty { "add" } else { "replace" };
    let mut ops = Vec::new();
    // A `test` of an absent list cannot pass; upstream tests against null, which JSON patch treats as absent.
    if spec.volumes.is_some() {
        ops.push(json!({"op": "test", "path": vols, "value": old_v}));
    }
    if spec.domain.devices.disks.is_some() {
        ops.push(json!({"op": "test", "path": disks, "value": old_d}));
    }
    ops.push(
        json!({"op": op(spec.volumes.is_none()), "path": vols, "value": new.volumes.unwrap_or_default()}),
    );
    ops.push(
        json!({"op": op(spec.domain.devices.disks.is_none()), "path": disks,
        "value": new.domain.devices.disks.unwrap_or_default()}),
    );
    Value::Array(ops)
}

/// The VM's `status.volumeRequests` with the request added (upstream's duplicate rules).
fn requests_patch(vm: &VirtualMachine, r: &VirtualMachineVolumeRequest) -> Result<Value, String> {
    let old = vm
        .status
        .as_ref()
        .and_then(|s| s.volume_requests.clone())
        .unwrap_or_default();
    let is_add =
        |q: &VirtualMachineVolumeRequest, n: &str| q.add_volume_options.as_ref().is_some_and(|o| o.name == n);
    let is_rm = |q: &VirtualMachineVolumeRequest, n: &str| {
        q.remove_volume_options.as_ref().is_some_and(|o| o.name == n)
    };
    let mut new = Vec::new();
    if let Some(add) = &r.add_volume_options {
        for q in &old {
            if is_add(q, &add.name) {
                return Err(format!(
                    "add volume request for volume [{}] already exists",
                    add.name
                ));
            }
            if is_rm(q, &add.name) {
                return Err(format!(
                    "unable to add volume since a remove volume request for volume [{}] already exists and is still being processed",
                    add.name
                ));
            }
        }
        new.clone_from(&old);
    } else if let Some(rm) = &r.remove_volume_options {
        for q in &old {
            if is_add(q, &rm.name) {
                continue;
            }
            if is_rm(q, &rm.name) {
                return Err(format!(
                    "a remove volume request for volume [{}] already exists and is still being processed",
                    rm.name
                ));
            }
            new.push(q.clone());
        }
    }
    new.push(r.clone());
    let has_status = vm.status.is_some();
    Ok(match (has_status, old.is_empty()) {
        (false, _) => json!([{"op": "add", "path": "/status", "value": {"volumeRequests": new}}]),
        (true, true) => json!([{"op": "add", "path": "/status/volumeRequests", "value": new}]),
        (true, false) => json!([{"op": "test", "path": "/status/volumeRequests", "value": old},
            {"op": "replace", "path": "/status/volumeRequests", "value": new}]),
    })
}

async fn patch<K>(
    api: &Api<K>,
    name: &str,
    ops: Value,
    dry: bool,
    status: bool,
    what: &str,
) -> Result<(), Failure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
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
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 422 => Err(Failure::from_kube(&kube::Error::Api(s))),
        Err(e) => Err(Failure::internal(format!("unable to patch {what}: {e}"))),
    }
}

/// `PUT …/{virtualmachines|virtualmachineinstances}/{name}/{addvolume|removevolume}`.
pub async fn handle(
    client: &kube::Client,
    ns: &str,
    resource: &str,
    name: &str,
    add: bool,
    body: &[u8],
) -> Reply {
    let (hotplug, declarative) = gates(client).await;
    if !hotplug && !declarative {
        return Err(Failure::bad_request(NOT_ENABLED));
    }
    let r = request(add, body)?;
    let dry = dry(&r);
    if resource == "virtualmachineinstances" {
        let vmi = crate::vmi::get(client, ns, name).await?;
        let owned = vmi.metadata.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true) && o.kind == "VirtualMachine" && o.api_version == "kubevirt.io/v1"
        });
        if owned && !hotplug {
            return Err(Failure::bad_request(format!("VMI {ns}/{name} is owned by a VM")));
        }
        if crate::vmi::phase(&vmi) != "Running" {
            return Err(Failure::conflict(
                "virtualmachineinstance",
                name,
                "VMI is not running",
            ));
        }
        let volumes = vmi.spec.volumes.clone().unwrap_or_default();
        verify(&volumes, &r).map_err(|e| Failure::conflict("virtualmachineinstance", name, &e))?;
        let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
        patch(&api, name, spec_patch("", &vmi.spec, &r), dry, false, "vmi").await?;
        return Ok(accepted());
    }
    let api: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vm = match api.get_opt(name).await {
        Ok(Some(vm)) => vm,
        Ok(None) => return Err(Failure::not_found("virtualmachine", name)),
        Err(e) => return Err(Failure::internal(format!("unable to retrieve vm [{name}]: {e}"))),
    };
    let template = vm.spec.template.spec.clone().unwrap_or_default();
    let volumes = template.volumes.clone().unwrap_or_default();
    verify(&volumes, &r).map_err(|e| Failure::conflict("virtualmachine", name, &e))?;
    if hotplug {
        let ops = requests_patch(&vm, &r).map_err(|e| Failure::conflict("virtualmachine", name, &e))?;
        patch(&api, name, ops, dry, true, "vm status").await?;
    } else {
        patch(
            &api,
            name,
            spec_patch("/spec/template", &template, &r),
            dry,
            false,
            "vm",
        )
        .await?;
    }
    Ok(accepted())
}
