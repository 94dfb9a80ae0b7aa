//! Defaults upstream's mutating webhooks apply on create, as pure functions over an object and the cluster config.

pub mod instancetype;
pub mod preset;
pub mod vmi;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::ClusterConfig;
use crate::v1::{Firmware, VirtualMachine, VirtualMachineInstanceMigration};
use crate::v1beta1::VirtualMachinePreferenceSpec;

pub use preset::{PresetOutcome, apply_presets};

/// Namespace of the name-based firmware UUID of a VirtualMachine (UUIDv5 of the VM's name).
pub const FIRMWARE_UUID_NAMESPACE: uuid::Uuid = uuid::uuid!("6a1a24a1-4061-4607-8bf4-a3963d0c5895");

/// What defaulting may need besides the object: cluster config, the current time, a source of fresh UUIDs.
pub struct Env<'a> {
    /// The cluster configuration.
    pub config: &'a ClusterConfig,
    /// "Now", for phase transition timestamps.
    pub now: Time,
    /// Returns a fresh random UUID string (injectable so tests are deterministic).
    pub new_uuid: &'a mut dyn FnMut() -> String,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Defaulting refused the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefaultsError {
    /// The default pod interface would use bridge binding, which the cluster forbids.
    #[error("bridge interface is not enabled in kubevirt-config")]
    BridgeNotPermitted,
    /// The cluster's default binding is slirp.
    #[error("slirp interface is deprecated as of v1.3")]
    SlirpDiscontinued,
    /// Presets that match the VMI disagree.
    #[error("VirtualMachinePresets cannot be applied due to conflicts: {0}")]
    PresetConflict(String),
}

/// The stable firmware UUID of a VM named `name`.
#[must_use]
pub fn vm_firmware_uuid(name: &str) -> String {
    uuid::Uuid::new_v5(&FIRMWARE_UUID_NAMESPACE, name.as_bytes()).to_string()
}

/// VirtualMachine create defaults: architecture and machine type of the template, a stable firmware UUID,
/// and the PCI topology annotation on the template.
///
/// A referenced preference contributes its preferred architecture and machine type to the template and its storage
/// class to `dataVolumeTemplates` that name none (the rest of it is applied when the VM controller creates the VMI).
pub fn default_vm(
    vm: &mut VirtualMachine,
    config: &ClusterConfig,
    preference: Option<&VirtualMachinePreferenceSpec>,
) {
    let name = vm.metadata.name.clone().unwrap_or_default();
    if let Some(class) = preference.and_then(|p| p.volumes.as_ref()?.preferred_storage_class_name.clone()) {
        for t in vm.spec.data_volume_templates.iter_mut().flatten() {
            if let Some(pvc) = t.spec.pvc.as_mut() {
                pvc.storage_class_name.get_or_insert_with(|| class.clone());
            }
            if let Some(st) = t.spec.storage.as_mut() {
                st.storage_class_name.get_or_insert_with(|| class.clone());
            }
        }
    }
    let spec = vm.spec.template.spec.get_or_insert_with(Default::default);
    if let Some(p) = preference {
        if spec.architecture.as_deref().is_none_or(str::is_empty) {
            spec.architecture.clone_from(&p.preferred_architecture);
        }
        let preferred_machine = p.machine.as_ref().and_then(|m| m.preferred_machine_type.clone());
        let machine = spec.domain.machine.get_or_insert_with(Default::default);
        if machine.r#type.as_deref().is_none_or(str::is_empty) {
            machine.r#type = preferred_machine;
        }
    }
    let arch = spec
        .architecture
        .get_or_insert_with(|| config.default_architecture())
        .clone();
    let machine = spec.domain.machine.get_or_insert_with(Default::default);
    if machine.r#type.as_deref().is_none_or(str::is_empty) {
        machine.r#type = Some(config.machine_type(&arch));
    }
    let firmware = spec.domain.firmware.get_or_insert_with(Firmware::default);
    if firmware.uuid.as_deref().is_none_or(str::is_empty) && !name.is_empty() {
        firmware.uuid = Some(vm_firmware_uuid(&name));
    }
    let machine_type = machine_type_of(spec);
    if matches!(arch.as_str(), "amd64" | "arm64" | "")
        && (machine_type.contains("q35") || machine_type.starts_with("virt"))
    {
        vm.spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .entry(vmi::PCI_TOPOLOGY_ANNOTATION.to_string())
            .or_insert_with(|| "v3".to_string());
    }
}

