//! Plans for the two bindings, line by line against upstream's sequences.

use super::*;
use crate::facts::{Addr, Route};
use pretty_assertions::assert_eq;

fn link(v6: bool) -> PodLink {
    let mut addrs = vec![
        Addr {
            ip: "10.251.2.3".parse().unwrap(),
            prefix: 24,
            global: true,
        },
        Addr {
            ip: "fe80::1".parse().unwrap(),
            prefix: 64,
            global: false,
        },
    ];
    if v6 {
        addrs.push(Addr {
            ip: "fd00::3".parse().unwrap(),
            prefix: 64,
            global: true,
        });
    }
    PodLink {
        name: "eth0".into(),
        index: 3,
        mac: "7e:1b:2c:3d:4e:5f".into(),
        mtu: 1450,
        addrs,
        routes4: vec![
            Route {
                dst: None,
                gateway: Some("10.251.2.1".parse().unwrap()),
            },
            Route {
                dst: Some(("10.251.2.0".parse().unwrap(), 24)),
                gateway: None,
            },
            Route {
                dst: Some(("10.99.0.0".parse().unwrap(), 16)),
                gateway: Some("10.251.2.254".parse().unwrap()),
            },
        ],
    }
}

fn request(binding: Binding, queues: u32) -> Request {
    Request {
        name: "default".into(),
        index: 0,
        binding,
        pod_iface: "eth0".into(),
        bridge: "k6t-eth0".into(),
        tap: "tap0".into(),
        queues,
        owner: (107, 107),
        spec_mac: None,
    }
}

fn masq() -> Binding {
    Binding::Masquerade {
        vm_cidr: "10.0.2.0/24".into(),
        vm_cidr6: "fd10:0:2::/120".into(),
        forward: Forward::All,
    }
}

#[test]
fn masquerade_makes_the_bridge_tap_sysctls_nat_and_dhcp() {
    let p = plan(&request(masq(), 1), &link(false)).unwrap();
    assert_eq!(
        p.ip,
        [
            "link add k6t-eth0 type bridge",
            "link set dev k6t-eth0 address 02:00:00:00:00:00 mtu 1450",
            "addr add 10.0.2.1/24 dev k6t-eth0",
            "link set dev k6t-eth0 up",
            "tuntap add dev tap0 mode tap user 107 group 107",
            "link set dev tap0 mtu 1450 master k6t-eth0 up",
        ]
    );
    assert_eq!(
        p.sysctls,
        ["net.ipv4.conf.k6t-eth0.route_localnet=1", "net.ipv4.ip_forward=1"]
    );
    assert!(
        p.nft
            .as_deref()
            .is_some_and(|n| n.contains("table ip nat") && !n.contains("ip6"))
    );
    let d = p.result.dhcp4.unwrap();
    assert_eq!(
        (
            d.server.to_string(),
            d.address.to_string(),
            d.prefix,
            d.router.map(|r| r.to_string())
        ),
        ("10.0.2.1".into(), "10.0.2.2".into(), 24, Some("10.0.2.1".into()))
    );
    assert_eq!(d.client_mac, None, "masquerade answers any client");
    assert!(d.routes.is_empty());
    assert_eq!((p.result.mtu, p.result.mac, p.result.dhcp6), (1450, None, None));
}

#[test]
fn masquerade_with_ipv6_adds_the_v6_gateway_table_and_dhcpv6() {
    let p = plan(&request(masq(), 4), &link(true)).unwrap();
    assert!(p.ip.contains(&"addr add fd10:0:2::1/120 dev k6t-eth0".to_string()));
    assert!(p.ip.contains(&"tuntap add dev tap0 mode tap user 107 group 107 multi_queue".to_string()));
    assert!(p.sysctls.contains(&"net.ipv6.conf.all.forwarding=1".to_string()));
    assert!(p.nft.as_deref().is_some_and(|n| n.contains("table ip6 nat")));
    assert_eq!(
        p.result.dhcp6.map(|d| d.address.to_string()),
        Some("fd10:0:2::2".into())
    );
}

#[test]
fn a_vm_cidr_must_leave_two_hosts() {
    let small = Binding::Masquerade {
        vm_cidr: "10.0.2.0/31".into(),
        vm_cidr6: "fd10:0:2::/120".into(),
        forward: Forward::All,
    };
    let e = plan(&request(small, 1), &link(false)).unwrap_err().to_string();
    assert!(
        e.contains("VM CIDR subnet is too small, at least 2 host addresses are required"),
        "{e}"
    );
    let custom = Binding::Masquerade {
        vm_cidr: "192.168.9.0/30".into(),
        vm_cidr6: "fd10:0:2::/120".into(),
        forward: Forward::All,
    };
    let d = plan(&request(custom, 1), &link(false))
        .unwrap()
        .result
        .dhcp4
        .unwrap();
    assert_eq!(
        (d.server.to_string(), d.address.to_string(), d.prefix),
        ("192.168.9.1".into(), "192.168.9.2".into(), 30)
    );
}

