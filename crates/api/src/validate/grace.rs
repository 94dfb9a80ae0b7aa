//! NVIDIA Grace GPU passthrough (upstream's `GraceIOVirtualization` rules): which requested PCI resources are Grace
//! GPUs by their permitted vendor selector, and what such a VMI needs (the gate, arm64, a `virt` machine, dedicated
//! CPUs, the PCI NUMA and IOMMUFD gates, no root-complex placement, the 64-bit PCI hole).

use std::collections::BTreeMap;

use super::{Causes, INVALID, REQUIRED};
use crate::config::ClusterConfig;
use crate::v1::VirtualMachineInstanceSpec;

const GATE: &str = "GraceIOVirtualization";
const NVIDIA: &str = "10DE";
const GRACE_GPUS: &[&str] = &["2342", "2348", "2941"];

/// A requested device: its field and resource name.
struct Request {
    field: String,
    resource: String,
}

/// A PCI ID as upstream compares them: trimmed, upper case, without `0x`.
fn normalize(id: &str) -> String {
    let id = id.trim().to_uppercase();
    id.strip_prefix("0X").unwrap_or(&id).to_string()
}

fn hex_id(id: &str) -> bool {
    id.len() == 4
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// `VENDOR:DEVICE` (DEVICE may be `*`), normalised; `None` when malformed.
fn parse_selector(selector: &str) -> Option<(String, String)> {
    let (vendor, device) = selector.split_once(':')?;
    if device.contains(':') {
        return None;
    }
    let (vendor, device) = (normalize(vendor), normalize(device));
    (hex_id(&vendor) && (device == "*" || hex_id(&device))).then_some((vendor, device))
}

fn is_grace(selector: &str) -> bool {
    parse_selector(selector).is_some_and(|(v, d)| v == NVIDIA && GRACE_GPUS.contains(&d.as_str()))
}

fn is_ambiguous_nvidia(selector: &str) -> bool {
    parse_selector(selector).is_some_and(|(v, d)| v == NVIDIA && d == "*")
}

/// GPUs and host devices whose resource is a permitted PCI device: (Grace GPUs, NVIDIA `10DE:*` wildcards).
fn requests(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
) -> (Vec<Request>, Vec<Request>) {
    let selectors = config.permitted_pci_selectors();
    let (mut grace, mut ambiguous) = (Vec::new(), Vec::new());
    if selectors.is_empty() {
        return (grace, ambiguous);
    }
    let d = &spec.domain.devices;
    let gpus = d.gpus.iter().flatten().map(|g| g.device_name.as_deref());
    let hosts = d.host_devices.iter().flatten().map(|h| h.device_name.as_deref());
    let named = gpus
        .enumerate()
        .map(|(i, n)| (format!("{root}.domain.devices.gpus[{i}].deviceName"), n))
        .chain(
            hosts
                .enumerate()
                .map(|(i, n)| (format!("{root}.domain.devices.hostDevices[{i}].deviceName"), n)),
        );
    for (field, name) in named {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            continue;
        };
        let Some(selector) = selectors.get(name) else {
            continue;
        };
        let r = Request {
            field,
            resource: name.to_string(),
        };
        if is_grace(selector) {
            grace.push(r);
        } else if is_ambiguous_nvidia(selector) {
            ambiguous.push(r);
        }
    }
    (grace, ambiguous)
}

/// The spec rules (part of every VMI spec's validation).
pub(super) fn spec(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let (grace, ambiguous) = requests(root, spec, config);
    let enabled = config.gate(GATE);
    if enabled {
        for r in &ambiguous {
            c.push(
                INVALID,
                &r.field,
                format!(
                    "GraceIOVirtualization requires an exact pciVendorSelector for NVIDIA PCI host device resource {:?}",
                    r.resource
                ),
            );
        }
    }
    if grace.is_empty() {
        return;
    }
    if !enabled {
        for r in &grace {
            c.push(
                INVALID,
                &r.field,
                format!(
                    "{GATE} feature gate must be enabled for NVIDIA Grace GPU passthrough resource {:?}",
                    r.resource
                ),
            );
        }
        return;
    }
    let arch = spec
        .architecture
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| config.default_architecture());
    if arch != "arm64" {
        c.push(
            INVALID,
            format!("{root}.architecture"),
            "GraceIOVirtualization requires arm64 architecture",
        );
    }
    let machine = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.r#type.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| config.machine_type(&arch));
    if !machine.starts_with("virt") {
        c.push(
            INVALID,
            format!("{root}.domain.machine.type"),
            "GraceIOVirtualization requires \"virt\" machine type",
        );
    }
    if !spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.dedicated_cpu_placement)
        .unwrap_or(false)
    {
        c.push(
            REQUIRED,
            format!("{root}.domain.cpu.dedicatedCpuPlacement"),
            "GraceIOVirtualization requires dedicated CPU placement",
        );
    }
    for gate in ["PCINUMAAwareTopology", "IOMMUFD"] {
        if !config.gate(gate) {
            c.push(
                INVALID,
                format!("{root}.domain.devices"),
                format!("{gate} feature gate must be enabled when GraceIOVirtualization is used"),
            );
        }
    }
}

/// The metadata rules (VMI create, VM/replica-set templates): annotations that break Grace passthrough.
pub(super) fn annotations(
    meta: &str,
    spec: &VirtualMachineInstanceSpec,
    ann: Option<&BTreeMap<String, String>>,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    if requests("spec", spec, config).0.is_empty() {
        return;
    }
    let set = |k: &str| ann.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
    if set("kubevirt.io/placePCIDevicesOnRootComplex") {
        c.push(
            INVALID,
            format!("{meta}.annotations[kubevirt.io/placePCIDevicesOnRootComplex]"),
            "GraceIOVirtualization is not compatible with placing PCI devices on the root complex",
        );
    }
    if set("kubevirt.io/disablePCIHole64") {
        c.push(
            INVALID,
            format!("{meta}.annotations[kubevirt.io/disablePCIHole64]"),
            "GraceIOVirtualization requires the 64-bit PCI hole",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert!(is_grace("10de:2342"));
        assert!(is_grace(" 0x10DE:0x2941"));
        assert!(!is_grace("10de:2330"));
        assert!(!is_grace("10de:*"));
        assert!(is_ambiguous_nvidia("10DE:*"));
        assert!(!is_ambiguous_nvidia("8086:*"));
        assert!(parse_selector("10de:2342:1").is_none());
        assert!(parse_selector("10dg:2342").is_none());
    }
}
