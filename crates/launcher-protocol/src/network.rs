//! What the node agent's network phase 1 hands the launcher for phase 2: per interface, the tap QEMU attaches to,
//! the MTU and queues it was made with, the MAC the guest must take, and the DHCP service to run on the in-pod
//! bridge (the pod interface's addresses are gone by then for the bridge binding, so they travel here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// One plumbed interface of the VMI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlumbedInterface {
    /// The VMI's interface name.
    pub name: String,
    /// The pod interface it uses (`eth0`).
    pub pod_interface: String,
    /// The tap QEMU attaches to.
    pub tap: String,
    /// The in-pod bridge the tap is on (where the DHCP servers listen).
    pub bridge: String,
    /// The pod interface's MTU (the tap's, and the guest's through `host_mtu` and DHCP).
    pub mtu: u32,
    /// Queues the tap was made with (more than one: multi-queue).
    pub queues: u32,
    /// The MAC the guest must use (the bridge binding hands the pod's), when the spec names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The DHCPv4 service, when the guest gets an IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp4: Option<Dhcp4>,
    /// The DHCPv6 service, when the guest gets an IPv6 address (masquerade only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp6: Option<Dhcp6>,
    /// The pod interface's own addresses as phase 1 found them (upstream's pod-interface cache): the IPs
    /// `status.interfaces` reports for the pod network, IPv4 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<IpAddr>,
}

/// A DHCPv4 service for one guest interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dhcp4 {
    /// The server's address (option 54): the gateway, or the bridge binding's `169.254.75.1N`.
    pub server: Ipv4Addr,
    /// The address offered.
    pub address: Ipv4Addr,
    /// Its prefix length (option 1).
    pub prefix: u8,
    /// The default gateway (option 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv4Addr>,
    /// Classless static routes (option 121), the default route last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route4>,
    /// Only this client is answered (the bridge binding); `None` answers any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mac: Option<String>,
}

/// One classless static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route4 {
    /// The destination network.
    pub destination: Ipv4Addr,
    /// Its prefix length (0: the default route).
    pub prefix: u8,
    /// The next hop (`0.0.0.0`: on-link).
    pub gateway: Ipv4Addr,
}

/// A DHCPv6 service for one guest interface (stateless answers of one address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dhcp6 {
    /// The address offered (`fd10:0:2::2`).
    pub address: Ipv6Addr,
    /// The server's DUID-LL link-layer address (the bridge's MAC).
    pub server_mac: String,
}
