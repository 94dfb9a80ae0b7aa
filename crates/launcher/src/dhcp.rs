//! The in-pod DHCPv4 server of network phase 2 (upstream's, option for option): one per plumbed interface, bound
//! to its in-pod bridge on port 67, answering DISCOVER with OFFER and REQUEST with ACK of the one configured address
//! (never NAK; RELEASE, DECLINE, INFORM and short packets ignored), a 999-day lease, a MAC filter for the bridge
//! binding, replies padded to BOOTP's 300 bytes. Options: 1 mask, 3 router, 6 DNS and 119 search from the pod's
//! resolv.conf, 12 hostname, 15 domain, 26 MTU, 121 classless routes (bridge binding), and the interface's
//! `dhcpOptions` (66, 67, 42, private 224–254). The wire format is dhcproto's.
//!
//! Replies always go to 255.255.255.255:68 on the bridge (upstream unicasts a renewal to its source address; a
//! broadcast reaches the same client, and under the bridge binding the pod's own dummy holds that address).

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr as _;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable as _, Encodable as _, Name};
use kubevirt_api::v1::{DHCPOptions, VirtualMachineInstance};
use launcher_protocol::network::{Dhcp4, PlumbedInterface};

/// Upstream's lease: 999 days.
pub const LEASE_SECONDS: u32 = 999 * 24 * 3600;
/// The BOOTP minimum message size replies are padded to.
const BOOTP_MIN: usize = 300;

/// What every answer on one interface carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The address, server and routes.
    pub dhcp: Dhcp4,
    /// The interface's MTU.
    pub mtu: u32,
    /// The guest's hostname.
    pub hostname: String,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// The search list (option 119); its longest entry is the domain name (option 15).
    pub search: Vec<String>,
    /// The interface's `dhcpOptions`.
    pub extra: Vec<DhcpOption>,
}

/// The resolver configuration of the pod: IPv4 `nameserver`s and the `search` list, lower-cased.
#[must_use]
pub fn resolv_conf(text: &str) -> (Vec<Ipv4Addr>, Vec<String>) {
    let (mut dns, mut search) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.extend(words.next().and_then(|w| w.parse::<Ipv4Addr>().ok())),
            Some("search") => search.extend(words.map(str::to_ascii_lowercase)),
            _ => {}
        }
    }
    (dns, search)
}

/// The guest's hostname as the pod's: `spec.hostname`, else the VMI's name up to the first dot, at most 63 bytes.
#[must_use]
pub fn hostname(vmi: &VirtualMachineInstance) -> String {
    let name = vmi.spec.hostname.clone().unwrap_or_else(|| {
        let n = vmi.metadata.name.as_deref().unwrap_or_default();
        n.split('.').next().unwrap_or_default().to_string()
    });
    name.chars().take(63).collect()
}

/// The search list with `subdomain` in front (as `<subdomain>.<the longest entry containing .svc.>`) unless there.
#[must_use]
pub fn search_list(search: &[String], subdomain: Option<&str>) -> Vec<String> {
    let mut out = search.to_vec();
    if let Some(sub) = subdomain.filter(|s| !s.is_empty()) {
        let svc = search
            .iter()
            .filter(|s| s.contains(".svc."))
            .max_by_key(|s| s.len());
        if let Some(svc) = svc {
            let first = format!("{sub}.{svc}");
            if !search.first().is_some_and(|s| s.starts_with(&format!("{sub}."))) {
                out.insert(0, first);
            }
        }
    }
    out
}

/// The interface's `dhcpOptions` as options: 67 boot file, 66 TFTP server, 42 NTP servers, 224–254 private.
#[must_use]
pub fn user_options(o: Option<&DHCPOptions>) -> Vec<DhcpOption> {
    let Some(o) = o else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(f) = &o.boot_file_name {
        out.push(DhcpOption::BootfileName(f.as_bytes().to_vec()));
    }
    if let Some(t) = &o.tftp_server_name {
        out.push(DhcpOption::TFTPServerName(t.as_bytes().to_vec()));
    }
    let ntp: Vec<Ipv4Addr> = o
        .ntp_servers
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    if !ntp.is_empty() {
        out.push(DhcpOption::NtpServers(ntp));
    }
    for p in o.private_options.iter().flatten() {
        if let Ok(code) = u8::try_from(p.option).map(OptionCode::from) {
            out.push(DhcpOption::Unknown(UnknownOption::new(
                code,
                p.value.as_bytes().to_vec(),
            )));
        }
    }
    out
}

