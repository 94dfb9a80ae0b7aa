//! Guest networking in box mode, with real guests: the bridge binding hands the guest the pod's IP and MAC by
//! DHCP, masquerade puts it behind the pod's NAT on 10.0.2.2 (and fd10:0:2::2 on a dual-stack pod); guests reach
//! each other over the pod network and the node through the NAT; `status.interfaces` says what upstream says; bad
//! interfaces are refused at admission; links go down and up, Multus networks attach at start and by hot-plug, and
//! a VM keeps its addresses across restarts. Cluster DNS is `box_dns`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/agent.rs"]
mod agent;
#[path = "common/guest.rs"]
mod guest;
#[path = "common/node.rs"]
mod node;

use guest::{SecondaryNetwork, in_guest, node_server, running, vmi};
use node::{NodeBox, eventually};

#[test]
fn bridge_and_masquerade_guests_are_addressed_and_reach_each_other_and_the_node() {
    let b = NodeBox::start(36, &[]);
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("br", "bridge")));
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("masq", "masquerade")));
    let (br, br_pod, br_ip) = running(&b, "br");
    let (masq, _, masq_ip) = running(&b, "masq");

    // Bridge: the guest has the pod's IP and MAC; the pod keeps both on a placeholder `eth0`.
    assert!(
        b.serial(&br).contains(&format!("eth0: {br_ip}")),
        "{}",
        b.serial(&br)
    );
    let link = std::process::Command::new("ip")
        .args(["-n", &format!("kvbox-{br_pod}"), "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    let pod_mac = link[0]["address"].as_str().unwrap().to_string();
    assert_eq!(b.get("vmi br", "{.status.interfaces[0].mac}"), pod_mac);
    assert_eq!(b.get("vmi br", "{.status.interfaces[0].ipAddress}"), br_ip);
    // Masquerade: 10.0.2.2 behind the NAT, while the status reports the pod IP (never 10.0.2.2).
    assert!(b.serial(&masq).contains("eth0: 10.0.2.2"), "{}", b.serial(&masq));
    assert_eq!(b.get("vmi masq", "{.status.interfaces[0].ipAddress}"), masq_ip);
    assert!(
        b.get("vmi masq", "{.status.interfaces[0].infoSource}")
            .starts_with("domain")
    );
    assert_eq!(b.get("vmi masq", "{.status.interfaces[0].queueCount}"), "1");
    // Once the guest agent answers, the guest's own interface name joins in; the address stays the pod's.
    eventually("the agent's view merged", 60, || {
        b.get("vmi masq", "{.status.interfaces[0].infoSource}") == "domain, guest-agent"
    });
    assert_eq!(b.get("vmi masq", "{.status.interfaces[0].interfaceName}"), "eth0");
    assert_eq!(b.get("vmi masq", "{.status.interfaces[0].ipAddress}"), masq_ip);

    // Guest to guest over the pod network, both ways (the masquerade pod forwards every port to its guest).
    in_guest(
        &b,
        &masq,
        &format!("wget -qO- http://{br_ip}/ | sed 's/^/GOT: /'"),
        "GOT: hello from br-guest",
        60,
    );
    in_guest(
        &b,
        &br,
        &format!("wget -qO- http://{masq_ip}/ | sed 's/^/GOT: /'"),
        "GOT: hello from masq-guest",
        60,
    );
    in_guest(
        &b,
        &br,
        &format!("ping -c 1 -W 5 {masq_ip} >/dev/null && echo PING''-OK"),
        "PING-OK",
        60,
    );
    // A third guest on a second node (`kvbox agent`, its own bridge and subnet) reaches both across nodes.
    let _agent = agent::Agent::start(&b, "net-agent", 38);
    let mut third: serde_json::Value = serde_json::from_str(&vmi("far", "bridge")).unwrap();
    third["spec"]["nodeSelector"] = serde_json::json!({"kubernetes.io/hostname": "net-agent"});
    b.kubectl_in(&["apply", "-f", "-"], Some(&third.to_string()));
    eventually("far Running", 120, || {
        b.get("vmi far", "{.status.phase}") == "Running"
    });
    assert_eq!(b.get("vmi far", "{.status.nodeName}"), "net-agent");
    let far = b.get("vmi far", "{.metadata.uid}");
    let far_serial = || {
        std::fs::read_to_string(_agent.dir.path().join("launchers").join(&far).join("serial.log"))
            .unwrap_or_default()
    };
    eventually("far's guest ready", 120, || {
        far_serial().contains("test guest ready")
    });
    let far_ip = b.get("vmi far", "{.status.interfaces[0].ipAddress}");
    assert!(far_ip.starts_with("10.251.38."), "{far_ip}");
    assert!(
        far_serial().contains(&format!("eth0: {far_ip}")),
        "{}",
        far_serial()
    );
    in_guest(
        &b,
        &masq,
        &format!("wget -qO- http://{far_ip}/ | sed 's/^/FAR: /'"),
        "FAR: hello from far-guest",
        60,
    );
    in_guest(
        &b,
        &br,
        &format!("wget -qO- http://{far_ip}/ | sed 's/^/FAR: /'"),
        "FAR: hello from far-guest",
        60,
    );
    b.kubectl(&["delete", "vmi", "far", "--wait=true", "--timeout=90s"]);

    // The masquerade guest reaches a server on the node (the bridge's gateway address) through the NAT.
    let gateway = b.cidr.replace(".0/24", ".1");
    let port = node_server(format!("{gateway}:0").parse().unwrap());
    in_guest(
        &b,
        &masq,
        &format!("wget -qO- http://{gateway}:{port}/ | sed 's/^/NODE: /'"),
        &format!("NODE: node saw {masq_ip}"),
        60,
    );

    // Deleting them leaves no pod namespace (taps, bridges and rulesets lived there) and no lease.
    b.kubectl(&["delete", "vmi", "br", "masq", "--wait=true", "--timeout=90s"]);
    assert!(!NodeBox::netns_exists(&br_pod));
    eventually("no leases", 30, || b.leases().is_empty());
}

#[test]
fn bad_interfaces_are_refused_at_admission_naming_the_field() {
    let b = NodeBox::start(37, &[]);
    let refused = |patch: serde_json::Value, want: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&vmi("bad", "masquerade")).unwrap();
        json_merge(&mut v["spec"], &patch);
        let (ok, _, err) = b.try_kubectl(&["apply", "-f", "-"], Some(&v.to_string()));
        assert!(!ok && err.contains(want), "{patch}: {err}");
    };
    refused(
        serde_json::json!({"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:00"}]}}}),
        "The requested MAC address is reserved for the in-pod bridge. Please choose another one.",
    );
    refused(
        serde_json::json!({"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 70000}]}]}}}),
        "spec.domain.devices.interfaces[0].ports[0].port",
    );
    refused(
        serde_json::json!({"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "two", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "two", "pod": {}}]}),
        "more than one interface is connected to a pod network",
    );
    assert_eq!(b.kubectl(&["get", "vmis", "-o", "name"]), "");
}

/// `patch` merged into `v` (objects by key, everything else replaced).
fn json_merge(v: &mut serde_json::Value, patch: &serde_json::Value) {
    match (v, patch) {
        (serde_json::Value::Object(a), serde_json::Value::Object(p)) => {
            for (k, pv) in p {
                json_merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), pv);
            }
        }
        (v, p) => *v = p.clone(),
    }
}

/// Upstream's `vmi-masquerade` example, its Fedora disk swapped for the test guest: the guest is on 10.0.2.2, the
/// forwarded port 80 reaches its HTTP server through the pod IP, and 22 (not in `ports`) does not.
#[test]
fn upstreams_masquerade_example_boots_with_a_working_nic() {
    let b = NodeBox::start(39, &[]);
    let mut v = testing::load_docs(&testing::examples().join("vmi-masquerade.yaml")).remove(0);
    v["spec"]["volumes"][0]["containerDisk"]["image"] = serde_json::json!("kubevirt-rs/test-guest:latest");
    b.kubectl_in(&["apply", "-f", "-"], Some(&v.to_string()));
    let (uid, _, pod_ip) = running(&b, "vmi-masquerade");
    assert!(b.serial(&uid).contains("eth0: 10.0.2.2"), "{}", b.serial(&uid));
    assert_eq!(
        b.get("vmi vmi-masquerade", "{.status.interfaces[0].name}"),
        "testmasquerade"
    );
    assert_eq!(
        b.get("vmi vmi-masquerade", "{.status.interfaces[0].ipAddress}"),
        pod_ip
    );
    let get = |port: u16| -> Option<String> {
        use std::io::{Read as _, Write as _};
        let addr = std::net::SocketAddr::new(pod_ip.parse().ok()?, port);
        let mut c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        c.read_to_string(&mut text).ok()?;
        Some(text)
    };
    eventually("the guest's port 80 through the pod IP", 60, || {
        get(80).is_some_and(|t| t.contains("hello from"))
    });
    in_guest(
        &b,
        &uid,
        "netstat -ltn | grep -q ':22 ' && echo SSHD''-UP",
        "SSHD-UP",
        30,
    );
    assert!(get(22).is_none(), "port 22 is not forwarded");
}

/// `state: down` (on a NIC at a fixed `pciAddress`): QEMU starts the NIC's link down, the guest sees no carrier (and gets no lease), and the status
/// says `linkState: down`; changed on a running VM's template, the link goes down and up live.
#[test]
fn a_link_declared_down_has_no_carrier_in_the_guest() {
    let b = NodeBox::start(40, &[]);
    let mut v: serde_json::Value = serde_json::from_str(&vmi("down", "masquerade")).unwrap();
    v["spec"]["domain"]["devices"]["interfaces"][0]["state"] = serde_json::json!("down");
    // ... at a fixed PCI address, where the guest finds it.
    v["spec"]["domain"]["devices"]["interfaces"][0]["pciAddress"] = serde_json::json!("0000:00:0a.0");
    b.kubectl_in(&["apply", "-f", "-"], Some(&v.to_string()));
    let (uid, _, _) = running(&b, "down");
    assert_eq!(b.get("vmi down", "{.status.interfaces[0].linkState}"), "down");
    assert!(b.serial(&uid).contains("eth0: no lease"), "{}", b.serial(&uid));
    in_guest(
        &b,
        &uid,
        "ip link show eth0 | grep -q NO-CARRIER && echo CARRIER''-LOST",
        "CARRIER-LOST",
        30,
    );
    in_guest(
        &b,
        &uid,
        "ls /sys/bus/pci/devices/0000:00:0a.0/virtio*/net | sed 's/^/AT-0A: /'",
        "AT-0A: eth0",
        30,
    );

    // Live, through a VM: the state set on its template reaches the VMI and the running guest's link, both ways.
    let mut vm: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/vm-testguest.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    vm["metadata"]["name"] = serde_json::json!("flap");
    vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"] =
        serde_json::json!([{"name": "default", "masquerade": {}}]);
    vm["spec"]["template"]["spec"]["networks"] = serde_json::json!([{"name": "default", "pod": {}}]);
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    let (flap, _, _) = running(&b, "flap");
    assert!(b.serial(&flap).contains("eth0: 10.0.2.2"), "{}", b.serial(&flap));
    let set_state = |state: &str| {
        let patch = format!(
            r#"[{{"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/0/state", "value": "{state}"}}]"#
        );
        b.kubectl(&["patch", "vm", "flap", "--type", "json", "-p", &patch]);
    };
    set_state("down");
    eventually("linkState down on the running VMI", 60, || {
        b.get("vmi flap", "{.status.interfaces[0].linkState}") == "down"
    });
    assert_eq!(
        b.get("vmi flap", "{.spec.domain.devices.interfaces[0].state}"),
        "down"
    );
    in_guest(
        &b,
        &flap,
        "for i in $(seq 20); do ip link show eth0 | grep -q NO-CARRIER && echo LINK''-WENT-DOWN && break; sleep 0.5; done",
        "LINK-WENT-DOWN",
        30,
    );
    set_state("up");
    eventually("linkState up again", 60, || {
        b.get("vmi flap", "{.status.interfaces[0].linkState}") == "up"
    });
    in_guest(
        &b,
        &flap,
        "for i in $(seq 20); do ip link show eth0 | grep -q LOWER_UP && echo LINK''-CAME-BACK && break; sleep 0.5; done",
        "LINK-CAME-BACK",
        30,
    );
    b.kubectl(&["delete", "vm", "flap", "--wait=true", "--timeout=90s"]);
}

/// Upstream's `vmi-multus-multiple-net` example (its disk swapped for the test guest), twice: each guest has the pod
/// network on eth0 (masquerade) and the `ptp-conf` secondary network on eth1 (bridge binding, the NAD's address by
/// DHCP); the guests reach each other over the secondary bridge; the pods carry Multus' network-status and the
/// VMIs' status says `multus-status`. A VMI naming a missing definition is told why it cannot start.
#[test]
fn multus_secondary_networks_connect_guests() {
    let b = NodeBox::start(41, &[]);
    let _net = SecondaryNetwork::create(&b, 41);
    let example = testing::load_docs(&testing::examples().join("vmi-multus-multiple-net.yaml")).remove(0);
    let mut uids = Vec::new();
    let mut addrs = Vec::new();
    for name in ["multus-a", "multus-b"] {
        let mut v = example.clone();
        v["metadata"]["name"] = serde_json::json!(name);
        v["spec"]["volumes"][0]["containerDisk"]["image"] =
            serde_json::json!("kubevirt-rs/test-guest:latest");
        b.kubectl_in(&["apply", "-f", "-"], Some(&v.to_string()));
    }
    for name in ["multus-a", "multus-b"] {
        let (uid, _, _) = running(&b, name);
        let serial = b.serial(&uid);
        assert!(serial.contains("eth0: 10.0.2.2"), "{serial}");
        let eth1 = serial
            .lines()
            .find_map(|l| l.strip_prefix("eth1: "))
            .unwrap_or_else(|| panic!("no eth1 lease: {serial}"))
            .to_string();
        assert!(eth1.starts_with("192.168.41."), "{eth1}");
        uids.push(uid);
        addrs.push(eth1);
    }
    in_guest(
        &b,
        &uids[0],
        &format!("ping -c 1 -W 5 {} >/dev/null && echo SECONDARY''-OK", addrs[1]),
        "SECONDARY-OK",
        60,
    );
    in_guest(
        &b,
        &uids[1],
        &format!("wget -qO- http://{}/ | sed 's/^/OVER-ETH1: /'", addrs[0]),
        "OVER-ETH1: hello from",
        60,
    );

    let hashed = "pode31d7ce2712"; // upstream's name for network "ptp"
    let pod = format!("pods -l kubevirt.io/created-by={}", uids[0]);
    let wanted = b.get(
        &pod,
        "{.items[0].metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/networks}",
    );
    let wanted: serde_json::Value = serde_json::from_str(&wanted).unwrap();
    assert_eq!(
        wanted,
        serde_json::json!([{"name": "ptp-conf", "namespace": "default", "interface": hashed}])
    );
    let status = b.get(
        &pod,
        "{.items[0].metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/network-status}",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (status[0]["interface"].as_str(), status[0]["default"].as_bool()),
        (Some("eth0"), Some(true))
    );
    assert_eq!(
        (status[1]["name"].as_str(), status[1]["interface"].as_str()),
        (Some("default/ptp-conf"), Some(hashed))
    );
    assert_eq!(status[1]["ips"][0].as_str(), Some(addrs[0].as_str()));
    assert!(
        b.get("vmi multus-a", "{.status.interfaces[1].infoSource}")
            .contains("multus-status")
    );
    assert_eq!(
        b.get("vmi multus-a", "{.status.interfaces[1].podInterfaceName}"),
        hashed
    );
    eventually("the guest's eth1 address in the status", 60, || {
        b.get("vmi multus-a", "{.status.interfaces[1].ipAddress}") == addrs[0]
    });

    // A definition that does not exist: the VMI says so, and nothing is left half-attached.
    let mut missing = example.clone();
    missing["metadata"]["name"] = serde_json::json!("multus-missing");
    missing["spec"]["networks"][1]["multus"]["networkName"] = serde_json::json!("nope");
    missing["spec"]["volumes"][0]["containerDisk"]["image"] =
        serde_json::json!("kubevirt-rs/test-guest:latest");
    b.kubectl_in(&["apply", "-f", "-"], Some(&missing.to_string()));
    eventually("the missing definition named on the VMI", 60, || {
        b.get(
            "vmi multus-missing",
            r#"{.status.conditions[?(@.type=="Synchronized")].message}"#,
        )
        .contains("cannot find a network-attachment-definition (nope)")
    });
    b.kubectl(&["delete", "vmi", "--all", "--wait=true", "--timeout=90s"]);
    eventually("no leases on either network", 30, || {
        b.leases().is_empty()
            && std::fs::read_dir(b.dir().join("cni/ipam/sec41")).map_or(true, |d| {
                d.flatten().all(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .parse::<std::net::Ipv4Addr>()
                        .is_err()
                })
            })
    });
}

