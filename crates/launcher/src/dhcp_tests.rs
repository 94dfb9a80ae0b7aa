//! The DHCPv4 answers, decoded back with dhcproto.

use super::*;
use launcher_protocol::network::Route4;
use serde_json::json;

fn service(client_mac: Option<&str>, routes: Vec<Route4>) -> Service {
    Service {
        dhcp: Dhcp4 {
            server: "169.254.75.10".parse().unwrap(),
            address: "10.251.2.3".parse().unwrap(),
            prefix: 24,
            router: Some("10.251.2.1".parse().unwrap()),
            routes,
            client_mac: client_mac.map(String::from),
        },
        mtu: 1450,
        hostname: "web".into(),
        dns: vec!["10.96.0.10".parse().unwrap()],
        search: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        extra: vec![DhcpOption::BootfileName(b"pxelinux.0".to_vec())],
    }
}

fn request(kind: MessageType, mac: [u8; 6]) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(0xfeed).set_chaddr(&mac);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.to_vec().unwrap()
}

fn message_type(bytes: &[u8]) -> Option<MessageType> {
    Message::from_bytes(bytes).ok()?.opts().msg_type()
}

const MAC: [u8; 6] = [0x7e, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f];

#[test]
fn discover_gets_an_offer_with_upstreams_options_and_request_an_ack() {
    let routes = vec![
        Route4 {
            destination: "10.99.0.0".parse().unwrap(),
            prefix: 16,
            gateway: "10.251.2.254".parse().unwrap(),
        },
        Route4 {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: "10.251.2.1".parse().unwrap(),
        },
    ];
    let s = service(Some("7e:1b:2c:3d:4e:5f"), routes);
    let bytes = answer(&s, &request(MessageType::Discover, MAC)).expect("an offer");
    assert!(bytes.len() >= 300, "padded to BOOTP's minimum: {}", bytes.len());
    let m = Message::from_bytes(&bytes).unwrap();
    assert_eq!(
        (m.opcode(), m.xid(), &m.chaddr()[..6]),
        (Opcode::BootReply, 0xfeed, &MAC[..])
    );
    assert_eq!(m.yiaddr().to_string(), "10.251.2.3");
    let o = m.opts();
    assert_eq!(o.msg_type(), Some(MessageType::Offer));
    let get = |c: OptionCode| o.get(c).cloned();
    assert_eq!(
        get(OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier("169.254.75.10".parse().unwrap()))
    );
    assert_eq!(
        get(OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(86_313_600))
    );
    assert_eq!(
        get(OptionCode::SubnetMask),
        Some(DhcpOption::SubnetMask("255.255.255.0".parse().unwrap()))
    );
    assert_eq!(
        get(OptionCode::Router),
        Some(DhcpOption::Router(vec!["10.251.2.1".parse().unwrap()]))
    );
    assert_eq!(
        get(OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(vec!["10.96.0.10".parse().unwrap()]))
    );
    assert_eq!(
        get(OptionCode::Hostname),
        Some(DhcpOption::Hostname("web".into()))
    );
    assert_eq!(
        get(OptionCode::DomainName),
        Some(DhcpOption::DomainName("default.svc.cluster.local".into()))
    );
    assert_eq!(
        get(OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1450))
    );
    let Some(DhcpOption::DomainSearch(names)) = get(OptionCode::DomainSearch) else {
        panic!("no search list")
    };
    assert_eq!(names.len(), 3);
    let Some(DhcpOption::ClasslessStaticRoute(r)) = get(OptionCode::ClasslessStaticRoute) else {
        panic!("no routes")
    };
    assert_eq!(
        r.last().map(|(n, _)| n.prefix_len()),
        Some(0),
        "the default route last"
    );
    assert_eq!(
        get(OptionCode::BootfileName),
        Some(DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
    );
    let ack = answer(&s, &request(MessageType::Request, MAC)).expect("an ack");
    assert_eq!(message_type(&ack), Some(MessageType::Ack));
}

#[test]
fn the_bridge_binding_answers_only_its_guest_and_release_is_ignored() {
    let s = service(Some("7e:1b:2c:3d:4e:5f"), Vec::new());
    assert!(answer(&s, &request(MessageType::Discover, [2, 0, 0, 0, 0, 1])).is_none());
    assert!(answer(&s, &request(MessageType::Release, MAC)).is_none());
    assert!(answer(&s, &request(MessageType::Inform, MAC)).is_none());
    assert!(answer(&s, &[0u8; 100]).is_none(), "short packets are ignored");
    let any = service(None, Vec::new());
    assert!(
        answer(&any, &request(MessageType::Discover, [2, 0, 0, 0, 0, 1])).is_some(),
        "masquerade answers anyone"
    );
}

#[test]
fn resolv_conf_search_list_subdomain_and_hostname_as_upstream() {
    let (dns, search) = resolv_conf(
        "nameserver 10.96.0.10\nnameserver fd00::10\nsearch NS.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    );
    assert_eq!(dns, vec![Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(search[0], "ns.svc.cluster.local");
    assert_eq!(
        search_list(&search, Some("mysub")),
        [
            "mysub.ns.svc.cluster.local",
            "ns.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    let already = vec!["mysub.ns.svc.cluster.local".to_string()];
    assert_eq!(search_list(&already, Some("mysub")), already);
    let vmi: VirtualMachineInstance =
        serde_json::from_value(json!({"metadata": {"name": "a.b.c"}, "spec": {"domain": {"devices": {}}}}))
            .unwrap();
    assert_eq!(hostname(&vmi), "a");
    let named: VirtualMachineInstance = serde_json::from_value(
        json!({"metadata": {"name": "x"}, "spec": {"hostname": "h".repeat(70), "domain": {"devices": {}}}}),
    )
    .unwrap();
    assert_eq!(hostname(&named).len(), 63);
}

#[test]
fn user_dhcp_options_become_options() {
    let o: DHCPOptions = serde_json::from_value(json!({"bootFileName": "boot.efi", "tftpServerName": "tftp",
        "ntpServers": ["10.0.0.5", "bogus"], "privateOptions": [{"option": 240, "value": "extra"}]}))
    .unwrap();
    let opts = user_options(Some(&o));
    assert_eq!(opts.len(), 4);
    assert!(opts.contains(&DhcpOption::NtpServers(vec!["10.0.0.5".parse().unwrap()])));
    assert!(
        opts.iter()
            .any(|x| matches!(x, DhcpOption::Unknown(u) if u.code() == OptionCode::from(240u8)))
    );
}
