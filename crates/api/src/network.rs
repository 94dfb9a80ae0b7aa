//! How a VMI's interfaces meet the pod (upstream's names and rules, shared by the node agent that plumbs the pod's
//! network namespace and the launcher that attaches QEMU): which interfaces are on the pod network and with which
//! binding, the pod interface, in-pod bridge and tap each uses, and the virtio queue count.

use crate::v1::{Interface, Network, VirtualMachineInstance};

/// How an interface is connected to its pod interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The pod's IP and MAC are handed to the guest (the pod NIC is enslaved to an in-pod bridge).
    Bridge,
    /// The guest sits behind NAT on 10.0.2.0/24 (and fd10:0:2::/120).
    Masquerade,
}

/// An interface the node plumbs: its place in the VMI, its network and binding, and the pod-side names.
#[derive(Clone, Debug, PartialEq)]
pub struct PodNic<'a> {
    /// Its index in `spec.domain.devices.interfaces` (the bridge binding's DHCP server address is `169.254.75.1<index>`).
    pub index: usize,
    /// The interface.
    pub iface: &'a Interface,
    /// The network it is on.
    pub network: &'a Network,
    /// Its binding.
    pub binding: Binding,
    /// The pod interface it uses (`eth0` for the pod network).
    pub pod_iface: String,
}

impl PodNic<'_> {
    /// The in-pod bridge (`k6t-eth0`).
    #[must_use]
    pub fn bridge(&self) -> String {
        format!(
            "k6t-{}",
            self.pod_iface.strip_prefix("pod").unwrap_or(&self.pod_iface)
        )
    }

    /// The tap QEMU attaches to (`tap0` for `eth0`).
    #[must_use]
    pub fn tap(&self) -> String {
        format!("tap{}", self.pod_iface.get(3..).unwrap_or_default())
    }
}

/// The pod interface of a secondary network: `pod` + the first 11 hex digits of the SHA-256 of the network's name
/// (upstream's hashed name scheme; 14 bytes, so `<hash>-nic` fits the kernel's 15).
#[must_use]
pub fn hashed_pod_iface(network: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, network.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("pod{}", &hex[..11])
}

/// Whether `n` is a secondary Multus network (not the pod network, not Multus' default).
#[must_use]
pub fn is_secondary(n: &Network) -> bool {
    n.multus.as_ref().is_some_and(|m| m.default != Some(true))
}

/// The namespace and name of the NetworkAttachmentDefinition a `multus.networkName` names: `ns/name`, else the
/// VMI's namespace.
#[must_use]
pub fn nad_of<'a>(namespace: &'a str, network_name: &'a str) -> (&'a str, &'a str) {
    network_name.split_once('/').unwrap_or((namespace, network_name))
}

/// The launcher pod's `k8s.v1.cni.cncf.io/networks` annotation: one entry per secondary network (but for those of
/// `absent` interfaces), in spec order
/// (`name`, `namespace`, `interface` and the interface's `mac` when the spec gives one), as upstream writes it.
#[must_use]
pub fn multus_annotation(vmi: &VirtualMachineInstance) -> Option<String> {
    let namespace = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let ifaces = vmi.spec.domain.devices.interfaces.as_deref().unwrap_or_default();
    let entries: Vec<serde_json::Value> = vmi
        .spec
        .networks
        .iter()
        .flatten()
        .filter(|n| is_secondary(n))
        // An unplugged (`absent`) interface's network leaves the pod too.
        .filter(|n| {
            !ifaces
                .iter()
                .any(|i| i.name == n.name && i.state.as_deref() == Some("absent"))
        })
        .filter_map(|n| {
            let (ns, name) = nad_of(namespace, &n.multus.as_ref()?.network_name);
            let mut e =
                serde_json::json!({"name": name, "namespace": ns, "interface": hashed_pod_iface(&n.name)});
            if let Some(mac) = ifaces
                .iter()
                .find(|i| i.name == n.name)
                .and_then(|i| i.mac_address.clone())
            {
                e["mac"] = mac.into();
            }
            Some(e)
        })
        .collect();
    (!entries.is_empty()).then(|| serde_json::Value::from(entries).to_string())
}

/// The interfaces the node plumbs, in spec order (absent ones left out): bridge or masquerade on the pod network,
/// and bridge on secondary (Multus) networks, whose pod interfaces have hashed names.
#[must_use]
pub fn pod_nics(vmi: &VirtualMachineInstance) -> Vec<PodNic<'_>> {
    let networks = vmi.spec.networks.as_deref().unwrap_or_default();
    let ifaces = vmi.spec.domain.devices.interfaces.as_deref().unwrap_or_default();
    ifaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.state.as_deref() != Some("absent"))
        .filter_map(|(index, iface)| {
            let network = networks.iter().find(|n| n.name == iface.name)?;
            let binding = if iface.masquerade.is_some() {
                Binding::Masquerade
            } else if iface.bridge.is_some() {
                Binding::Bridge
            } else {
                return None;
            };
            let pod_iface = if is_secondary(network) {
                if binding != Binding::Bridge {
                    return None;
                }
                hashed_pod_iface(&network.name)
            } else if network.pod.is_some() || network.multus.is_some() {
                "eth0".into()
            } else {
                return None;
            };
            Some(PodNic {
                index,
                iface,
                network,
                binding,
                pod_iface,
            })
        })
        .collect()
}

