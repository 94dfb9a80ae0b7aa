//! Phase 1 as a plan, from what was asked and the pod interface as found (pure): the iproute2 batch in upstream's
//! order, the sysctls, the nftables ruleset, and what the launcher needs for phase 2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use launcher_protocol::network::{Dhcp4, Dhcp6, PlumbedInterface, Route4};

use crate::PlumbError;
use crate::facts::PodLink;
use crate::nft::{self, Forward};

/// The in-pod bridge's MAC under masquerade: fixed, so the guest's gateway MAC never changes (upstream's value).
pub const MASQUERADE_BRIDGE_MAC: &str = "02:00:00:00:00:00";

/// How the interface is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The pod's address and MAC go to the guest.
    Bridge,
    /// NAT behind `vm_cidr` (and `vm_cidr6` when the pod has IPv6).
    Masquerade {
        /// `vmNetworkCIDR` (default `10.0.2.0/24`).
        vm_cidr: String,
        /// `vmIPv6NetworkCIDR` (default `fd10:0:2::/120`).
        vm_cidr6: String,
        /// What is forwarded to the guest.
        forward: Forward,
    },
}

/// What to plumb for one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The VMI's interface name.
    pub name: String,
    /// Its index in the VMI's interfaces.
    pub index: usize,
    /// Its binding.
    pub binding: Binding,
    /// The pod interface (`eth0`).
    pub pod_iface: String,
    /// The in-pod bridge (`k6t-eth0`).
    pub bridge: String,
    /// The tap (`tap0`).
    pub tap: String,
    /// Virtio queues (more than one: a multi-queue tap).
    pub queues: u32,
    /// The tap's owner (the launcher's user and group).
    pub owner: (u32, u32),
    /// The MAC the spec gives the interface.
    pub spec_mac: Option<String>,
}

/// Phase 1 for one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `ip -batch` lines, in order.
    pub ip: Vec<String>,
    /// A link that keeps the pod interface's name and addresses (the bridge binding), made after `ip`.
    pub placeholder: Option<Placeholder>,
    /// `sysctl -w` settings.
    pub sysctls: Vec<String>,
    /// The nftables file, if any.
    pub nft: Option<String>,
    /// What the launcher gets.
    pub result: PlumbedInterface,
}

/// The link left in the pod interface's place: a `dummy` as upstream makes it, or, on kernels without the dummy
/// driver, an empty bridge that is never brought up (either just holds the name, MAC and addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// Its name (the pod interface's).
    pub name: String,
    /// `ip -batch` lines once it exists.
    pub then: Vec<String>,
}

/// Plans `req` on `link`.
///
/// # Errors
/// [`PlumbError::Invalid`]: a CIDR that is not one or too small, a bridge-bound pod interface without a gateway.
pub fn plan(req: &Request, link: &PodLink) -> Result<Plan, PlumbError> {
    match &req.binding {
        Binding::Bridge => bridge(req, link),
        Binding::Masquerade {
            vm_cidr,
            vm_cidr6,
            forward,
        } => masquerade(req, link, vm_cidr, vm_cidr6, forward),
    }
}

fn tap_lines(req: &Request, mtu: u32) -> Vec<String> {
    let multi = if req.queues > 1 { " multi_queue" } else { "" };
    vec![
        format!(
            "tuntap add dev {} mode tap user {} group {}{multi}",
            req.tap, req.owner.0, req.owner.1
        ),
        format!("link set dev {} mtu {mtu} master {} up", req.tap, req.bridge),
    ]
}

fn result(req: &Request, link: &PodLink) -> PlumbedInterface {
    PlumbedInterface {
        name: req.name.clone(),
        pod_interface: req.pod_iface.clone(),
        tap: req.tap.clone(),
        bridge: req.bridge.clone(),
        mtu: link.mtu,
        queues: req.queues,
        mac: None,
        dhcp4: None,
        dhcp6: None,
        pod_ips: {
            let mut ips: Vec<IpAddr> = link.addrs.iter().filter(|a| a.global).map(|a| a.ip).collect();
            ips.sort_by_key(IpAddr::is_ipv6);
            ips
        },
    }
}

