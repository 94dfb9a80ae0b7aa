//! Interface and network rules (upstream's network admitter).

use std::collections::{HashMap, HashSet};

use super::{Causes, DUPLICATE, INVALID, MAX_LIST, NOT_SUPPORTED, REQUIRED, TOO_MANY};
use crate::config::ClusterConfig;
use crate::v1::{Interface, VirtualMachineInstanceSpec};

const MODELS: &[&str] = &["e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio"];

/// On create, bindings removed in v1.3 are refused.
pub(super) fn discontinued_bindings(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    for (i, iface) in spec.domain.devices.interfaces.iter().flatten().enumerate() {
        let f = format!("{root}.domain.devices.interfaces[{i}]");
        if iface.slirp.is_some() {
            c.push(
                INVALID,
                format!("{f}.slirp"),
                "Slirp interface support has been discontinued since v1.3",
            );
        }
        if iface.passt.is_some() {
            c.push(
                INVALID,
                format!("{f}.passt"),
                "Passt network binding has been discontinued since v1.3",
            );
        }
        if iface.macvtap.is_some() {
            c.push(
                INVALID,
                format!("{f}.macvtap"),
                "Macvtap network binding has been discontinued since v1.3",
            );
        }
    }
}

/// Feature gates upstream checks before anything else (`ValidateFeatureGates`): discontinued gates still listed and
/// used, and the DRA gates.
pub(super) fn feature_gates(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let ifaces = spec.domain.devices.interfaces.as_deref().unwrap_or_default();
    for (gate, used) in [
        ("Passt", ifaces.iter().any(|i| i.passt.is_some())),
        ("Macvtap", ifaces.iter().any(|i| i.macvtap.is_some())),
    ] {
        if used && config.gate(gate) {
            c.push(
                NOT_SUPPORTED,
                "",
                format!("{gate} network binding is discontinued since v1.3. Please refer to Kubevirt user guide for alternatives."),
            );
        }
    }
    let dra = |device: Option<&String>, claim: Option<&String>| {
        device.is_none_or(String::is_empty) && claim.is_some_and(|c| !c.is_empty())
    };
    let d = &spec.domain.devices;
    if d.gpus
        .iter()
        .flatten()
        .any(|g| dra(g.device_name.as_ref(), g.claim_name.as_ref()))
        && !config.gate("GPUsWithDRA")
    {
        c.push(
            INVALID,
            format!("{root}.domain.devices.gpus"),
            "vmi.spec.domain.devices.gpus contains DRA enabled GPUs but feature gate is not enabled",
        );
    }
    if d.host_devices
        .iter()
        .flatten()
        .any(|h| dra(h.device_name.as_ref(), h.claim_name.as_ref()))
        && !config.gate("HostDevicesWithDRA")
    {
        c.push(
            INVALID,
            format!("{root}.domain.devices.hostDevices"),
            "vmi.spec.domain.devices.hostDevices contains DRA enabled HostDevices but feature gate is not enabled",
        );
    }
    if spec.networks.iter().flatten().any(|n| n.resource_claim.is_some())
        && !config.gate("NetworkDevicesWithDRA")
    {
        c.push(
            INVALID,
            format!("{root}.networks"),
            "vmi.spec.networks contains DRA networks but NetworkDevicesWithDRA feature gate is not enabled",
        );
    }
}

fn binding_count(i: &Interface) -> usize {
    super::count(&[
        i.bridge.is_some(),
        i.masquerade.is_some(),
        i.sriov.is_some(),
        i.passt_binding.is_some(),
        i.binding.is_some(),
    ])
}