/// The guest's vCPUs (sockets × cores × threads, at least 1).
#[must_use]
pub fn vcpus(vmi: &VirtualMachineInstance) -> u32 {
    let cpu = vmi.spec.domain.cpu.as_ref();
    let n = |v: Option<i64>| u32::try_from(v.unwrap_or(1).max(1)).unwrap_or(1);
    let total = cpu.map_or(1, |c| {
        n(c.sockets)
            .saturating_mul(n(c.cores))
            .saturating_mul(n(c.threads))
    });
    total.max(1)
}

/// Upstream's virtio queue count for `iface`: the vCPUs (at most 256) under `networkInterfaceMultiqueue` on a
/// virtio model, else 1.
#[must_use]
pub fn queues(vmi: &VirtualMachineInstance, iface: &Interface) -> u32 {
    let multiqueue = vmi.spec.domain.devices.network_interface_multiqueue == Some(true);
    let virtio = iface.model.as_deref().is_none_or(|m| m == "virtio");
    if multiqueue && virtio {
        vcpus(vmi).min(256)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi(spec: serde_json::Value) -> VirtualMachineInstance {
        serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": spec})).unwrap()
    }

    #[test]
    fn pod_network_interfaces_get_upstreams_names_and_bindings() {
        let v = vmi(json!({
            "domain": {"devices": {"interfaces": [
                {"name": "a", "masquerade": {}},
                {"name": "gone", "bridge": {}, "state": "absent"},
                {"name": "b", "bridge": {}},
            ]}},
            "networks": [{"name": "a", "pod": {}}, {"name": "gone", "pod": {}}, {"name": "b", "multus": {"networkName": "x"}}],
        }));
        let nics = pod_nics(&v);
        assert_eq!(nics.len(), 2);
        assert_eq!(
            (nics[0].index, nics[0].binding, nics[0].bridge(), nics[0].tap()),
            (0, Binding::Masquerade, "k6t-eth0".into(), "tap0".into())
        );
        let hashed = hashed_pod_iface("b");
        assert_eq!(
            (nics[1].index, nics[1].binding, nics[1].pod_iface.as_str()),
            (2, Binding::Bridge, hashed.as_str())
        );
        assert_eq!(nics[1].bridge(), format!("k6t-{}", &hashed[3..]));
        assert_eq!(nics[1].tap(), format!("tap{}", &hashed[3..]));
    }

    #[test]
    fn secondary_networks_are_named_and_annotated_as_upstream() {
        // upstream's annotation_test: networks "blue" and "red".
        assert_eq!(hashed_pod_iface("blue"), "pod16477688c0e");
        assert_eq!(hashed_pod_iface("red"), "podb1f51a511f1");
        let v: VirtualMachineInstance = serde_json::from_value(json!({"metadata": {"name": "v", "namespace": "ns"},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}},
                {"name": "test1", "bridge": {}, "macAddress": "de:ad:00:00:be:ef"}, {"name": "other", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "test1", "multus": {"networkName": "nad-a"}},
                {"name": "other", "multus": {"networkName": "elsewhere/nad-b"}}]}}))
        .unwrap();
        let a: serde_json::Value = serde_json::from_str(&multus_annotation(&v).unwrap()).unwrap();
        assert_eq!(
            a,
            json!([{"name": "nad-a", "namespace": "ns", "interface": hashed_pod_iface("test1"), "mac": "de:ad:00:00:be:ef"},
                {"name": "nad-b", "namespace": "elsewhere", "interface": hashed_pod_iface("other")}])
        );
        assert_eq!(multus_annotation(&vmi(json!({"domain": {"devices": {}}}))), None);
    }

    #[test]
    fn multiqueue_gives_virtio_nics_a_queue_per_vcpu() {
        let v = vmi(json!({"domain": {"cpu": {"sockets": 2, "cores": 2, "threads": 1},
            "devices": {"networkInterfaceMultiqueue": true, "interfaces": [{"name": "a"}, {"name": "b", "model": "e1000"}]}}}));
        let ifaces = v.spec.domain.devices.interfaces.clone().unwrap();
        assert_eq!(queues(&v, &ifaces[0]), 4);
        assert_eq!(queues(&v, &ifaces[1]), 1);
        let single = vmi(json!({"domain": {"devices": {"interfaces": [{"name": "a"}]}}}));
        assert_eq!(queues(&single, &ifaces[0]), 1);
    }
}