/// The first two hosts of `cidr` and its prefix length (upstream: at least 2 host addresses).
fn gateway_and_guest(cidr: &str, field: &str) -> Result<(IpAddr, IpAddr, u8), PlumbError> {
    let invalid = |why: String| PlumbError::Invalid(format!("{field} {cidr:?}: {why}"));
    let (ip, len) = cidr.split_once('/').ok_or_else(|| invalid("not a CIDR".into()))?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid("not a CIDR".into()))?;
    let len: u8 = len.parse().map_err(|_| invalid("not a CIDR".into()))?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    if len > bits {
        return Err(invalid("not a CIDR".into()));
    }
    if bits - len < 2 {
        return Err(invalid(
            "VM CIDR subnet is too small, at least 2 host addresses are required".into(),
        ));
    }
    Ok(match ip {
        IpAddr::V4(v4) => {
            let net = u32::from(v4) & u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0);
            (
                Ipv4Addr::from(net + 1).into(),
                Ipv4Addr::from(net + 2).into(),
                len,
            )
        }
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
            (
                Ipv6Addr::from(net + 1).into(),
                Ipv6Addr::from(net + 2).into(),
                len,
            )
        }
    })
}

fn masquerade(
    req: &Request,
    link: &PodLink,
    vm_cidr: &str,
    vm_cidr6: &str,
    forward: &Forward,
) -> Result<Plan, PlumbError> {
    let (br, mtu) = (&req.bridge, link.mtu);
    let mut ip = vec![
        format!("link add {br} type bridge"),
        format!("link set dev {br} address {MASQUERADE_BRIDGE_MAC} mtu {mtu}"),
    ];
    let mut sysctls = Vec::new();
    let mut nft = String::new();
    let mut out = result(req, link);
    // One family: the gateway on the bridge and the family's NAT table; the gateway and guest addresses back.
    let mut family = |cidr: &str, field: &str| -> Result<(IpAddr, IpAddr, u8), PlumbError> {
        let (gw, guest, len) = gateway_and_guest(cidr, field)?;
        ip.push(format!("addr add {gw}/{len} dev {br}"));
        nft.push_str(&nft::ruleset(&nft::Masquerade {
            pod_iface: &req.pod_iface,
            bridge: br,
            gateway: gw,
            guest,
            forward,
        }));
        Ok((gw, guest, len))
    };
    if link.ipv4().is_some() {
        let (gw, guest, len) = family(vm_cidr, "vmNetworkCIDR")?;
        sysctls.push(format!("net.ipv4.conf.{br}.route_localnet=1"));
        sysctls.push("net.ipv4.ip_forward=1".into());
        if let (IpAddr::V4(server), IpAddr::V4(address)) = (gw, guest) {
            out.dhcp4 = Some(Dhcp4 {
                server,
                address,
                prefix: len,
                router: Some(server),
                routes: Vec::new(),
                client_mac: None,
            });
        }
    }
    if link.has_ipv6() {
        let (_, guest, _) = family(vm_cidr6, "vmIPv6NetworkCIDR")?;
        sysctls.push("net.ipv6.conf.all.forwarding=1".into());
        if let IpAddr::V6(address) = guest {
            out.dhcp6 = Some(Dhcp6 {
                address,
                server_mac: MASQUERADE_BRIDGE_MAC.into(),
            });
        }
    }
    ip.push(format!("link set dev {br} up"));
    ip.extend(tap_lines(req, mtu));
    Ok(Plan {
        ip,
        placeholder: None,
        sysctls,
        nft: (!nft.is_empty()).then_some(nft),
        result: out,
    })
}

