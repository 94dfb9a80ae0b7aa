//! What kube-controller-manager's volume controllers would do next, as pure functions of the cached PVCs, PVs,
//! StorageClasses and pods: the PV controller's binding (a retroactive default class, a claim bound to the PV
//! that names it or to a matching available PV, provisioning asked of the class's provisioner — on a node for
//! `WaitForFirstConsumer` once the scheduler chose one, on one of the nodes at once for `Immediate` — and the PV
//! phases Available/Bound/Released), and the pvc-protection and pv-protection controllers' finalizers.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The default class annotation.
pub(crate) const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Which provisioner a claim waits for.
pub(crate) const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The legacy name of [`STORAGE_PROVISIONER`], still set by the PV controller.
pub(crate) const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The node the scheduler chose for a `WaitForFirstConsumer` claim.
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Which provisioner made a PV.
pub(crate) const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub(crate) const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub(crate) const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// A claim, by namespace and name (and uid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Give a class-less claim the default class.
    SetClass(Claim, String),
    /// Bind the claim to the PV that names it: `volumeName`, the bind annotations, status Bound.
    BindClaim {
        claim: Claim,
        pv: String,
        capacity: BTreeMap<String, Quantity>,
        access_modes: Vec<String>,
    },
    /// Reserve an available PV for a claim (its `claimRef`).
    ClaimPv(String, Claim),
    /// Ask the class's provisioner (and, for `Immediate`, say on which node).
    Provision {
        claim: Claim,
        provisioner: String,
        node: Option<String>,
    },
    /// A PV's phase.
    PvPhase(String, &'static str),
    /// A claim whose PV is gone.
    ClaimLost(Claim),
    /// A deleted claim no pod uses: its finalizer goes.
    ReleaseClaim(Claim),
    /// A deleted PV bound to nothing: its finalizer goes.
    ReleasePv(String),
}

fn claim_of(pvc: &PersistentVolumeClaim) -> Claim {
    Claim {
        namespace: pvc.metadata.namespace.clone().unwrap_or_default(),
        name: pvc.metadata.name.clone().unwrap_or_default(),
        uid: pvc.metadata.uid.clone().unwrap_or_default(),
    }
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn has_finalizer(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// Bytes of a quantity (`10Gi`, `500M`, `1e9`), rounded up; `None` when it does not parse.
pub(crate) fn bytes(q: &Quantity) -> Option<u64> {
    u64::try_from(kubevirt_api::quantity::parse(&q.0).ok()?.value()).ok()
}

/// What the claim asks for, in bytes.
pub(crate) fn requested(pvc: &PersistentVolumeClaim) -> u64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(bytes)
        .unwrap_or(0)
}

fn pv_bytes(pv: &PersistentVolume) -> u64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(bytes)
        .unwrap_or(0)
}

fn class_of_pvc(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec.as_ref()?.storage_class_name.as_deref()
}

fn class_of_pv(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether `pv`'s `claimRef` names `pvc`.
fn names(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.namespace == pvc.metadata.namespace
                && r.name == pvc.metadata.name
                && (r.uid.is_none() || r.uid == pvc.metadata.uid)
        })
}

/// Whether an available `pv` can serve `pvc` (class, size, access modes, volume mode).
fn fits(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(ps), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    let modes_ok = cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| ps.access_modes.iter().flatten().any(|p| p == m));
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_string();
    ps.claim_ref.is_none()
        && pv.metadata.deletion_timestamp.is_none()
        && class_of_pv(pv) == class_of_pvc(pvc).unwrap_or("")
        && pv_bytes(pv) >= requested(pvc)
        && modes_ok
        && mode(ps.volume_mode.as_ref()) == mode(cs.volume_mode.as_ref())
}

/// Whether a pod that has not finished uses the claim.
fn in_use(pvc: &PersistentVolumeClaim, pods: &[Arc<Pod>]) -> bool {
    let name = pvc.metadata.name.as_deref();
    pods.iter()
        .filter(|p| p.metadata.namespace == pvc.metadata.namespace)
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .flat_map(|p| p.spec.iter().flat_map(|s| s.volumes.iter().flatten()))
        .any(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()) == name)
}