/// Beyond upstream: a VM keeps its pod IP and MAC when it is stopped and started and when the node agent restarts
/// (its guest gets the same lease again); deleting the VM frees the address.
#[test]
fn a_vm_keeps_its_ip_and_mac_across_stop_start_and_node_restarts() {
    let mut b = NodeBox::start(42, &[]);
    let vm = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vm-testguest.yaml"
    ))
    .unwrap();
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    let (uid, _, ip) = running(&b, "testvm");
    let mac = b.get("vmi testvm", "{.status.interfaces[0].mac}");
    assert!(b.serial(&uid).contains(&format!("eth0: {ip}")));
    let strategy = |s: &str| {
        let patch = format!(r#"{{"spec":{{"runStrategy":"{s}"}}}}"#);
        b.kubectl(&["patch", "vm", "testvm", "--type=merge", "-p", &patch]);
    };
    strategy("Halted");
    eventually("stopped", 90, || {
        b.get("vmi testvm", "{.metadata.name}").is_empty()
    });
    // Another pod meanwhile does not get the held address.
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("other", "bridge")));
    let (_, _, other_ip) = running(&b, "other");
    assert_ne!(other_ip, ip, "the stopped VM's address went to another pod");
    strategy("Always");
    eventually("a new VMI", 60, || {
        let u = b.get("vmi testvm", "{.metadata.uid}");
        !u.is_empty() && u != uid
    });
    let (again, _, again_ip) = running(&b, "testvm");
    assert_eq!(
        (
            again_ip.as_str(),
            b.get("vmi testvm", "{.status.interfaces[0].mac}")
        ),
        (ip.as_str(), mac.clone())
    );
    eventually("the guest's lease", 60, || {
        b.serial(&again).contains(&format!("eth0: {ip}"))
    });
    b.kubectl(&["delete", "vmi", "other", "--wait=true", "--timeout=90s"]);
    // The node agent restarts (kill -9 of the box server): the VM runs on, same address.
    b.kill9();
    b.run();
    eventually("the node Ready again", 60, || {
        b.get("node box0", r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "True"
    });
    assert_eq!(b.get("vmi testvm", "{.status.interfaces[0].ipAddress}"), ip);
    b.kubectl(&["delete", "vm", "testvm", "--wait=true", "--timeout=90s"]);
    eventually("the addresses released", 30, || b.leases().is_empty());
}

