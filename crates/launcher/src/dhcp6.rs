//! The in-pod DHCPv6 server of network phase 2 for the masquerade binding on a pod with IPv6 (upstream's): bound to
//! the in-pod bridge on port 547, joined to `ff02::1:2` there, stateless — SOLICIT gets ADVERTISE (REPLY when the
//! client asked for rapid commit), every other client message a REPLY — carrying the client's id, the server's
//! DUID-LL (the bridge's MAC), an IA_NA (the client's IAID) with the one address for 999 days, and the pod's IPv6
//! name servers. No router advertisements are sent, as upstream: the guest's default route via `fd10:0:2::1`
//! comes from its own configuration (upstream's tests use cloud-init network data). The wire format is dhcproto's.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use dhcproto::v6::{DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, OptionCode};
use dhcproto::{Decodable as _, Encodable as _};
use launcher_protocol::network::PlumbedInterface;

use crate::dhcp::LEASE_SECONDS;

/// The DHCPv6 servers' multicast group.
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// What every answer on one interface carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The address handed out (`fd10:0:2::2`).
    pub address: Ipv6Addr,
    /// The server's DUID.
    pub server_id: Vec<u8>,
    /// IPv6 name servers of the pod's resolv.conf.
    pub dns: Vec<Ipv6Addr>,
}

/// DUID-LL (type 3, hardware type 1: Ethernet) of `mac`.
fn duid_ll(mac: &str) -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend(mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()));
    duid
}

/// The service of `nic` (masquerade with IPv6), with the pod's resolver configuration.
#[must_use]
pub fn service(nic: &PlumbedInterface, resolv: &str) -> Option<Service> {
    let d = nic.dhcp6.as_ref()?;
    let dns = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|w| w.trim().parse::<Ipv6Addr>().ok())
        .collect();
    Some(Service {
        address: d.address,
        server_id: duid_ll(&d.server_mac),
        dns,
    })
}

/// The answer to `request`, or `None` for what servers do not answer (their own messages, relays, garbage).
#[must_use]
pub fn answer(service: &Service, request: &[u8]) -> Option<Vec<u8>> {
    let req = Message::decode(&mut dhcproto::Decoder::new(request)).ok()?;
    let rapid = req.opts().get(OptionCode::RapidCommit).is_some();
    let reply_type = match req.msg_type() {
        MessageType::Solicit if rapid => MessageType::Reply,
        MessageType::Solicit => MessageType::Advertise,
        MessageType::Request
        | MessageType::Renew
        | MessageType::Rebind
        | MessageType::Confirm
        | MessageType::Release
        | MessageType::Decline
        | MessageType::InformationRequest => MessageType::Reply,
        _ => return None,
    };
    let mut opts = DhcpOptions::new();
    if let Some(DhcpOption::ClientId(id)) = req.opts().get(OptionCode::ClientId) {
        opts.insert(DhcpOption::ClientId(id.clone()));
    }
    opts.insert(DhcpOption::ServerId(service.server_id.clone()));
    if req.msg_type() != MessageType::InformationRequest {
        let iaid = match req.opts().get(OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => ia.id,
            _ => 0,
        };
        let mut addr = DhcpOptions::new();
        addr.insert(DhcpOption::IAAddr(IAAddr {
            addr: service.address,
            preferred_life: LEASE_SECONDS,
            valid_life: LEASE_SECONDS,
            opts: DhcpOptions::new(),
        }));
        opts.insert(DhcpOption::IANA(IANA {
            id: iaid,
            t1: 0,
            t2: 0,
            opts: addr,
        }));
    }
    if rapid && reply_type == MessageType::Reply && req.msg_type() == MessageType::Solicit {
        opts.insert(DhcpOption::RapidCommit);
    }
    if !service.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServers(service.dns.clone()));
    }
    let mut reply = Message::new_with_id(reply_type, req.xid());
    reply.set_opts(opts);
    let mut out = Vec::new();
    reply.encode(&mut dhcproto::Encoder::new(&mut out)).ok()?;
    Some(out)
}

