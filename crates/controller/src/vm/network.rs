//! Upstream's network sync of a VM with its VMI (`pkg/network/controllers/vm.go`): interfaces added to the VM's
//! template with the bridge binding are hot-plugged (copied to the VMI's spec with their networks), a changed link
//! `state` (`up`, `down`, or `absent` to unplug) is carried to the VMI's interface, and an unplugged interface is
//! dropped from the VMI's spec once its status entry is gone, then from the VM's template.

use std::collections::BTreeSet;

use kubevirt_api::v1::{Interface, Network, VirtualMachine, VirtualMachineInstance};

fn absent(i: &Interface) -> bool {
    i.state.as_deref() == Some("absent")
}

/// The VMI's interfaces and networks after the template's requests (upstream's `applyDynamicIfaceRequestOnVMI`
/// then `clearDetachedIfacesFromVMI`), when they differ from what the VMI has.
#[must_use]
pub fn vmi_interfaces(
    vm: &VirtualMachine,
    vmi: &VirtualMachineInstance,
) -> Option<(Vec<Interface>, Vec<Network>)> {
    let template = vm.spec.template.spec.as_ref();
    let t_ifaces = template
        .and_then(|s| s.domain.devices.interfaces.as_deref())
        .unwrap_or_default();
    let t_nets = template.and_then(|s| s.networks.as_deref()).unwrap_or_default();
    let old_ifaces = vmi.spec.domain.devices.interfaces.clone().unwrap_or_default();
    let old_nets = vmi.spec.networks.clone().unwrap_or_default();
    let (mut ifaces, mut nets) = (old_ifaces.clone(), old_nets.clone());
    for want in t_ifaces {
        match ifaces.iter_mut().find(|i| i.name == want.name) {
            None if !absent(want) && want.bridge.is_some() => {
                let Some(net) = t_nets.iter().find(|n| n.name == want.name) else {
                    continue;
                };
                ifaces.push(want.clone());
                nets.push(net.clone());
            }
            Some(have) if want.state != have.state && !absent(have) => have.state.clone_from(&want.state),
            _ => {}
        }
    }
    // An unplugged interface leaves the spec once the node agent no longer reports it.
    let reported: BTreeSet<&str> = vmi
        .status
        .iter()
        .flat_map(|s| s.interfaces.iter().flatten())
        .filter_map(|i| i.name.as_deref())
        .collect();
    ifaces.retain(|i| !absent(i) || reported.contains(i.name.as_str()));
    nets.retain(|n| n.pod.is_some() || ifaces.iter().any(|i| i.name == n.name));
    (ifaces != old_ifaces || nets != old_nets).then_some((ifaces, nets))
}

/// The VM template's interfaces and networks without those unplugged everywhere (upstream's
/// `clearDetachedIfacesFromVM`), when some are.
#[must_use]
pub fn template_interfaces(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
) -> Option<(Vec<Interface>, Vec<Network>)> {
    let template = vm.spec.template.spec.as_ref()?;
    let ifaces = template.domain.devices.interfaces.clone().unwrap_or_default();
    let nets = template.networks.clone().unwrap_or_default();
    let on_vmi = |name: &str| {
        vmi.is_some_and(|v| {
            v.spec
                .domain
                .devices
                .interfaces
                .iter()
                .flatten()
                .any(|i| i.name == name)
                || v.status
                    .iter()
                    .flat_map(|s| s.interfaces.iter().flatten())
                    .any(|i| i.name.as_deref() == Some(name))
        })
    };
    let kept: Vec<Interface> = ifaces
        .iter()
        .filter(|i| !absent(i) || on_vmi(&i.name))
        .cloned()
        .collect();
    if kept.len() == ifaces.len() {
        return None;
    }
    let nets = nets
        .into_iter()
        .filter(|n| n.pod.is_some() || kept.iter().any(|i| i.name == n.name))
        .collect();
    Some((kept, nets))
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
