//! Interface, network, port, DHCP, probe and DNS rules (18–24).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{cause, check};

#[test]
fn network_rules() {
    let pod = json!([{"name": "default", "pod": {}}]);
    // 18 bindings and name matching
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0]",
            "logical default interface must have exactly one binding method or binding plugin",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "other", "masquerade": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "spec.domain.devices.interfaces[0].name 'other' not found.",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "other", "masquerade": {}}]}}, "networks": pod}}),
        cause(
            "spec.networks[0].name",
            "spec.networks[0].name 'default' not found.",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}]}}, "networks": [{"name": "default", "pod": {}}, {"name": "default", "pod": {}}]}}),
        cause(
            "spec.networks[1].name",
            "Network with name \"default\" already exists",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "bad name", "bridge": {}}]}}, "networks": [{"name": "bad name", "pod": {}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "Network interface name can only contain",
        ),
    );
    // 19 binding vs network type
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "m", "masquerade": {}}]}}, "networks": [{"name": "m", "multus": {"networkName": "nad"}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "Masquerade interface only implemented with pod network",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "slirp": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].slirp",
            "Slirp interface support has been discontinued since v1.3",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "macvtap": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macvtap",
            "Macvtap network binding has been discontinued since v1.3",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "p", "passtBinding": {}}]}}, "networks": [{"name": "p", "multus": {"networkName": "nad"}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "PasstBinding interface only implemented with pod network",
        ),
    );
    // 20 model / MAC / PCI
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "model": "vmxnet3"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].model",
            "interface spec.domain.devices.interfaces[0].name uses model vmxnet3 that is not supported.",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "macAddress": "zz:00:00:00:00:00"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macAddress",
            "has malformed MAC address",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:00"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macAddress",
            "reserved for the in-pod bridge",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "pciAddress": "0000:00:1"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].pciAddress",
            "has malformed PCI address (0000:00:1).",
        ),
    );
    // 21 ports
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 0}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].port",
            "Port field is mandatory.",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 70000}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].port",
            "Port field must be in range 0 < x < 65536.",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 80, "protocol": "SCTP"}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].protocol",
            "Unknown protocol, only TCP or UDP allowed",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[1].name",
            "Duplicate name of the port: http",
        ),
    );
    // 22 DHCP
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"privateOptions": [{"option": 100, "value": "x"}]}}]}}, "networks": pod}}),
        cause(
            "spec",
            "provided DHCPPrivateOptions are out of range, must be in range 224 to 254",
        ),
    );
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"privateOptions": [{"option": 240, "value": "x"}, {"option": 240, "value": "y"}]}}]}}, "networks": pod}}),
        cause(
            "spec",
            "Found Duplicates: you have provided duplicate DHCPPrivateOptions",
        ),
    );
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"ntpServers": ["::1"]}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].dhcpOptions.ntpServers[0]",
            "NTP servers must be a list of valid IPv4 addresses.",
        ),
    );
    // 23 probes
    check(
        23,
        "vmi",
        json!({"spec": {"readinessProbe": {"exec": {"command": ["true"]}, "guestAgentPing": {}}}}),
        cause(
            "spec.readinessProbe",
            "spec.readinessProbe must have exactly one probe type set",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"livenessProbe": {"periodSeconds": 3}}}),
        cause(
            "spec.livenessProbe",
            "either spec.livenessProbe.tcpSocket, spec.livenessProbe.exec or spec.livenessProbe.httpGet must be set",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachPodInterface": false}}, "readinessProbe": {"tcpSocket": {"port": 22}}}}),
        cause(
            "spec.readinessProbe.tcpSocket",
            "is only allowed if the Pod Network is attached",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"startStrategy": "Paused", "livenessProbe": {"guestAgentPing": {}}}}),
        cause(
            "spec.startStrategy",
            "Pausing VMI with LivenessProbe is not supported",
        ),
    );
    // 24 DNS
    check(
        24,
        "vmi",
        json!({"spec": {"dnsPolicy": "Sometimes"}}),
        cause("spec.dnsPolicy", "DNSPolicy: Sometimes is not supported"),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsPolicy": "None"}}),
        cause(
            "spec.dnsConfig",
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}}),
        cause("nameservers", "must not have more than 3 nameservers"),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsConfig": {"nameservers": ["not-an-ip"]}}}),
        cause("nameservers", "must be valid IP address: not-an-ip"),
    );
}