/// Serves `service` on the bridge `device` until the task is dropped.
///
/// # Errors
/// The socket could not be made (the port taken, no such device, IPv6 off).
pub fn serve(device: &str, service: Service) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{device}/ifindex"))?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(device.as_bytes()))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 547)).into())?;
    socket.join_multicast_v6(&ALL_SERVERS, index)?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    let device = device.to_string();
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some(reply) = answer(&service, &buf[..n]) else {
                continue;
            };
            // Back to the client's link-local address, on this link.
            let to = match from {
                SocketAddr::V6(a) => SocketAddrV6::new(*a.ip(), a.port(), 0, index),
                SocketAddr::V4(_) => continue,
            };
            if let Err(e) = socket.send_to(&reply, to).await {
                tracing::warn!(error = %e, device, "sending a DHCPv6 reply");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn svc() -> Service {
        Service {
            address: "fd10:0:2::2".parse().unwrap(),
            server_id: duid_ll("02:00:00:00:00:00"),
            dns: vec!["fd00:10:96::a".parse().unwrap()],
        }
    }

    fn ask(kind: MessageType, rapid: bool) -> Message {
        let mut m = Message::new_with_id(kind, [1, 2, 3]);
        m.opts_mut()
            .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9]));
        m.opts_mut().insert(DhcpOption::IANA(IANA {
            id: 77,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        }));
        if rapid {
            m.opts_mut().insert(DhcpOption::RapidCommit);
        }
        let mut out = Vec::new();
        m.encode(&mut dhcproto::Encoder::new(&mut out)).unwrap();
        let reply = answer(&svc(), &out).unwrap();
        Message::decode(&mut dhcproto::Decoder::new(&reply)).unwrap()
    }

    #[test]
    fn solicit_is_advertised_the_address_for_999_days_and_request_is_replied() {
        let adv = ask(MessageType::Solicit, false);
        assert_eq!((adv.msg_type(), adv.xid()), (MessageType::Advertise, [1, 2, 3]));
        let Some(DhcpOption::IANA(ia)) = adv.opts().get(OptionCode::IANA) else {
            panic!("no IA_NA: {adv:?}")
        };
        assert_eq!(ia.id, 77, "the client's IAID");
        let Some(DhcpOption::IAAddr(a)) = ia.opts.get(OptionCode::IAAddr) else {
            panic!("no address: {ia:?}")
        };
        assert_eq!(
            (a.addr.to_string(), a.valid_life, a.preferred_life),
            ("fd10:0:2::2".to_string(), 999 * 86400, 999 * 86400)
        );
        assert_eq!(
            adv.opts().get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0]))
        );
        assert!(matches!(
            adv.opts().get(OptionCode::ClientId),
            Some(DhcpOption::ClientId(_))
        ));
        assert!(matches!(
            adv.opts().get(OptionCode::DomainNameServers),
            Some(DhcpOption::DomainNameServers(d)) if d.len() == 1
        ));
        assert_eq!(ask(MessageType::Request, false).msg_type(), MessageType::Reply);
        assert_eq!(ask(MessageType::Renew, false).msg_type(), MessageType::Reply);
        let rapid = ask(MessageType::Solicit, true);
        assert_eq!(rapid.msg_type(), MessageType::Reply);
        assert!(rapid.opts().get(OptionCode::RapidCommit).is_some());
    }

    #[test]
    fn server_messages_and_garbage_are_not_answered() {
        let mut m = Message::new_with_id(MessageType::Advertise, [1, 2, 3]);
        m.opts_mut().insert(DhcpOption::ServerId(vec![1]));
        let mut out = Vec::new();
        m.encode(&mut dhcproto::Encoder::new(&mut out)).unwrap();
        assert_eq!(answer(&svc(), &out), None);
        assert_eq!(answer(&svc(), &[1]), None);
    }

    #[test]
    fn name_servers_are_the_pods_ipv6_ones() {
        let mut nic: PlumbedInterface = serde_json::from_value(serde_json::json!({"name": "default",
            "podInterface": "eth0", "tap": "tap0", "bridge": "k6t-eth0", "mtu": 1500, "queues": 1,
            "dhcp6": {"address": "fd10:0:2::2", "serverMac": "02:00:00:00:00:00"}}))
        .unwrap();
        let s = service(&nic, "nameserver 10.244.0.1\nnameserver fd00::53\n").unwrap();
        assert_eq!(s.dns, ["fd00::53".parse::<Ipv6Addr>().unwrap()]);
        nic.dhcp6 = None;
        assert_eq!(service(&nic, ""), None);
    }
}
