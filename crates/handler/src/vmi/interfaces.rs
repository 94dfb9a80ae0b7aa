//! `status.interfaces` with what the guest agent says (upstream's merge): a domain NIC whose MAC the agent reports
//! gets the guest's `interfaceName` and infoSource `domain, guest-agent`; on the pod network each family the pod
//! has keeps the pod's addresses (a masquerade guest's 10.0.2.2 and fd10:0:2::2 are never reported), a family it
//! lacks takes the agent's (link-local ones dropped under masquerade, whose guest sits behind NAT); interfaces off
//! the pod network take all of the agent's; NICs only the guest knows are listed with infoSource `guest-agent` (at most 10, `lo` left
//! out). The pod network's IPv4 address stays the pod's: the masquerade guest's 10.0.2.2 is never reported.
//!
//! One difference, on purpose: upstream clears an address family the agent reports none of (a guest that has not
//! run DHCP yet shows no IP); the pod's address is kept here, since Services and port-forward reach the guest there.

use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceNetworkInterface as Iface};
use serde::Deserialize;
use serde_json::Value;

/// Upstream's cap on interfaces only the guest knows.
const GUEST_ONLY_MAX: usize = 10;

/// One interface as `guest-network-get-interfaces` lists it.
#[derive(Debug, Deserialize)]
struct AgentIface {
    name: String,
    #[serde(rename = "hardware-address", default)]
    mac: String,
    #[serde(rename = "ip-addresses", default)]
    ips: Vec<AgentIp>,
}

#[derive(Debug, Deserialize)]
struct AgentIp {
    #[serde(rename = "ip-address")]
    ip: String,
}

