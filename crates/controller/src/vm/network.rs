//! Upstream's network sync of a VM with a VMI: a link `state` (`up`/`down`) changed on an interface of the VM's
//! template is carried to the VMI's spec, where the node agent applies it to the running guest. Not yet (upstream
//! does them here too): hot-plugging interfaces added to the template and unplugging those set `absent`.

use kubevirt_api::v1::{Interface, VirtualMachine, VirtualMachineInstance};

/// The VMI's interfaces with the template's link states, when one differs (upstream's
/// `applyDynamicIfaceRequestOnVMI`, for interfaces the VMI has, neither side `absent`).
#[must_use]
pub fn with_template_link_states(
    vm: &VirtualMachine,
    vmi: &VirtualMachineInstance,
) -> Option<Vec<Interface>> {
    let template = vm
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.domain.devices.interfaces.as_deref())
        .unwrap_or_default();
    let mut ifaces = vmi.spec.domain.devices.interfaces.clone().unwrap_or_default();
    let mut changed = false;
    for iface in &mut ifaces {
        let Some(want) = template.iter().find(|t| t.name == iface.name) else {
            continue;
        };
        let absent = |s: &Option<String>| s.as_deref() == Some("absent");
        if want.state != iface.state && !absent(&want.state) && !absent(&iface.state) {
            iface.state.clone_from(&want.state);
            changed = true;
        }
    }
    changed.then_some(ifaces)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vm(states: &[Option<&str>]) -> VirtualMachine {
        let ifaces: Vec<serde_json::Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut v = serde_json::json!({"name": format!("n{i}"), "bridge": {}});
                if let Some(s) = s {
                    v["state"] = serde_json::json!(s);
                }
                v
            })
            .collect();
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "vm"}, "spec": {"runStrategy": "Always",
            "template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}}}}}),
        )
        .unwrap()
    }

    fn vmi_of(vm: &VirtualMachine) -> VirtualMachineInstance {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "vm"},
            "spec": vm.spec.template.spec.clone()}))
        .unwrap()
    }

    #[test]
    fn link_states_follow_the_template_absent_does_not() {
        let running = vmi_of(&vm(&[None, None, Some("absent")]));
        assert_eq!(
            with_template_link_states(&vm(&[None, None, Some("absent")]), &running),
            None
        );
        let out = with_template_link_states(&vm(&[Some("down"), None, Some("up")]), &running).unwrap();
        let states: Vec<Option<&str>> = out.iter().map(|i| i.state.as_deref()).collect();
        assert_eq!(
            states,
            [Some("down"), None, Some("absent")],
            "an unplugged interface stays so"
        );
        assert_eq!(
            with_template_link_states(&vm(&[Some("absent"), None, None]), &running),
            None,
            "unplugging is not done here yet"
        );
    }
}