pub(super) fn validate(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let nets = spec.networks.as_deref().unwrap_or_default();
    let ifaces = spec.domain.devices.interfaces.as_deref().unwrap_or_default();
    if nets.len() > MAX_LIST {
        c.push(
            TOO_MANY,
            format!("{root}.networks"),
            format!(
                "{root}.networks: Too many: {}: must have at most {MAX_LIST} items",
                nets.len()
            ),
        );
        return;
    }
    if ifaces.len() > MAX_LIST {
        let f = format!("{root}.domain.devices.interfaces");
        c.push(
            TOO_MANY,
            &f,
            format!(
                "{f}: Too many: {}: must have at most {MAX_LIST} items",
                ifaces.len()
            ),
        );
        return;
    }
    let pods = nets.iter().filter(|n| n.pod.is_some()).count();
    if pods > 1 {
        c.push(
            DUPLICATE,
            format!("{root}.interfaces"),
            format!("more than one interface is connected to a pod network in {root}.interfaces"),
        );
    }
    let multus_default = nets
        .iter()
        .filter(|n| n.multus.as_ref().is_some_and(|m| m.default == Some(true)))
        .count();
    if multus_default > 1 {
        c.push(
            INVALID,
            format!("{root}.networks"),
            "Multus CNI should only have one default network",
        );
    }
    if pods > 0 && multus_default > 0 {
        c.push(
            INVALID,
            format!("{root}.networks"),
            "Pod network cannot be defined when Multus default network is defined",
        );
    }
    let mut net_names: HashMap<&str, &crate::v1::Network> = HashMap::new();
    for (i, n) in nets.iter().enumerate() {
        let f = format!("{root}.networks[{i}]");
        let types = super::count(&[n.pod.is_some(), n.multus.is_some(), n.resource_claim.is_some()]);
        if types == 0 {
            c.push(REQUIRED, &f, "should have a network type");
        } else if types > 1 {
            c.push(REQUIRED, &f, "should have only one network type");
        }
        if n.multus.as_ref().is_some_and(|m| m.network_name.is_empty()) {
            c.push(REQUIRED, &f, "CNI delegating plugin must have a networkName");
        }
        if net_names.insert(n.name.as_str(), n).is_some() {
            c.push(
                DUPLICATE,
                format!("{f}.name"),
                format!(
                    "Network with name {:?} already exists, every network must have a unique name",
                    n.name
                ),
            );
        }
        if !ifaces.iter().any(|x| x.name == n.name) {
            c.push(
                REQUIRED,
                format!("{f}.name"),
                format!("{f}.name '{}' not found.", n.name),
            );
        }
    }
    let mut iface_names = HashSet::new();
    for (i, iface) in ifaces.iter().enumerate() {
        let f = format!("{root}.domain.devices.interfaces[{i}]");
        let net = net_names.get(iface.name.as_str());
        let on_pod = net.is_some_and(|n| n.pod.is_some());
        if binding_count(iface) != 1 {
            c.push(
                INVALID,
                &f,
                format!(
                    "logical {} interface must have exactly one binding method or binding plugin",
                    iface.name
                ),
            );
        }
        if !iface_names.insert(iface.name.as_str()) {
            c.push(
                DUPLICATE,
                format!("{f}.name"),
                "Only one interface can be connected to one specific network",
            );
        }
        if net.is_none() {
            c.push(
                INVALID,
                format!("{f}.name"),
                format!("{f}.name '{}' not found.", iface.name),
            );
        }
        if iface.name.is_empty()
            || !iface
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            c.push(INVALID, format!("{f}.name"), "Network interface name can only contain alphabetical characters, numbers, dashes (-) or underscores (_)");
        }
        if let Some(state) = iface.state.as_deref()
            && !matches!(state, "" | "absent" | "down" | "up")
        {
            c.push(
                INVALID,
                format!("{f}.state"),
                format!(
                    "logical {} interface state value is unsupported: {state}",
                    iface.name
                ),
            );
        }
        if iface.masquerade.is_some() && net.is_some() && !on_pod {
            c.push(
                INVALID,
                format!("{f}.name"),
                "Masquerade interface only implemented with pod network",
            );
        }
        if iface.masquerade.is_some() && iface.mac_address.as_deref() == Some("02:00:00:00:00:00") {
            c.push(
                INVALID,
                format!("{f}.macAddress"),
                "The requested MAC address is reserved for the in-pod bridge. Please choose another one.",
            );
        }
        if iface.bridge.is_some() && on_pod && !config.permit_bridge_on_pod_network() {
            c.push(
                INVALID,
                format!("{f}.name"),
                "Bridge on pod network configuration is not enabled under kubevirt-config",
            );
        }
        if iface.passt_binding.is_some() {
            if !config.gate("PasstBinding") {
                c.push(
                    INVALID,
                    format!("{f}.name"),
                    "PasstBinding feature gate is not enabled",
                );
            } else if net.is_some() && !on_pod {
                c.push(
                    INVALID,
                    format!("{f}.name"),
                    "PasstBinding interface only implemented with pod network",
                );
            }
        }
        if let Some(m) = iface.model.as_deref()
            && !MODELS.contains(&m)
        {
            c.push(
                NOT_SUPPORTED,
                format!("{f}.model"),
                format!("interface {f}.name uses model {m} that is not supported."),
            );
        }
        if let Some(mac) = iface.mac_address.as_deref()
            && !valid_mac(mac)
        {
            c.push(
                INVALID,
                format!("{f}.macAddress"),
                format!("interface {f}.name has malformed MAC address ({mac})."),
            );
        }
        if let Some(pci) = iface.pci_address.as_deref()
            && !super::storage::valid_pci(pci)
        {
            c.push(
                INVALID,
                format!("{f}.pciAddress"),
                format!("interface {f}.name has malformed PCI address ({pci})."),
            );
        }
        if on_pod {
            ports(&f, iface, c);
        }
        if iface.port_ranges.as_ref().is_some_and(|p| !p.is_empty()) && !config.gate("PortRangesSpec") {
            c.push(
                INVALID,
                format!("{f}.name"),
                "portRanges is specified on interface but the PortRangesSpec feature gate is not enabled",
            );
        }
        dhcp(root, &f, iface, c);
    }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = if mac.contains(':') {
        mac.split(':').collect()
    } else {
        mac.split('-').collect()
    };
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn ports(f: &str, iface: &Interface, c: &mut Causes) {
    let mut names = HashSet::new();
    for (j, p) in iface.ports.iter().flatten().enumerate() {
        let pf = format!("{f}.ports[{j}]");
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if !names.insert(name) {
                c.push(
                    DUPLICATE,
                    format!("{pf}.name"),
                    format!("Duplicate name of the port: {name}"),
                );
            }
            let ok = name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && name.bytes().any(|b| b.is_ascii_lowercase())
                && !name.contains("--")
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !ok {
                c.push(
                    INVALID,
                    format!("{pf}.name"),
                    format!("Invalid name of the port: {name}"),
                );
            }
        }
        if p.port == 0 {
            c.push(REQUIRED, format!("{pf}.port"), "Port field is mandatory.");
        } else if !(1..65536).contains(&p.port) {
            c.push(
                INVALID,
                format!("{pf}.port"),
                "Port field must be in range 0 < x < 65536.",
            );
        }
        if !matches!(p.protocol.as_deref().unwrap_or(""), "" | "TCP" | "UDP") {
            c.push(
                INVALID,
                format!("{pf}.protocol"),
                "Unknown protocol, only TCP or UDP allowed",
            );
        }
    }
}

fn dhcp(root: &str, f: &str, iface: &Interface, c: &mut Causes) {
    let Some(d) = iface.dhcp_options.as_ref() else {
        return;
    };
    let mut seen = HashSet::new();
    let opts = d.private_options.as_deref().unwrap_or_default();
    if opts.iter().any(|o| !seen.insert(o.option)) {
        c.push(
            INVALID,
            root,
            "Found Duplicates: you have provided duplicate DHCPPrivateOptions",
        );
    }
    for o in opts {
        if !(224..=254).contains(&o.option) {
            c.push(
                INVALID,
                root,
                "provided DHCPPrivateOptions are out of range, must be in range 224 to 254",
            );
        }
    }
    for (k, s) in d.ntp_servers.iter().flatten().enumerate() {
        if s.parse::<std::net::Ipv4Addr>().is_err() {
            c.push(
                INVALID,
                format!("{f}.dhcpOptions.ntpServers[{k}]"),
                "NTP servers must be a list of valid IPv4 addresses.",
            );
        }
    }
}