/// Masquerade on a dual-stack pod: the guest gets fd10:0:2::2 by DHCPv6 (no router advertisements, as upstream:
/// the default route via fd10:0:2::1 is the guest's own configuration, as upstream's tests give it by cloud-init),
/// reaches the node over IPv6 behind the pod's address, and the pod's IPv6 address reaches the guest; the VM keeps
/// both addresses across a restart.
#[test]
fn masquerade_on_a_dual_stack_pod_gives_the_guest_ipv6() {
    let b = NodeBox::start(44, &["--pod-cidr", "10.251.44.0/24,fd00:10:251:44::/64"]);
    // A VM of it, so its addresses can be seen to stay across a restart.
    let v: serde_json::Value = serde_json::from_str(&vmi("v6", "masquerade")).unwrap();
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "v6"}, "spec": {"runStrategy": "Always", "template": {"spec": v["spec"]}}});
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    let (uid, pod_uid, pod_ip) = running(&b, "v6");
    let pod_ips = b.get(
        &format!("pods -l kubevirt.io/created-by={uid}"),
        "{.items[0].status.podIPs[*].ip}",
    );
    let pod_ip6 = pod_ips.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert!(pod_ip6.starts_with("fd00:10:251:44::"), "{pod_ips}");
    assert_eq!(
        b.get("vmi v6", "{.status.interfaces[0].ipAddresses}"),
        format!("[\"{pod_ip}\",\"{pod_ip6}\"]"),
        "both of the pod's addresses, never the guest's"
    );
    eventually("the guest's DHCPv6 lease", 60, || {
        b.serial(&uid).contains("eth0: fd10:0:2::2")
    });
    in_guest(
        &b,
        &uid,
        "ip -6 route add fd10:0:2::1 dev eth0 && ip -6 route add default via fd10:0:2::1 dev eth0 && echo ROUTE''-SET",
        "ROUTE-SET",
        30,
    );

    // Guest to node over IPv6: the node sees the pod's IPv6 address (the NAT), not fd10:0:2::2.
    let port = node_server("[fd00:10:251:44::1]:0".parse().unwrap());
    in_guest(
        &b,
        &uid,
        &format!("wget -qO- 'http://[fd00:10:251:44::1]:{port}/' | sed 's/^/NODE6: /'"),
        &format!("NODE6: node saw {pod_ip6}"),
        60,
    );
    // Node to guest: the pod's IPv6 address forwards to the guest's HTTP server.
    let answer = (|| {
        use std::io::{Read as _, Write as _};
        let addr: std::net::SocketAddr = format!("[{pod_ip6}]:80").parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })();
    assert!(
        answer
            .as_deref()
            .unwrap_or_default()
            .contains("hello from v6-guest"),
        "{answer:?}"
    );
    // Stopped and started, the VM's new pod has both addresses again; deleted, it frees them.
    let run = |strategy: &str| {
        let patch = format!(r#"{{"spec": {{"runStrategy": "{strategy}"}}}}"#);
        b.kubectl(&["patch", "vm", "v6", "--type", "merge", "-p", &patch]);
    };
    run("Halted");
    eventually("the VMI gone", 90, || {
        b.get("vmi v6", "{.metadata.uid}").is_empty()
    });
    assert!(!NodeBox::netns_exists(&pod_uid));
    run("Always");
    eventually("Running again", 120, || {
        b.get("vmi v6", "{.status.phase}") == "Running"
    });
    let again = b.get("vmi v6", "{.status.interfaces[0].ipAddresses}");
    assert_eq!(
        again,
        format!("[\"{pod_ip}\",\"{pod_ip6}\"]"),
        "the same addresses"
    );
    b.kubectl(&["delete", "vm", "v6", "--wait=true", "--timeout=90s"]);
    eventually("both addresses released", 60, || b.leases().is_empty());
}