/// The answer to `request`, if it gets one.
#[must_use]
pub fn answer(service: &Service, request: &[u8]) -> Option<Vec<u8>> {
    if request.len() < 240 {
        return None;
    }
    let req = Message::from_bytes(request).ok()?;
    if req.opcode() != Opcode::BootRequest {
        return None;
    }
    let kind = match req.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => MessageType::Ack,
        _ => return None,
    };
    if let Some(mac) = &service.dhcp.client_mac
        && !mac_matches(mac, req.chaddr())
    {
        return None;
    }
    let d = &service.dhcp;
    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(req.chaddr())
        .set_yiaddr(d.address);
    let o = reply.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(d.server));
    o.insert(DhcpOption::AddressLeaseTime(LEASE_SECONDS));
    o.insert(DhcpOption::SubnetMask(mask(d.prefix)));
    if let Some(r) = d.router {
        o.insert(DhcpOption::Router(vec![r]));
    }
    let dns = if service.dns.is_empty() {
        vec![Ipv4Addr::new(8, 8, 8, 8)]
    } else {
        service.dns.clone()
    };
    o.insert(DhcpOption::DomainNameServer(dns));
    if !service.hostname.is_empty() {
        o.insert(DhcpOption::Hostname(service.hostname.clone()));
    }
    let names: Vec<Name> = service
        .search
        .iter()
        .filter_map(|s| Name::from_str(s).ok())
        .collect();
    if let Some(domain) = service.search.iter().max_by_key(|s| s.len()) {
        o.insert(DhcpOption::DomainName(domain.clone()));
    }
    if !names.is_empty() {
        o.insert(DhcpOption::DomainSearch(names));
    }
    if let Ok(mtu) = u16::try_from(service.mtu) {
        o.insert(DhcpOption::InterfaceMtu(mtu));
    }
    if !d.routes.is_empty() {
        let routes = d
            .routes
            .iter()
            .filter_map(|r| Some((ipnet::Ipv4Net::new(r.destination, r.prefix).ok()?, r.gateway)))
            .collect();
        o.insert(DhcpOption::ClasslessStaticRoute(routes));
    }
    for extra in &service.extra {
        o.insert(extra.clone());
    }
    let mut bytes = reply.to_vec().ok()?;
    if bytes.len() < BOOTP_MIN {
        bytes.resize(BOOTP_MIN, 0);
    }
    Some(bytes)
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(u32::from(32 - prefix.min(32))).unwrap_or(0))
}

fn mac_matches(mac: &str, chaddr: &[u8]) -> bool {
    let want: Vec<u8> = mac
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    want.len() == 6 && chaddr.get(..6) == Some(&want[..])
}

/// The service of `nic` for `vmi`, with the pod's resolver configuration.
#[must_use]
pub fn service(vmi: &VirtualMachineInstance, nic: &PlumbedInterface, resolv: &str) -> Option<Service> {
    let dhcp = nic.dhcp4.clone()?;
    let (dns, search) = resolv_conf(resolv);
    let search = if search.is_empty() {
        vec!["cluster.local".to_string()]
    } else {
        search
    };
    let iface = vmi
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .flatten()
        .find(|i| i.name == nic.name);
    Some(Service {
        dhcp,
        mtu: nic.mtu,
        hostname: hostname(vmi),
        dns,
        search: search_list(&search, vmi.spec.subdomain.as_deref()),
        extra: user_options(iface.and_then(|i| i.dhcp_options.as_ref())),
    })
}

/// Serves `service` on the bridge `device` until the task is dropped.
///
/// # Errors
/// The socket could not be made (the port taken, no such device).
pub fn serve(device: &str, service: Service) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(device.as_bytes()))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)).into())?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    let device = device.to_string();
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let Ok((n, _from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some(reply) = answer(&service, &buf[..n]) else {
                continue;
            };
            let to = SocketAddr::from((Ipv4Addr::BROADCAST, 68));
            if let Err(e) = socket.send_to(&reply, to).await {
                tracing::warn!(error = %e, device, "sending a DHCP reply");
            }
        }
    }))
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
