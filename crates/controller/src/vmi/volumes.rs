//! A VMI's claims before its launcher pod exists, as upstream's VMI controller gates the pod: every DataVolume
//! (a `dataVolume` volume, or a claim a DataVolume populates) must be Succeeded or PendingPopulation and every plain
//! claim must exist. A DataVolume waiting for its first consumer gets one: a placeholder launcher pod (annotated
//! `kubevirt.io/ephemeral-provisioning`, it only says "bound PVCs") that the scheduler places, so the claim is
//! provisioned on that node and the import runs there; it is deleted once the volumes are ready.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kubevirt_api::cdi::DataVolume;
use kubevirt_api::v1::VirtualMachineInstance;

/// The annotation of the placeholder pod.
pub const EPHEMERAL: &str = "kubevirt.io/ephemeral-provisioning";

/// Whether `pod` is a placeholder pod.
#[must_use]
pub fn ephemeral(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EPHEMERAL))
        .is_some_and(|v| v == "true")
}

/// What the VMI's volumes allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// The launcher pod may be created; `dvs`: the VMI has DataVolumes (DataVolumesReady True).
    Ready {
        /// Whether any volume is a DataVolume's.
        dvs: bool,
    },
    /// Some DataVolume is not ready; `first_consumer`: one waits for a consumer (a placeholder pod is needed).
    Waiting {
        /// A DataVolume is WaitForFirstConsumer.
        first_consumer: bool,
    },
    /// A claim the VMI names does not exist (`namespace/name`).
    MissingClaim(String),
}

/// Upstream's judgement of one VMI's volumes from its DataVolumes and claims (pure): `dvs` the phases of the
/// DataVolumes its volumes need (`None`: missing); `missing` a plain claim that does not exist.
#[must_use]
pub fn judge(dv_phases: &[Option<String>], missing: Option<String>) -> Gate {
    if let Some(m) = missing {
        return Gate::MissingClaim(m);
    }
    let ready = |p: &Option<String>| matches!(p.as_deref(), Some("Succeeded" | "PendingPopulation"));
    if dv_phases.iter().all(ready) {
        return Gate::Ready {
            dvs: !dv_phases.is_empty(),
        };
    }
    Gate::Waiting {
        first_consumer: dv_phases
            .iter()
            .any(|p| p.as_deref() == Some("WaitForFirstConsumer")),
    }
}

fn populated_by(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "DataVolume" && o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Looks up the VMI's DataVolumes and claims and judges them.
///
/// # Errors
/// The API failing.
pub async fn gate(client: &kube::Client, vmi: &VirtualMachineInstance) -> Result<Gate, kube::Error> {
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let mut phases = Vec::new();
    let mut missing = None;
    let phase_of = |d: Option<DataVolume>| d.and_then(|d| d.status.and_then(|s| s.phase));
    for v in vmi.spec.volumes.iter().flatten() {
        if let Some(d) = &v.data_volume {
            phases.push(phase_of(dvs.get_opt(&d.name).await?));
        } else if let Some(c) = &v.persistent_volume_claim {
            match pvcs.get_opt(&c.claim_name).await? {
                None => missing = Some(format!("{ns}/{}", c.claim_name)),
                Some(p) => {
                    if let Some(dv) = populated_by(&p) {
                        phases.push(phase_of(dvs.get_opt(&dv).await?));
                    }
                }
            }
        }
    }
    Ok(judge(&phases, missing))
}

/// The placeholder pod for `vmi`: its launcher pod with the placeholder's annotation and command, the compute
/// container alone, never restarted.
#[must_use]
pub fn placeholder(mut pod: Pod) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(EPHEMERAL.into(), "true".into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.retain(|c| c.name == "compute");
        spec.init_containers = None;
        spec.restart_policy = Some("Never".into());
        spec.readiness_gates = None;
        for c in &mut spec.containers {
            c.command = Some(vec!["/usr/bin/virt-launcher".into(), "--bound-pvcs".into()]);
            c.args = None;
            c.readiness_probe = None;
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_pod_waits_for_datavolumes_and_claims() {
        let p = |s: &str| Some(s.to_string());
        assert_eq!(judge(&[], None), Gate::Ready { dvs: false });
        assert_eq!(
            judge(&[p("Succeeded"), p("PendingPopulation")], None),
            Gate::Ready { dvs: true }
        );
        assert_eq!(
            judge(&[p("Succeeded"), p("WaitForFirstConsumer")], None),
            Gate::Waiting { first_consumer: true }
        );
        assert_eq!(
            judge(&[p("ImportInProgress"), None], None),
            Gate::Waiting {
                first_consumer: false
            }
        );
        assert_eq!(
            judge(&[p("Succeeded")], Some("default/x".into())),
            Gate::MissingClaim("default/x".into())
        );
    }
}