/// `ifaces` (the domain's, as the status has them) merged with the agent's answer; `None` when it says nothing.
#[must_use]
pub fn merge(vmi: &VirtualMachineInstance, ifaces: &[Iface], agent: Option<&Value>) -> Option<Vec<Iface>> {
    let listed: Vec<AgentIface> = serde_json::from_value(agent?.clone()).ok()?;
    let networks = vmi.spec.networks.as_deref().unwrap_or_default();
    let specs = vmi.spec.domain.devices.interfaces.as_deref().unwrap_or_default();
    let on_pod = |name: &str| networks.iter().any(|n| n.name == name && n.pod.is_some());
    let masquerade = |name: &str| specs.iter().any(|i| i.name == name && i.masquerade.is_some());
    let mut out: Vec<Iface> = ifaces
        .iter()
        .filter(|i| i.info_source.as_deref().is_some_and(|s| s.contains("domain")))
        .map(|i| {
            let mut i = i.clone();
            let name = i.name.clone().unwrap_or_default();
            let mac = i.mac.clone().unwrap_or_default();
            let Some(a) = listed
                .iter()
                .find(|a| !mac.is_empty() && a.mac.eq_ignore_ascii_case(&mac))
            else {
                return i;
            };
            let from_agent = a
                .ips
                .iter()
                .map(|ip| ip.ip.clone())
                .filter(|ip| !(masquerade(&name) && ip.to_ascii_lowercase().starts_with("fe80:")));
            let ips: Vec<String> = if on_pod(&name) {
                // Per family: the pod's addresses when it has that family, else the guest's.
                let pod: Vec<String> = i.ip_addresses.clone().unwrap_or_default();
                let v4 = pod.iter().filter(|ip| !ip.contains(':')).cloned();
                let pod6: Vec<String> = pod.iter().filter(|ip| ip.contains(':')).cloned().collect();
                let v6: Vec<String> = if pod6.is_empty() {
                    from_agent.filter(|ip| ip.contains(':')).collect()
                } else {
                    pod6
                };
                v4.chain(v6).collect()
            } else {
                from_agent.collect()
            };
            i.ip_address = ips.first().cloned();
            i.ip_addresses = (!ips.is_empty()).then_some(ips);
            i.interface_name = Some(a.name.clone());
            let multus = i
                .info_source
                .as_deref()
                .is_some_and(|s| s.contains("multus-status"));
            let source = if multus {
                "domain, guest-agent, multus-status"
            } else {
                "domain, guest-agent"
            };
            i.info_source = Some(source.into());
            i
        })
        .collect();
    let known: Vec<String> = out.iter().filter_map(|i| i.mac.clone()).collect();
    let guest_only = listed
        .iter()
        .filter(|a| a.name != "lo" && !known.iter().any(|m| m.eq_ignore_ascii_case(&a.mac)))
        .take(GUEST_ONLY_MAX)
        .map(|a| {
            let ips: Vec<String> = a.ips.iter().map(|ip| ip.ip.clone()).collect();
            Iface {
                interface_name: Some(a.name.clone()),
                mac: (!a.mac.is_empty()).then(|| a.mac.clone()),
                ip_address: ips.first().cloned(),
                ip_addresses: (!ips.is_empty()).then_some(ips),
                info_source: Some("guest-agent".into()),
                ..Default::default()
            }
        });
    out.extend(guest_only);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi() -> VirtualMachineInstance {
        serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "sec", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "sec", "multus": {"networkName": "n"}}]}}))
        .unwrap()
    }

    fn domain(name: &str, mac: &str, ip: Option<&str>) -> Iface {
        Iface {
            name: Some(name.into()),
            mac: Some(mac.into()),
            ip_address: ip.map(Into::into),
            ip_addresses: ip.map(|i| vec![i.into()]),
            info_source: Some("domain".into()),
            ..Default::default()
        }
    }

    #[test]
    fn agent_names_and_addresses_merge_as_upstream() {
        let ifaces = [
            domain("default", "02:aa:00:00:00:01", Some("10.251.1.5")),
            domain("sec", "02:aa:00:00:00:02", None),
        ];
        let agent = json!([
            {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
            {"name": "eth0", "hardware-address": "02:AA:00:00:00:01", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "10.0.2.2", "prefix": 24},
                {"ip-address-type": "ipv6", "ip-address": "fe80::aa:ff:fe00:1", "prefix": 64},
                {"ip-address-type": "ipv6", "ip-address": "fd10:0:2::2", "prefix": 120}]},
            {"name": "eth1", "hardware-address": "02:aa:00:00:00:02", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "192.168.5.7", "prefix": 24}]},
            {"name": "dummy0", "hardware-address": "0a:0b:0c:0d:0e:0f"}
        ]);
        let out = merge(&vmi(), &ifaces, Some(&agent)).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].interface_name.as_deref(), Some("eth0"));
        assert_eq!(out[0].info_source.as_deref(), Some("domain, guest-agent"));
        assert_eq!(
            out[0].ip_address.as_deref(),
            Some("10.251.1.5"),
            "the pod's IP, never 10.0.2.2"
        );
        assert_eq!(
            out[0].ip_addresses,
            Some(vec!["10.251.1.5".to_string(), "fd10:0:2::2".to_string()]),
            "masquerade drops link-local"
        );
        assert_eq!(
            out[1].ip_address.as_deref(),
            Some("192.168.5.7"),
            "a secondary NIC's addresses are the guest's"
        );
        assert_eq!(
            (
                out[2].interface_name.as_deref(),
                out[2].info_source.as_deref(),
                out[2].name.as_deref()
            ),
            (Some("dummy0"), Some("guest-agent"), None)
        );
        // Merging again gives the same (the status is written only when it changes).
        assert_eq!(merge(&vmi(), &out, Some(&agent)).unwrap(), out);
        assert_eq!(merge(&vmi(), &ifaces, None), None);

        // A dual-stack pod: its IPv6 address stays too (the guest's fd10:0:2::2 is behind the NAT).
        let mut dual = ifaces.clone();
        dual[0].ip_addresses = Some(vec!["10.251.1.5".into(), "fd00:10:251:1::5".into()]);
        let out = merge(&vmi(), &dual, Some(&agent)).unwrap();
        assert_eq!(
            out[0].ip_addresses,
            Some(vec!["10.251.1.5".to_string(), "fd00:10:251:1::5".to_string()])
        );
    }
}
