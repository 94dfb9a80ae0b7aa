//! The claims behind a VMI's `persistentVolumeClaim` and `dataVolume` volumes, as `status.volumeStatus[]`
//! `persistentVolumeClaimInfo` (upstream's virt-controller keeps it): the launcher sizes a blank `disk.img` by it.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;
use kubevirt_api::v1::{PersistentVolumeClaimInfo, VirtualMachineInstance, VolumeStatus};

/// The VMI with a `volumeStatus` entry for each of its claim volumes whose claim exists.
pub async fn with_claim_info(client: &kube::Client, vmi: &VirtualMachineInstance) -> VirtualMachineInstance {
    let ns = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut out = vmi.clone();
    let mut statuses: Vec<VolumeStatus> = out
        .status
        .as_ref()
        .and_then(|s| s.volume_status.clone())
        .unwrap_or_default();
    for v in vmi.spec.volumes.iter().flatten() {
        let Some(claim) = v
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.clone())
            .or_else(|| v.data_volume.as_ref().map(|d| d.name.clone()))
        else {
            continue;
        };
        let Ok(Some(pvc)) = pvcs.get_opt(&claim).await else {
            continue;
        };
        let spec = pvc.spec.unwrap_or_default();
        let status = pvc.status.unwrap_or_default();
        let info = PersistentVolumeClaimInfo {
            claim_name: Some(claim),
            access_modes: status.access_modes.or(spec.access_modes),
            volume_mode: spec.volume_mode.or_else(|| Some("Filesystem".into())),
            capacity: status.capacity,
            requests: spec.resources.and_then(|r| r.requests),
            preallocated: Some(false),
            filesystem_overhead: Some("0".into()),
        };
        match statuses.iter_mut().find(|s| s.name == v.name) {
            Some(s) => s.persistent_volume_claim_info = Some(info),
            None => statuses.push(VolumeStatus {
                name: v.name.clone(),
                target: String::new(),
                persistent_volume_claim_info: Some(info),
                ..Default::default()
            }),
        }
    }
    if !statuses.is_empty() {
        out.status.get_or_insert_with(Default::default).volume_status = Some(statuses);
    }
    out
}