/// The steps the claims and volumes call for; `nodes` are the Ready nodes an `Immediate` claim may go to.
#[must_use]
pub(crate) fn plan(
    pvcs: &[Arc<PersistentVolumeClaim>],
    pvs: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
    pods: &[Arc<Pod>],
    nodes: &[String],
) -> Vec<Step> {
    let mut out = Vec::new();
    let default_class = classes
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .map(String::as_str)
                == Some("true")
        })
        .filter_map(|c| c.metadata.name.clone())
        .max();
    let mut reserved: Vec<String> = Vec::new();
    for pvc in pvcs {
        let claim = claim_of(pvc);
        if pvc.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&pvc.metadata, PVC_PROTECTION) && !in_use(pvc, pods) {
                out.push(Step::ReleaseClaim(claim));
            }
            continue;
        }
        let bound_to = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if let Some(pv_name) = bound_to.filter(|n| !n.is_empty()) {
            match pvs
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pv_name.as_str()))
            {
                Some(pv) if names(pv, pvc) && phase != Some("Bound") => out.push(bind(claim, pv)),
                Some(pv) if names(pv, pvc) => {}
                _ if phase == Some("Bound") => out.push(Step::ClaimLost(claim)),
                _ => {}
            }
            continue;
        }
        if let Some(pv) = pvs.iter().find(|p| names(p, pvc)) {
            out.push(bind(claim, pv));
            continue;
        }
        let Some(class_name) = class_of_pvc(pvc)
            .map(str::to_string)
            .or_else(|| default_class.clone())
        else {
            continue;
        };
        if class_of_pvc(pvc).is_none() {
            out.push(Step::SetClass(claim, class_name));
            continue;
        }
        if let Some(pv) = pvs
            .iter()
            .filter(|p| !reserved.iter().any(|r| Some(r) == p.metadata.name.as_ref()))
            .filter(|p| fits(p, pvc))
            .min_by_key(|p| pv_bytes(p))
        {
            let name = pv.metadata.name.clone().unwrap_or_default();
            reserved.push(name.clone());
            out.push(Step::ClaimPv(name, claim));
            continue;
        }
        let Some(class) = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
        else {
            continue;
        };
        let wait_for_consumer = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        let selected = annotation(&pvc.metadata, SELECTED_NODE);
        let node = match (selected, wait_for_consumer) {
            (Some(_), _) | (None, true) => None,
            (None, false) => nodes.first().cloned(),
        };
        let asked = annotation(&pvc.metadata, STORAGE_PROVISIONER) == Some(class.provisioner.as_str());
        if !asked || node.is_some() {
            out.push(Step::Provision {
                claim,
                provisioner: class.provisioner.clone(),
                node,
            });
        }
    }
    for pv in pvs {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let want = match claim_ref {
            None => "Available",
            Some(r) => {
                let claim = pvcs.iter().find(|c| {
                    c.metadata.namespace == r.namespace
                        && c.metadata.name == r.name
                        && (r.uid.is_none() || c.metadata.uid == r.uid)
                });
                match claim {
                    Some(c)
                        if c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name.as_str()) =>
                    {
                        "Bound"
                    }
                    // Reserved for a claim that is not bound yet.
                    Some(_) => "Available",
                    None => "Released",
                }
            }
        };
        if pv.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&pv.metadata, PV_PROTECTION) && want != "Bound" {
                out.push(Step::ReleasePv(name));
            }
            continue;
        }
        if phase != Some(want) && !(phase == Some("Failed") && want == "Released") {
            out.push(Step::PvPhase(name, want));
        }
    }
    out
}

fn bind(claim: Claim, pv: &PersistentVolume) -> Step {
    let spec = pv.spec.clone().unwrap_or_default();
    Step::BindClaim {
        claim,
        pv: pv.metadata.name.clone().unwrap_or_default(),
        capacity: spec.capacity.unwrap_or_default(),
        access_modes: spec.access_modes.unwrap_or_default(),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
