//! Two `virt-controller` replicas against a `kvbox server` running no controllers of its own: one leads (Lease
//! `kubevirt/virt-controller`) and creates launcher pods; when it is killed the standby takes over after the lease
//! expires and carries on; a replica stopped with SIGTERM releases the lease at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node::{NodeBox, eventually};

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(b: &NodeBox, identity: &str) -> Replica {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virt-controller");
    assert!(bin.exists(), "{} missing: build the workspace", bin.display());
    Replica(
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(b.dir().join("kubeconfig.yaml"))
            .args(["--identity", identity, "--lease-duration-seconds", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn vmi(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {{"name": "{name}"}},
 "spec": {{"domain": {{"devices": {{}}, "memory": {{"guest": "32Mi"}}}}}}}}"#
    )
}

fn pods_of(b: &NodeBox, vmi: &str) -> usize {
    let uid = b.get(&format!("vmi {vmi}"), "{.metadata.uid}");
    if uid.is_empty() {
        return 0;
    }
    let sel = format!("kubevirt.io/created-by={uid}");
    b.kubectl(&["get", "pods", "-l", &sel, "-o", "name"])
        .lines()
        .count()
}

#[test]
fn one_of_two_virt_controllers_leads_and_the_other_takes_over() {
    let b = NodeBox::start(30, &["--no-node", "--no-controllers"]);
    let mut a = Some(replica(&b, "replica-a"));
    let mut c = Some(replica(&b, "replica-b"));
    let holder = |b: &NodeBox| b.get("lease virt-controller -n kubevirt", "{.spec.holderIdentity}");
    eventually("a leader", 30, || holder(&b).starts_with("replica-"));
    let first = holder(&b);
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("one")));
    eventually("the launcher pod of one", 30, || pods_of(&b, "one") == 1);
    // Kill the leader (no release): the standby waits out the 3 s lease, then leads.
    let killed = Instant::now();
    if first == "replica-a" {
        a.take()
    } else {
        c.take()
    };
    eventually("the standby leads", 30, || {
        let h = holder(&b);
        h.starts_with("replica-") && h != first
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "took over before the lease expired"
    );
    assert!(
        b.get("lease virt-controller -n kubevirt", "{.spec.leaseTransitions}")
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("two")));
    eventually("the launcher pod of two", 30, || pods_of(&b, "two") == 1);
    assert_eq!(pods_of(&b, "one"), 1, "exactly one pod per VMI");
    // SIGTERM: the leader releases the lease on its way out.
    let leader = if a.is_some() { a.take() } else { c.take() }.unwrap();
    let pid = leader.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    eventually("the lease released", 10, || holder(&b).is_empty());
    drop(leader);
}
