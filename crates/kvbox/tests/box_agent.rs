//! A second node: `kvbox agent` with its own data dir, bridge and subnet joins a control-plane-only `kvbox server`,
//! runs a VMI, and when it stops heartbeating (killed) its VMI fails with NodeUnresponsive within the server's
//! configured timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::process::{Child, Command, Stdio};

use node::{NodeBox, cleanup_node, eventually, import_test_guest};

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup_node(self.dir.path(), "kvbt20");
    }
}

#[test]
fn an_agent_node_runs_vms_and_its_silence_fails_them() {
    let server = NodeBox::start(21, &["--no-node", "--node-heartbeat-timeout", "6s"]);
    let kubeconfig = std::fs::read_to_string(server.dir().join("kubeconfig.yaml")).unwrap();
    let url = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    import_test_guest(dir.path());
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(["agent", "--server", &url, "--emulation", "--node-name", "agent1"])
        .arg("--token-file")
        .arg(server.dir().join("admin.token"))
        .arg("--ca-file")
        .arg(server.dir().join("ca.crt"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--cni-bridge",
            "kvbt20",
            "--pod-cidr",
            "10.251.20.0/24",
            "--heartbeat-interval",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut agent = Agent { child, dir };
    eventually("the agent's node Ready", 30, || {
        server.get(
            "node agent1",
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
        ) == "True"
    });
    assert_eq!(
        server.get("node agent1", "{.metadata.labels.kubevirt\\.io/schedulable}"),
        "true"
    );
    let vmi = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap();
    let vm: serde_json::Value = serde_norway::from_str(&vmi).unwrap();
    let vmi = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "on-agent"}, "spec": vm["spec"]["template"]["spec"]});
    server.kubectl_in(&["apply", "-f", "-"], Some(&vmi.to_string()));
    eventually("VMI Running on agent1", 60, || {
        server.get("vmi on-agent", "{.status.phase}") == "Running"
            && server.get("vmi on-agent", "{.status.nodeName}") == "agent1"
    });
    let ip = server.get("vmi on-agent", "{.status.interfaces[0].ipAddress}");
    assert!(ip.starts_with("10.251.20."), "{ip}");
    // The agent dies: no more heartbeats. Within the 6 s timeout (plus the check period) the node is marked
    // unschedulable and the VMI fails.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let killed = std::time::Instant::now();
    eventually("the VMI Failed", 30, || {
        server.get("vmi on-agent", "{.status.phase}") == "Failed"
    });
    assert!(
        killed.elapsed() >= std::time::Duration::from_secs(4),
        "failed before the timeout"
    );
    assert_eq!(server.get("vmi on-agent", "{.status.reason}"), "NodeUnresponsive");
    assert_eq!(
        server.get("node agent1", "{.metadata.labels.kubevirt\\.io/schedulable}"),
        "false"
    );
    drop(agent);
}