fn machine_type_of(spec: &crate::v1::VirtualMachineInstanceSpec) -> String {
    spec.domain
        .machine
        .as_ref()
        .and_then(|m| m.r#type.clone())
        .unwrap_or_default()
}

/// Finalizer upstream puts on every migration.
pub const MIGRATION_FINALIZER: &str = "kubevirt.io/migrationJobFinalize";

/// Migration create defaults: the `kubevirt.io/vmi-name` label and the migration finalizer.
pub fn default_migration(m: &mut VirtualMachineInstanceMigration) {
    let vmi = m.spec.vmi_name.clone().unwrap_or_default();
    m.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("kubevirt.io/vmi-name".into(), vmi);
    m.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(MIGRATION_FINALIZER.to_string());
}

/// The run strategy a VM behaves by: `runStrategy`, else `Always` for `running: true`, else `Halted`.
#[must_use]
pub fn effective_run_strategy(spec: &crate::v1::VirtualMachineSpec) -> &str {
    match (spec.run_strategy.as_deref(), spec.running) {
        (Some(s), _) => s,
        (None, Some(true)) => "Always",
        _ => "Halted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_firmware_uuid_is_stable_and_name_based() {
        let a = vm_firmware_uuid("testvm");
        assert_eq!(a, vm_firmware_uuid("testvm"));
        assert_ne!(a, vm_firmware_uuid("testvm2"));
        assert_eq!(uuid::Uuid::parse_str(&a).map(|u| u.get_version_num()), Ok(5));
    }

    #[test]
    fn run_strategy_follows_the_legacy_running_field() {
        let mut spec = crate::v1::VirtualMachineSpec::default();
        assert_eq!(effective_run_strategy(&spec), "Halted");
        spec.running = Some(true);
        assert_eq!(effective_run_strategy(&spec), "Always");
        spec.running = None;
        spec.run_strategy = Some("Manual".into());
        assert_eq!(effective_run_strategy(&spec), "Manual");
    }

    #[test]
    fn pull_policy_and_binary_quantities() {
        assert_eq!(vmi::pull_policy_for("quay.io/x/cirros"), "Always");
        assert_eq!(vmi::pull_policy_for("quay.io/x/cirros:latest"), "Always");
        assert_eq!(
            vmi::pull_policy_for("registry:5000/x/cirros:devel"),
            "IfNotPresent"
        );
        assert_eq!(
            vmi::pull_policy_for("quay.io/x/cirros@sha256:abcd"),
            "IfNotPresent"
        );
        assert_eq!(vmi::binary_si(4 << 30), "4Gi");
        assert_eq!(vmi::binary_si(1536 << 20), "1536Mi");
        assert_eq!(vmi::binary_si(1000), "1000");
    }

    #[test]
    fn instancetype_topology_follows_the_preference() {
        use crate::v1beta1::{CPUPreferences, SpreadOptions, VirtualMachinePreferenceSpec};
        let pref = |t: &str, across: Option<&str>| VirtualMachinePreferenceSpec {
            cpu: Some(CPUPreferences {
                preferred_cpu_topology: Some(t.into()),
                spread_options: across.map(|a| SpreadOptions {
                    across: Some(a.into()),
                    ratio: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(instancetype::topology(4, None), (4, 1, 1));
        assert_eq!(instancetype::topology(4, Some(&pref("cores", None))), (1, 4, 1));
        assert_eq!(instancetype::topology(4, Some(&pref("threads", None))), (1, 1, 4));
        assert_eq!(instancetype::topology(8, Some(&pref("spread", None))), (4, 2, 1));
        assert_eq!(
            instancetype::topology(8, Some(&pref("spread", Some("CoresThreads")))),
            (1, 4, 2)
        );
        assert_eq!(
            instancetype::topology(8, Some(&pref("spread", Some("SocketsCoresThreads")))),
            (2, 2, 2)
        );
        assert_eq!(instancetype::topology(1, Some(&pref("cores", None))), (1, 1, 1));
    }
}
