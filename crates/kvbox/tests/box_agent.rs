//! Extra nodes: `kvbox agent` with its own data dir, bridge and subnet joins a control-plane-only `kvbox server`
//! and runs VMIs. When it stops heartbeating (killed) its VMIs fail with NodeUnresponsive within the server's
//! configured timeout; when it is restarted instead (the node's handler and pod runtime restart), its VMs keep
//! running under the same QEMU and their statuses stay right.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/agent.rs"]
mod agent;
#[path = "common/node.rs"]
mod node;

use std::path::Path;
use std::process::Command;

use agent::Agent;
use node::{NodeBox, Watch, eventually};

/// The test guest VM's template as a standalone VMI named `name`.
fn test_vmi(name: &str) -> String {
    let vm = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap();
    let vm: serde_json::Value = serde_norway::from_str(&vm).unwrap();
    serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name}, "spec": vm["spec"]["template"]["spec"]})
    .to_string()
}

fn node_ready(server: &NodeBox, name: &str) -> bool {
    server.get(
        &format!("node {name}"),
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
    ) == "True"
}

#[test]
fn an_agent_node_runs_vms_and_its_silence_fails_them() {
    let server = NodeBox::start(21, &["--no-node", "--node-heartbeat-timeout", "6s"]);
    let mut agent = Agent::start(&server, "agent1", 20);
    eventually("the agent's node Ready", 30, || node_ready(&server, "agent1"));
    assert_eq!(
        server.get("node agent1", "{.metadata.labels.kubevirt\\.io/schedulable}"),
        "true"
    );
    server.kubectl_in(&["apply", "-f", "-"], Some(&test_vmi("on-agent")));
    eventually("VMI Running on agent1", 60, || {
        server.get("vmi on-agent", "{.status.phase}") == "Running"
            && server.get("vmi on-agent", "{.status.nodeName}") == "agent1"
    });
    let ip = server.get("vmi on-agent", "{.status.interfaces[0].ipAddress}");
    assert!(ip.starts_with("10.251.20."), "{ip}");
    // The agent dies: no more heartbeats. Within the 6 s timeout (plus the check period) the node is marked
    // unschedulable and the VMI fails.
    agent.kill9();
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

#[test]
fn restarting_a_node_agent_keeps_its_vms_running_and_their_status_right() {
    // The default heartbeat timeout (5 min) is far beyond the restart: the VMI must never leave Running.
    let server = NodeBox::start(23, &["--no-node"]);
    let mut agent = Agent::start(&server, "agent2", 22);
    eventually("the agent's node Ready", 30, || node_ready(&server, "agent2"));
    server.kubectl_in(&["apply", "-f", "-"], Some(&test_vmi("survivor")));
    eventually("VMI Running on agent2 with its agent connected", 120, || {
        server.get("vmi survivor", "{.status.phase}") == "Running"
            && server.get(
                "vmi survivor",
                r#"{.status.conditions[?(@.type=="AgentConnected")].status}"#,
            ) == "True"
    });
    let uid = server.get("vmi survivor", "{.metadata.uid}");
    let ip = server.get("vmi survivor", "{.status.interfaces[0].ipAddress}");
    let qemu = agent.qemu_pid(&uid).expect("QEMU");
    let phases = Watch::start(&server, "vmi survivor", "{.status.phase}");
    let pods = Watch::start(&server, "pods -l kubevirt.io=virt-launcher", "{.status.phase}");
    eventually("the watches' initial state", 10, || {
        !phases.seen().is_empty() && !pods.seen().is_empty()
    });

    // The node's handler and pod runtime die and come back on the same data dir.
    agent.kill9();
    assert!(
        Path::new(&format!("/proc/{qemu}")).exists(),
        "the VM died with its node agent"
    );
    agent.run(&server, "agent2", 22);
    let log = agent.dir.path().join("agent.log");
    eventually("the restarted agent re-adopts the launcher", 30, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.matches("adopt").count() >= 1)
    });
    eventually("the node heartbeats again", 30, || {
        let hb = server.get("node agent2", "{.metadata.annotations.kubevirt\\.io/heartbeat}");
        jiff::Timestamp::now().as_second() - hb.parse::<jiff::Timestamp>().map_or(0, |t| t.as_second()) <= 2
    });
    // Same QEMU; status unchanged and never anything but Running.
    assert_eq!(agent.qemu_pid(&uid), Some(qemu));
    assert_eq!(server.get("vmi survivor", "{.metadata.uid}"), uid);
    assert_eq!(server.get("vmi survivor", "{.status.nodeName}"), "agent2");
    assert_eq!(
        server.get("vmi survivor", "{.status.interfaces[0].ipAddress}"),
        ip
    );
    assert_eq!(
        server.get(
            "vmi survivor",
            r#"{.status.conditions[?(@.type=="Ready")].status}"#
        ),
        "True"
    );
    assert_eq!(phases.seen(), ["Running"], "the VMI's phase moved");
    assert_eq!(pods.seen(), ["Running"], "the launcher pod's phase moved");

    // The adopted launcher is driven as before: its QEMU dying fails the VMI through the restarted handler.
    let _ = Command::new("kill").args(["-KILL", &qemu.to_string()]).status();
    eventually("the VMI Failed after its QEMU died", 60, || {
        server.get("vmi survivor", "{.status.phase}") == "Failed"
    });
    server.kubectl(&["delete", "vmi", "survivor", "--wait=true", "--timeout=60s"]);
    eventually("the launcher pod gone", 60, || {
        server.kubectl(&["get", "pods", "-o", "name"]).is_empty()
    });
    drop(agent);
}