/// Interface hot-plug as upstream declares it: a bridge interface on a Multus network added to a running VM's
/// template reaches the VMI, the pod (the network attached live) and the guest (a new NIC with the network's
/// address by DHCP); set `absent`, it leaves the guest, the pod, the VMI and finally the template.
#[test]
fn interfaces_are_hot_plugged_into_and_out_of_a_running_vm() {
    let b = NodeBox::start(45, &[]);
    let _net = SecondaryNetwork::create(&b, 45);
    let v: serde_json::Value = serde_json::from_str(&vmi("hot", "masquerade")).unwrap();
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "hot"}, "spec": {"runStrategy": "Always", "template": {"spec": v["spec"]}}});
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    let (uid, pod_uid, _) = running(&b, "hot");
    let plug = r#"[{"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/-", "value": {"name": "sec", "bridge": {}}},
        {"op": "add", "path": "/spec/template/spec/networks/-", "value": {"name": "sec", "multus": {"networkName": "ptp-conf"}}}]"#;
    b.kubectl(&["patch", "vm", "hot", "--type", "json", "-p", plug]);
    eventually("the plugged interface in the VMI's status", 90, || {
        b.get("vmi hot", r#"{.status.interfaces[?(@.name=="sec")].mac}"#)
            .len()
            == 17
    });
    let pod = format!("pods -l kubevirt.io/created-by={uid}");
    let status = b.get(
        &pod,
        "{.items[0].metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/network-status}",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status[1]["name"].as_str(), Some("default/ptp-conf"), "{status}");
    let addr = status[1]["ips"][0].as_str().unwrap().to_string();
    assert_eq!(
        b.get(
            "vmi hot",
            r#"{.status.interfaces[?(@.name=="sec")].podInterfaceName}"#
        ),
        status[1]["interface"].as_str().unwrap()
    );
    in_guest(
        &b,
        &uid,
        "for i in $(seq 40); do [ -e /sys/class/net/eth1 ] && break; sleep 0.5; done; ip link set eth1 up; udhcpc -i eth1 -n -q -t 5 -T 1 -s /tmp/udhcpc.sh >/dev/null 2>&1",
        &format!("eth1: {addr}"),
        60,
    );

    // Unplugged: out of the guest, the pod, the VMI and the template; its address is free again.
    let unplug = r#"[{"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/1/state", "value": "absent"}]"#;
    b.kubectl(&["patch", "vm", "hot", "--type", "json", "-p", unplug]);
    in_guest(
        &b,
        &uid,
        "for i in $(seq 80); do [ -e /sys/class/net/eth1 ] || break; sleep 0.5; done; [ -e /sys/class/net/eth1 ] || echo ETH1''-GONE",
        "ETH1-GONE",
        60,
    );
    eventually("gone from the VMI and the template", 60, || {
        b.get("vmi hot", "{.spec.domain.devices.interfaces[*].name}") == "default"
            && b.get(
                "vm hot",
                "{.spec.template.spec.domain.devices.interfaces[*].name}",
            ) == "default"
            && b.get("vmi hot", "{.status.interfaces[*].name}") == "default"
    });
    eventually("the pod's network detached", 30, || {
        let s = b.get(
            &pod,
            "{.items[0].metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/network-status}",
        );
        serde_json::from_str::<serde_json::Value>(&s)
            .is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 1))
    });
    let leases = std::fs::read_dir(b.dir().join("cni/ipam/sec45"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok()
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leases, 0, "the secondary address is released");
    let links = std::process::Command::new("ip")
        .args(["-n", &format!("kvbox-{pod_uid}"), "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["lo", "eth0", "k6t-eth0", "tap0"],
        "phase 1 of the unplugged interface undone"
    );
    b.kubectl(&["delete", "vm", "hot", "--wait=true", "--timeout=90s"]);
}
