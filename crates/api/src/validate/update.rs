//! VMI updates (upstream's VMI update admitter): a user may not change the spec or KubeVirt's reserved labels;
//! KubeVirt's own service accounts may, within the hotplug rules (CPU sockets and guest memory ceilings fixed,
//! utility volumes gated, named once, never permanent, never changed).

use std::collections::{BTreeMap, BTreeSet};

use super::spec::RESERVED_LABELS;
use super::{Causes, DUPLICATE, INVALID, NOT_SUPPORTED, REQUIRED};
use crate::config::ClusterConfig;
use crate::quantity;
use crate::v1::{VirtualMachineInstance, VirtualMachineInstanceSpec};

/// The service accounts KubeVirt's components run as (`system:serviceaccount:<namespace>:<name>`).
pub const KUBEVIRT_ACCOUNTS: &[&str] = &[
    "kubevirt-handler",
    "kubevirt-controller",
    "kubevirt-apiserver",
    "kubevirt-operator",
];

/// Whether `user` is one of KubeVirt's service accounts in `namespace` (KubeVirt's install namespace).
#[must_use]
pub fn kubevirt_account(user: &str, namespace: &str) -> bool {
    user.strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(ns, name)| ns == namespace && KUBEVIRT_ACCOUNTS.contains(&name))
}

/// Validates a VMI update made by a KubeVirt component (`by_kubevirt`) or anyone else.
#[must_use]
pub fn vmi(
    old: &VirtualMachineInstance,
    new: &VirtualMachineInstance,
    by_kubevirt: bool,
    config: &ClusterConfig,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause> {
    let mut c = Causes::default();
    if old.spec != new.spec {
        if !by_kubevirt {
            c.push(NOT_SUPPORTED, "", "update of VMI object is restricted");
            return c.0;
        }
        hotplug(old, new, config, &mut c);
        if !c.is_empty() {
            return c.0;
        }
    }
    if !by_kubevirt && reserved(old.metadata.labels.as_ref()) != reserved(new.metadata.labels.as_ref()) {
        c.push(
            NOT_SUPPORTED,
            "",
            "modification of the following reserved kubevirt.io/ labels on a VMI object is prohibited",
        );
    }
    c.0
}

fn reserved(labels: Option<&BTreeMap<String, String>>) -> BTreeMap<&str, &str> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| RESERVED_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// What a KubeVirt component may change: upstream stops at the first refusal.
fn hotplug(
    old: &VirtualMachineInstance,
    new: &VirtualMachineInstance,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let sockets = |s: &VirtualMachineInstanceSpec| s.domain.cpu.as_ref().and_then(|c| c.max_sockets);
    if sockets(&old.spec) != sockets(&new.spec) {
        c.push(INVALID, "", "CPU topology maxSockets changed");
        return;
    }
    let max_guest = |s: &VirtualMachineInstanceSpec| {
        quantity::of(s.domain.memory.as_ref().and_then(|m| m.max_guest.as_ref()))
            .ok()
            .flatten()
    };
    if let (Some(o), Some(n)) = (max_guest(&old.spec), max_guest(&new.spec))
        && o != n
    {
        c.push(INVALID, "", "Memory maxGuest changed");
        return;
    }
    utility_volumes(old, new, config, c);
}

fn utility_volumes(
    old: &VirtualMachineInstance,
    new: &VirtualMachineInstance,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let utility = new.spec.utility_volumes.as_deref().unwrap_or_default();
    if !utility.is_empty() && !config.gate("UtilityVolumes") {
        c.push(
            INVALID,
            "spec.utilityVolumes",
            "UtilityVolumes feature gate is not enabled",
        );
        return;
    }
    let volumes: BTreeMap<&str, usize> = new
        .spec
        .volumes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, u) in utility.iter().enumerate() {
        let f = format!("spec.utilityVolumes[{i}]");
        if u.name.is_empty() {
            c.push(REQUIRED, format!("{f}.name"), "UtilityVolume 'name' must be set");
        }
        match seen.get(u.name.as_str()) {
            Some(other) => c.push(
                DUPLICATE,
                format!("{f}.name"),
                format!("{f} and spec.utilityVolumes[{other}] must not have the same Name."),
            ),
            None => {
                seen.insert(&u.name, i);
            }
        }
        if let Some(v) = volumes.get(u.name.as_str()) {
            c.push(
                DUPLICATE,
                format!("{f}.name"),
                format!("{f} conflicts with spec.volumes[{v}]. UtilityVolume names must be unique across both volumes and utilityVolumes."),
            );
        }
        if u.claim_name.is_empty() {
            c.push(
                REQUIRED,
                format!("{f}.claimName"),
                "UtilityVolume PVC 'claimName' must be set",
            );
        }
    }
    if !c.is_empty() {
        return;
    }
    let permanent: BTreeSet<&str> = old
        .status
        .as_ref()
        .and_then(|s| s.volume_status.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| s.hotplug_volume.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if let Some(u) = utility.iter().find(|u| permanent.contains(u.name.as_str())) {
        c.push(
            INVALID,
            "",
            format!(
                "utility volume {} cannot be a permanent volume, utility volumes must always be hotplug",
                u.name
            ),
        );
        return;
    }
    let before: BTreeMap<&str, _> = old
        .spec
        .utility_volumes
        .iter()
        .flatten()
        .map(|u| (u.name.as_str(), u))
        .collect();
    let after: BTreeMap<&str, _> = utility.iter().map(|u| (u.name.as_str(), u)).collect();
    if let Some(name) = after
        .iter()
        .find(|(name, u)| before.get(*name).is_some_and(|b| b != *u))
        .map(|(name, _)| name)
    {
        c.push(INVALID, "", format!("utility volume {name} has changed"));
    }
}

/// The user-info extra that carries the node of a service-account token bound to a pod.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// NodeRestriction for virt-handler (upstream's VMI update admitter, gate on by default): a handler may only touch
/// VMIs on its own node (or migrating to it) and may not name a migration target. `node` is the node its token is
/// bound to (`None`: the token carries none).
#[must_use]
pub fn handler_node_restriction(
    old: &VirtualMachineInstance,
    new: &VirtualMachineInstance,
    node: Option<&str>,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause> {
    let mut c = Causes::default();
    let Some(node) = node else {
        c.push(
            INVALID,
            "",
            "Node restriction failed, virt-handler service account is missing node name",
        );
        return c.0;
    };
    let status = old.status.as_ref();
    let source = status.and_then(|s| s.node_name.as_deref()).unwrap_or_default();
    let target = status
        .and_then(|s| s.migration_state.as_ref())
        .and_then(|m| m.target_node.as_deref())
        .unwrap_or_default();
    if node != source && (target.is_empty() || node != target) {
        c.push(
            INVALID,
            "",
            "Node restriction, virt-handler is only allowed to modify VMIs it owns",
        );
        return c.0;
    }
    let new_target = new
        .status
        .as_ref()
        .and_then(|s| s.migration_state.as_ref())
        .map(|m| m.target_node.as_deref().unwrap_or_default());
    if target.is_empty() && new_target.is_some_and(|t| t != target) {
        c.push(
            INVALID,
            "",
            "Node restriction, virt-handler is not allowed to set target node",
        );
    }
    c.0
}