#[test]
fn bridge_moves_the_pod_nic_under_the_bridge_and_keeps_a_dummy_with_its_address() {
    let p = plan(&request(Binding::Bridge, 1), &link(true)).unwrap();
    assert_eq!(
        p.ip,
        [
            "link add k6t-eth0 type bridge",
            "link set dev k6t-eth0 address 7a:1b:2c:3d:4e:5f mtu 1450",
            "addr add 169.254.75.10/32 dev k6t-eth0",
            "link set dev k6t-eth0 up",
            "link set dev eth0 down",
            "link set dev eth0 name eth0-nic",
            "link set dev eth0-nic address 7a:1b:2c:3d:4e:5f",
            "link set dev eth0-nic master k6t-eth0",
            "addr flush dev eth0-nic",
            "link set dev eth0-nic up",
            "link set dev eth0-nic type bridge_slave learning off",
            "tuntap add dev tap0 mode tap user 107 group 107",
            "link set dev tap0 mtu 1450 master k6t-eth0 up",
        ]
    );
    let keep = p.placeholder.unwrap();
    assert_eq!(keep.name, "eth0");
    assert_eq!(
        keep.then,
        [
            "link set dev eth0 address 7e:1b:2c:3d:4e:5f mtu 1450",
            "addr add 10.251.2.3/24 dev eth0",
            "addr add fd00::3/64 dev eth0",
        ]
    );
    assert_eq!(p.sysctls, ["net.ipv4.conf.all.arp_ignore=1"]);
    assert_eq!(p.nft, None);
    assert_eq!(p.result.mac.as_deref(), Some("7e:1b:2c:3d:4e:5f"));
    assert_eq!(p.result.dhcp6, None, "no DHCPv6 for the bridge binding");
    let d = p.result.dhcp4.unwrap();
    assert_eq!(
        (
            d.server.to_string(),
            d.address.to_string(),
            d.prefix,
            d.router.map(|r| r.to_string())
        ),
        (
            "169.254.75.10".into(),
            "10.251.2.3".into(),
            24,
            Some("10.251.2.1".into())
        )
    );
    assert_eq!(d.client_mac.as_deref(), Some("7e:1b:2c:3d:4e:5f"));
    let routes: Vec<String> = d
        .routes
        .iter()
        .map(|r| format!("{}/{} via {}", r.destination, r.prefix, r.gateway))
        .collect();
    assert_eq!(
        routes,
        ["10.99.0.0/16 via 10.251.2.254", "0.0.0.0/0 via 10.251.2.1"]
    );
}

#[test]
fn a_secondary_pod_interface_keeps_names_within_the_kernels_limit() {
    let mut r = request(Binding::Bridge, 1);
    r.pod_iface = "pod16367aacb67".into();
    r.bridge = "k6t-16367aacb67".into();
    r.tap = "tap16367aacb67".into();
    let mut l = link(false);
    l.name = "pod16367aacb67".into();
    let p = plan(&r, &l).unwrap();
    assert!(
        p.ip.contains(&"link set dev pod16367aacb67 name 16367aacb67-nic".to_string()),
        "{:?}",
        p.ip
    );
}

#[test]
fn bridge_server_addresses_concatenate_the_index_and_a_spec_mac_filters() {
    let mut r = request(Binding::Bridge, 1);
    r.index = 12;
    r.spec_mac = Some("de:ad:00:00:be:ef".into());
    let d = plan(&r, &link(false)).unwrap().result.dhcp4.unwrap();
    assert_eq!(d.server.to_string(), "169.254.75.112");
    assert_eq!(d.client_mac.as_deref(), Some("de:ad:00:00:be:ef"));
    let mut no_gw = link(false);
    no_gw.routes4.retain(|r| r.gateway.is_none());
    let d = plan(&request(Binding::Bridge, 1), &no_gw)
        .unwrap()
        .result
        .dhcp4
        .unwrap();
    assert_eq!(
        (d.router, d.routes.len()),
        (None, 0),
        "a network without a gateway: no router option"
    );
    no_gw.routes4.clear();
    let e = plan(&request(Binding::Bridge, 1), &no_gw)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no gateway address found in routes for eth0"), "{e}");
}
