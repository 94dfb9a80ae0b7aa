//! The test guest in box-network tests: a VMI of it on the pod network, waiting for its guest, typing into its
//! console, and a secondary network (a NetworkAttachmentDefinition on a bridge of its own).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use crate::node::{NodeBox, eventually};

/// The test guest as a VMI named `name` on the pod network with `binding` (`bridge` or `masquerade`).
pub(crate) fn vmi(name: &str, binding: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vm-testguest.yaml"
    ))
    .unwrap();
    let vm: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut spec = vm["spec"]["template"]["spec"].clone();
    spec["volumes"][1]["cloudInitNoCloud"]["userData"] =
        serde_json::json!(format!("#cloud-config\nhostname: {name}-guest\n"));
    spec["domain"]["devices"]["interfaces"] = serde_json::json!([{"name": "default", binding: {}}]);
    spec["networks"] = serde_json::json!([{"name": "default", "pod": {}}]);
    serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// The VMI's uid, its pod's uid and IP, once its guest has a DHCP lease.
pub(crate) fn running(b: &NodeBox, name: &str) -> (String, String, String) {
    eventually(&format!("{name} Running"), 120, || {
        b.get(&format!("vmi {name}"), "{.status.phase}") == "Running"
    });
    let uid = b.get(&format!("vmi {name}"), "{.metadata.uid}");
    let sel = format!("pods -l kubevirt.io/created-by={uid}");
    let pod_uid = b.get(&sel, "{.items[0].metadata.uid}");
    let pod_ip = b.get(&sel, "{.items[0].status.podIP}");
    eventually(&format!("{name}'s guest ready"), 120, || {
        b.serial(&uid).contains("test guest ready")
    });
    (uid, pod_uid, pod_ip)
}

/// Runs `cmd` in the guest's shell and waits for `want` on its console (which a failure prints).
pub(crate) fn in_guest(b: &NodeBox, uid: &str, cmd: &str, want: &str, secs: u64) {
    // The console echoes the command: what it waits for must be output only (quote inside the marker).
    assert!(
        !cmd.contains(want),
        "{cmd:?} contains {want:?}: its echo would match"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    // What is typed before the guest's shell reads its console may be dropped when the shell starts: wait for its
    // prompt first.
    while !b.serial(uid).contains("/ # ") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _console = b.type_in_guest(uid, cmd);
    while !b.serial(uid).contains(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "{want:?} never appeared on the console after {cmd:?}:\n{}",
            b.serial(uid)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A bridge (its own, `kvbm<idx>`) with host-local addresses in `192.168.<idx>.0/24`, as a NetworkAttachmentDefinition
/// named `ptp-conf` (upstream's example's name); the bridge goes when dropped.
pub(crate) struct SecondaryNetwork(String);

impl SecondaryNetwork {
    pub(crate) fn create(b: &NodeBox, idx: u8) -> Self {
        let bridge = format!("kvbm{idx}");
        let config = serde_json::json!({"cniVersion": "1.0.0", "name": format!("sec{idx}"), "type": "bridge",
            "bridge": bridge, "ipam": {"type": "host-local", "subnet": format!("192.168.{idx}.0/24")}});
        let nad = serde_json::json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "ptp-conf"}, "spec": {"config": config.to_string()}});
        b.kubectl_in(&["apply", "-f", "-"], Some(&nad.to_string()));
        Self(bridge)
    }
}

impl Drop for SecondaryNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// An HTTP server on the node at `addr` (port 0: any) answering "node saw PEER"; its port.
pub(crate) fn node_server(addr: std::net::SocketAddr) -> u16 {
    let server = std::net::TcpListener::bind(addr).unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for mut conn in server.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let peer = conn.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let _ = write!(conn, "HTTP/1.0 200 OK\r\n\r\nnode saw {peer}\n");
        }
    });
    port
}
