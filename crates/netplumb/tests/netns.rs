//! Phase 1 applied for real (root): a namespace with a veth `eth0` like a CNI-wired pod's, each binding's plan
//! applied inside it, the links, addresses and ruleset checked with iproute2 and nft.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use netplumb::{Binding, Request, nft::Forward};

/// A pod-like namespace (`eth0` 10.77.N.2/24, default route via .1 in a peer namespace), removed on drop.
struct Pod {
    name: String,
    peer: String,
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pod {
    fn new(tag: &str, subnet: u8) -> Self {
        let name = format!("np-{tag}-{}", std::process::id());
        let peer = format!("{name}-p");
        let pod = Self { name, peer };
        let (n, p) = (pod.name.as_str(), pod.peer.as_str());
        sh(&["ip", "netns", "add", n]);
        sh(&["ip", "netns", "add", p]);
        sh(&[
            "ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "gw", "netns", p,
        ]);
        sh(&[
            "ip",
            "-n",
            n,
            "addr",
            "add",
            &format!("10.77.{subnet}.2/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", n, "link", "set", "eth0", "mtu", "1400", "up"]);
        sh(&[
            "ip",
            "-n",
            p,
            "addr",
            "add",
            &format!("10.77.{subnet}.1/24"),
            "dev",
            "gw",
        ]);
        sh(&["ip", "-n", p, "link", "set", "gw", "up"]);
        sh(&[
            "ip",
            "-n",
            n,
            "route",
            "add",
            "default",
            "via",
            &format!("10.77.{subnet}.1"),
        ]);
        pod
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", self.name.as_str()];
        all.extend(args);
        sh(&all)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for n in [&self.name, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn request(binding: Binding) -> Request {
    Request {
        name: "default".into(),
        index: 0,
        binding,
        pod_iface: "eth0".into(),
        bridge: "k6t-eth0".into(),
        tap: "tap0".into(),
        queues: 2,
        owner: (107, 107),
        spec_mac: None,
    }
}

#[tokio::test]
async fn masquerade_is_plumbed_in_the_pods_namespace() {
    let pod = Pod::new("masq", 1);
    let link = netplumb::discover(&pod.netns(), "eth0").await.unwrap();
    assert_eq!(
        (link.mtu, link.ipv4().map(|a| a.0.to_string())),
        (1400, Some("10.77.1.2".into()))
    );
    let binding = Binding::Masquerade {
        vm_cidr: "10.0.2.0/24".into(),
        vm_cidr6: "fd10:0:2::/120".into(),
        forward: Forward::Ports(vec![("tcp".into(), "80".into())]),
    };
    let plan = netplumb::plan::plan(&request(binding), &link).unwrap();
    netplumb::apply(&pod.netns(), &plan).await.unwrap();
    let bridge = pod.ip(&["-d", "-j", "addr", "show", "dev", "k6t-eth0"]);
    assert!(
        bridge.contains("\"10.0.2.1\"") && bridge.contains("02:00:00:00:00:00"),
        "{bridge}"
    );
    let tap = pod.ip(&["-d", "-j", "link", "show", "dev", "tap0"]);
    assert!(
        tap.contains("\"master\":\"k6t-eth0\"") && tap.contains("\"mtu\":1400"),
        "{tap}"
    );
    assert!(
        tap.contains("multi_queue") || tap.contains("MULTI_QUEUE"),
        "{tap}"
    );
    let rules = sh(&[
        "ip", "netns", "exec", &pod.name, "nft", "list", "table", "ip", "nat",
    ]);
    assert!(
        rules.contains("tcp dport 80 counter packets 0 bytes 0 dnat to 10.0.2.2"),
        "{rules}"
    );
    let fwd = sh(&[
        "ip",
        "netns",
        "exec",
        &pod.name,
        "sysctl",
        "-n",
        "net.ipv4.ip_forward",
    ]);
    assert_eq!(fwd.trim(), "1");
    // The pod interface is untouched.
    assert!(
        pod.ip(&["-j", "addr", "show", "dev", "eth0"])
            .contains("10.77.1.2")
    );
}

#[tokio::test]
async fn bridge_hands_the_pod_nic_to_the_bridge_and_a_dummy_keeps_the_ip() {
    let pod = Pod::new("br", 2);
    let link = netplumb::discover(&pod.netns(), "eth0").await.unwrap();
    let plan = netplumb::plan::plan(&request(Binding::Bridge), &link).unwrap();
    netplumb::apply(&pod.netns(), &plan).await.unwrap();
    let nic = pod.ip(&["-d", "-j", "addr", "show", "dev", "eth0-nic"]);
    assert!(
        nic.contains("\"master\":\"k6t-eth0\"") && !nic.contains("10.77.2.2"),
        "{nic}"
    );
    let dummy = pod.ip(&["-d", "-j", "addr", "show", "dev", "eth0"]);
    assert!(
        dummy.contains("10.77.2.2") && dummy.contains(&link.mac),
        "{dummy}"
    );
    assert!(!dummy.contains("\"UP\""), "the placeholder stays down: {dummy}");
    assert!(
        pod.ip(&["-j", "addr", "show", "dev", "k6t-eth0"])
            .contains("169.254.75.10")
    );
    let d = plan.result.dhcp4.unwrap();
    assert_eq!(
        (d.address.to_string(), d.router.map(|r| r.to_string())),
        ("10.77.2.2".into(), Some("10.77.2.1".into()))
    );
    // Once applied there is nothing left to discover: the pod interface is the dummy without routes.
    let again = netplumb::discover(&pod.netns(), "eth0").await.unwrap();
    assert!(again.routes4.is_empty());
}
