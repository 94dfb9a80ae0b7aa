//! A VM's `dataVolumeTemplates`: every sync creates the missing DataVolumes (named as the template, controlled by
//! the VM, labelled `kubevirt.io/created-by`, claim adoption allowed) — also for a halted VM, as upstream does —
//! and says whether a VMI may be created yet (every template DataVolume Succeeded, WaitForFirstConsumer or
//! PendingPopulation) and what the volumes make of the VM's printableStatus (DataVolumeError, Provisioning,
//! WaitingForVolumeBinding, ErrorPvcNotFound).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, PostParams};
use kubevirt_api::cdi::DataVolume;
use kubevirt_api::state::PrintableStatus;
use kubevirt_api::v1::VirtualMachine;

/// What the VM's volumes allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volumes {
    /// A VMI may be created.
    pub ready: bool,
    /// What they make of the printableStatus, if anything.
    pub printable: Option<PrintableStatus>,
}

fn dv_phase(dv: &DataVolume) -> &str {
    dv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn dv_failed(dv: &DataVolume) -> bool {
    let running_error = dv
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.r#type == "Running"
                && c.status == "False"
                && matches!(c.reason.as_deref(), Some("Error" | "ImagePullFailed"))
        });
    dv_phase(dv) == "Failed" || running_error
}

/// Upstream's judgement of a VM's DataVolumes and claims (pure). `dvs`: the template DataVolumes as found (`None`:
/// missing); `claims`: every claim the template's volumes name, with its phase (`None`: missing) and whether a
/// DataVolume populates it.
#[must_use]
pub fn judge(dvs: &[Option<DataVolume>], claims: &[(String, Option<String>, bool)]) -> Volumes {
    let ready = dvs.iter().all(|d| {
        d.as_ref().is_some_and(|d| {
            matches!(
                dv_phase(d),
                "Succeeded" | "WaitForFirstConsumer" | "PendingPopulation"
            )
        })
    });
    let printable = if claims
        .iter()
        .any(|(_, phase, from_dv)| phase.is_none() && !from_dv)
    {
        Some(PrintableStatus::ErrorPvcNotFound)
    } else if dvs.iter().flatten().any(dv_failed) {
        Some(PrintableStatus::DataVolumeError)
    } else if dvs.iter().any(|d| {
        d.as_ref().is_none_or(|d| {
            !matches!(
                dv_phase(d),
                "Succeeded" | "PendingPopulation" | "WaitForFirstConsumer"
            )
        })
    }) {
        Some(PrintableStatus::Provisioning)
    } else if claims
        .iter()
        .any(|(_, phase, _)| phase.as_deref() != Some("Bound"))
    {
        Some(PrintableStatus::WaitingForVolumeBinding)
    } else {
        None
    };
    Volumes { ready, printable }
}

/// The DataVolume a template asks for.
fn from_template(vm: &VirtualMachine, t: &kubevirt_api::v1::DataVolumeTemplateSpec) -> DataVolume {
    let mut meta = t.metadata.clone();
    meta.namespace.clone_from(&vm.metadata.namespace);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(
        "kubevirt.io/created-by".into(),
        vm.metadata.uid.clone().unwrap_or_default(),
    );
    let anns = meta.annotations.get_or_insert_with(BTreeMap::new);
    anns.insert(crate::cdi::claim::ann::ALLOW_ADOPTION.into(), "true".into());
    meta.owner_references = Some(vec![super::owner_ref(vm)]);
    let mut spec = t.spec.clone();
    if spec.priority_class_name.is_none() {
        spec.priority_class_name = vm
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.priority_class_name.clone());
    }
    DataVolume {
        api_version: Some("cdi.kubevirt.io/v1beta1".into()),
        kind: Some("DataVolume".into()),
        metadata: meta,
        spec,
        status: None,
    }
}

/// The claims the VM's template volumes name: (claim, from a DataVolume).
fn claim_names(vm: &VirtualMachine) -> Vec<(String, bool)> {
    let volumes = vm.spec.template.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), false))
            } else {
                v.data_volume.as_ref().map(|d| (d.name.clone(), true))
            }
        })
        .collect()
}

/// Creates the VM's missing template DataVolumes and judges its volumes.
///
/// # Errors
/// The API failing.
pub async fn sync(
    client: &kube::Client,
    events: &kube_support::Events,
    vm: &VirtualMachine,
) -> Result<Volumes, kube::Error> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let mut found = Vec::new();
    for t in vm.spec.data_volume_templates.iter().flatten() {
        let name = t.metadata.name.clone().unwrap_or_default();
        let mut dv = dvs.get_opt(&name).await?;
        if dv.is_none() && vm.metadata.deletion_timestamp.is_none() {
            match dvs.create(&PostParams::default(), &from_template(vm, t)).await {
                Ok(created) => {
                    events.normal(
                        vm,
                        "SuccessfulDataVolumeCreate",
                        format!("Created DataVolume {name}"),
                    );
                    dv = Some(created);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => dv = dvs.get_opt(&name).await?,
                Err(kube::Error::Api(e)) => {
                    let msg = format!("Error creating DataVolume {name}: {}", e.message);
                    events.warning(vm, "FailedDataVolumeCreate", msg);
                }
                Err(e) => return Err(e),
            }
        }
        found.push(dv);
    }
    let mut claims = Vec::new();
    for (name, from_dv) in claim_names(vm) {
        let phase = pvcs
            .get_opt(&name)
            .await?
            .map(|p| p.status.and_then(|s| s.phase).unwrap_or_else(|| "Pending".into()));
        claims.push((name, phase, from_dv));
    }
    Ok(judge(&found, &claims))
}