/// A MAC for the in-pod bridge (and the renamed pod NIC) that differs from the pod's, which the guest takes.
fn bridge_mac(pod_mac: &str) -> String {
    let mut bytes: Vec<u8> = pod_mac
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    bytes.resize(6, 0);
    bytes[0] = ((bytes[0] ^ 0x04) | 0x02) & !0x01;
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DHCP routes of a bridge-bound interface: every IPv4 route through it except its own subnet, the default
/// route last; an on-link next hop is 0.0.0.0.
fn routes(link: &PodLink, subnet: (Ipv4Addr, u8)) -> Vec<Route4> {
    let mask =
        |(ip, len): (Ipv4Addr, u8)| u32::from(ip) & u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0);
    let mut out: Vec<Route4> = link
        .routes4
        .iter()
        .filter_map(|r| {
            let (destination, prefix) = r.dst.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
            let own = r.dst.is_some_and(|d| d.1 == subnet.1 && mask(d) == mask(subnet));
            (!own).then(|| Route4 {
                destination,
                prefix,
                gateway: r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
            })
        })
        .collect();
    out.sort_by_key(|r| r.prefix == 0);
    out
}

fn bridge(req: &Request, link: &PodLink) -> Result<Plan, PlumbError> {
    let (br, pod, mtu) = (&req.bridge, &req.pod_iface, link.mtu);
    // `eth0-nic`; a secondary `pod<hash>` becomes `<hash>-nic` (15 bytes, the kernel's limit).
    let renamed = format!("{}-nic", pod.strip_prefix("pod").unwrap_or(pod));
    let mac = bridge_mac(&link.mac);
    let v4 = link.ipv4();
    let mut out = result(req, link);
    out.mac = Some(link.mac.clone());
    if let Some((address, prefix)) = v4 {
        // Upstream: the next hop of the first IPv4 route through the interface (none on a network without a
        // gateway, whose connected route is all there is); no route at all is an error.
        let first = link
            .routes4
            .first()
            .ok_or_else(|| PlumbError::Invalid(format!("no gateway address found in routes for {pod}")))?;
        let router = first.gateway;
        // upstream concatenates the index: 169.254.75.1 + "0" → .10, + "12" → .112.
        let server: Ipv4Addr = format!("169.254.75.1{}", req.index)
            .parse()
            .map_err(|_| PlumbError::Invalid(format!("interface index {} is too large", req.index)))?;
        out.dhcp4 = Some(Dhcp4 {
            server,
            address,
            prefix,
            router,
            routes: routes(link, (address, prefix)),
            client_mac: Some(req.spec_mac.clone().unwrap_or_else(|| link.mac.clone())),
        });
    }
    let mut ip = vec![
        format!("link add {br} type bridge"),
        format!("link set dev {br} address {mac} mtu {mtu}"),
    ];
    if let Some(d) = &out.dhcp4 {
        ip.push(format!("addr add {}/32 dev {br}", d.server));
    }
    ip.push(format!("link set dev {br} up"));
    ip.extend([
        format!("link set dev {pod} down"),
        format!("link set dev {pod} name {renamed}"),
        format!("link set dev {renamed} address {mac}"),
        format!("link set dev {renamed} master {br}"),
        format!("addr flush dev {renamed}"),
        format!("link set dev {renamed} up"),
        format!("link set dev {renamed} type bridge_slave learning off"),
    ]);
    ip.extend(tap_lines(req, mtu));
    // The dummy keeps the pod's name, MAC and addresses, so the pod still owns its IP.
    let mut keep = vec![format!("link set dev {pod} address {} mtu {mtu}", link.mac)];
    for a in link.addrs.iter().filter(|a| a.global) {
        keep.push(format!("addr add {}/{} dev {pod}", a.ip, a.prefix));
    }
    let sysctls = if v4.is_some() {
        vec!["net.ipv4.conf.all.arp_ignore=1".into()]
    } else {
        Vec::new()
    };
    Ok(Plan {
        ip,
        placeholder: Some(Placeholder {
            name: pod.clone(),
            then: keep,
        }),
        sysctls,
        nft: None,
        result: out,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
