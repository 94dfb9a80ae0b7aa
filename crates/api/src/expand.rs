//! Upstream's instancetype expander (virt-api's `expand-spec` / `expand-vm-spec`, behind `virtctl expand`): the VM
//! with its instancetype and preference written into its template — default disks and interface first, conflicts
//! refused, the VMI spec defaults after — and the matchers and status refs removed.

use std::collections::BTreeMap;

use crate::config::ClusterConfig;
use crate::v1::VirtualMachine;
use crate::v1beta1::{VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec};

/// Expands `vm` with the specs its matchers name (`None` when it has no matcher: the VM as it is).
///
/// # Errors
/// Upstream's messages: `VM field(s) … conflicts with selected instance type`, or a default that cannot be applied.
pub fn vm(
    vm: &VirtualMachine,
    instancetype: Option<&VirtualMachineInstancetypeSpec>,
    preference: Option<&VirtualMachinePreferenceSpec>,
    config: &ClusterConfig,
) -> Result<VirtualMachine, String> {
    if vm.spec.instancetype.is_none() && vm.spec.preference.is_none() {
        return Ok(vm.clone());
    }
    let mut out = vm.clone();
    let template = &mut out.spec.template;
    let spec = template.spec.get_or_insert_with(Default::default);
    crate::defaults::vmi::default_volume_disks(spec);
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    crate::defaults::instancetype::apply(
        "spec.template.spec",
        spec,
        &mut annotations,
        instancetype,
        preference,
    )
    .map_err(|conflicts| {
        let paths: Vec<String> = conflicts.iter().map(|c| c.path.clone()).collect();
        format!(
            "VM field(s) {} conflicts with selected instance type",
            paths.join(", ")
        )
    })?;
    crate::defaults::vmi::default_spec(spec, config).map_err(|e| e.to_string())?;
    if !annotations.is_empty() {
        template.metadata.get_or_insert_with(Default::default).annotations = Some(annotations);
    }
    out.spec.instancetype = None;
    out.spec.preference = None;
    if let Some(status) = out.status.as_mut() {
        status.instancetype_ref = None;
        status.preference_ref = None;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn matchers_become_the_template() {
        let vm: VirtualMachine = decode(json!({"metadata": {"name": "v", "namespace": "ns"},
            "spec": {"instancetype": {"name": "small"}, "preference": {"name": "virtio"},
                "template": {"spec": {"domain": {"devices": {}},
                    "volumes": [{"name": "root", "containerDisk": {"image": "img:1"}}]}}},
            "status": {"instancetypeRef": {"name": "small"}}}));
        let it: VirtualMachineInstancetypeSpec =
            decode(json!({"cpu": {"guest": 2}, "memory": {"guest": "256Mi"}}));
        let pref: VirtualMachinePreferenceSpec = decode(json!({"devices": {"preferredDiskBus": "sata"}}));
        let out = vm_expand(&vm, Some(&it), Some(&pref));
        let spec = out.spec.template.spec.as_ref().unwrap();
        assert!(out.spec.instancetype.is_none() && out.spec.preference.is_none());
        assert!(out.status.as_ref().unwrap().instancetype_ref.is_none());
        assert_eq!(spec.domain.cpu.as_ref().unwrap().sockets, Some(2));
        assert_eq!(
            spec.domain.memory.as_ref().unwrap().guest.as_ref().unwrap().0,
            "256Mi"
        );
        let disk = &spec.domain.devices.disks.as_ref().unwrap()[0];
        assert_eq!(disk.name, "root");
        assert_eq!(disk.disk.as_ref().unwrap().bus.as_deref(), Some("sata"));
        // The VMI spec defaults come after: the machine type and the pod network.
        assert_eq!(
            spec.domain.machine.as_ref().unwrap().r#type.as_deref(),
            Some("q35")
        );
        assert_eq!(spec.networks.as_ref().unwrap()[0].name, "default");
    }

    #[test]
    fn conflicts_and_plain_vms() {
        let vm: VirtualMachine = decode(json!({"metadata": {"name": "v"},
            "spec": {"instancetype": {"name": "small"},
                "template": {"spec": {"domain": {"devices": {}, "cpu": {"sockets": 4}}}}}}));
        let it: VirtualMachineInstancetypeSpec =
            decode(json!({"cpu": {"guest": 2}, "memory": {"guest": "256Mi"}}));
        let e = vm_expand_err(&vm, Some(&it));
        assert_eq!(
            e,
            "VM field(s) spec.template.spec.domain.cpu.sockets conflicts with selected instance type"
        );
        let plain: VirtualMachine = decode(
            json!({"metadata": {"name": "p"}, "spec": {"template": {"spec": {"domain": {"devices": {}}}}}}),
        );
        assert_eq!(vm_expand(&plain, None, None), plain);
    }

    fn vm_expand(
        v: &VirtualMachine,
        it: Option<&VirtualMachineInstancetypeSpec>,
        pref: Option<&VirtualMachinePreferenceSpec>,
    ) -> VirtualMachine {
        vm(v, it, pref, &ClusterConfig::default()).unwrap()
    }

    fn vm_expand_err(v: &VirtualMachine, it: Option<&VirtualMachineInstancetypeSpec>) -> String {
        vm(v, it, None, &ClusterConfig::default()).unwrap_err()
    }
}
