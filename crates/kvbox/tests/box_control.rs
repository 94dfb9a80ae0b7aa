//! The control loop inside `kvbox server`, driven with kubectl: the scheduler binds pending pods or says why not;
//! the VMI controller creates, schedules and cleans up launcher pods; the replica-set controller follows
//! `kubectl scale`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

fn kubectl(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", dir.join("kubeconfig.yaml"))
        .env("HOME", dir.join("home"));
    let out = if let Some(input) = stdin {
        use std::io::Write as _;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    } else {
        cmd.output().unwrap()
    };
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `kvbox server` in a temporary data dir, killed when dropped (also when a test fails).
struct BoxServer {
    child: std::process::Child,
    tmp: tempfile::TempDir,
}

impl BoxServer {
    fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let child = common::start_server_with(tmp.path(), "127.0.0.1:0", &[extra, &["--no-node"]].concat());
        Self { child, tmp }
    }

    fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }
}

impl Drop for BoxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eventually(what: &str, f: impl FnMut() -> bool) {
    testing::eventually(what, Duration::from_secs(30), f);
}

const NODE: &str = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "NAME", "labels": {"kubevirt.io/schedulable": "true"}},
 "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}"#;

fn pod(name: &str, selector: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
 "spec": {{"nodeSelector": {selector}, "containers": [{{"name": "c", "image": "x", "resources": {{"requests": {{"cpu": "100m", "memory": "1Gi"}}}}}}]}}}}"#
    )
}

#[test]
fn pending_pods_are_bound_or_told_why_not() {
    let server = BoxServer::start(&[]);
    let dir = server.dir();
    kubectl(dir, &["create", "-f", "-"], Some(&NODE.replace("NAME", "box1")));
    kubectl(
        dir,
        &["create", "-f", "-"],
        Some(&pod("fits", r#"{"kubevirt.io/schedulable": "true"}"#)),
    );
    kubectl(
        dir,
        &["create", "-f", "-"],
        Some(&pod("picky", r#"{"zone": "nowhere"}"#)),
    );
    eventually("binding", || {
        kubectl(
            dir,
            &["get", "pod", "fits", "-o", "jsonpath={.spec.nodeName}"],
            None,
        ) == "box1"
    });
    eventually("the unschedulable reason", || {
        kubectl(
            dir,
            &[
                "get",
                "pod",
                "picky",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}"#,
            ],
            None,
        ) == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    });
    // A node that matches arrives: the pod is placed there.
    let zoned = NODE.replace("NAME", "box2").replace(
        r#""kubevirt.io/schedulable": "true""#,
        r#""kubevirt.io/schedulable": "true", "zone": "nowhere""#,
    );
    kubectl(dir, &["create", "-f", "-"], Some(&zoned));
    eventually("binding to the new node", || {
        kubectl(
            dir,
            &["get", "pod", "picky", "-o", "jsonpath={.spec.nodeName}"],
            None,
        ) == "box2"
    });
}

#[test]
fn a_vmi_gets_its_launcher_pod_which_is_scheduled_and_cleaned_up() {
    let server = BoxServer::start(&[]);
    let dir = server.dir();
    let vmi = common::examples().join("vmi-fedora.yaml");
    kubectl(dir, &["apply", "-f", vmi.to_str().unwrap()], None);
    let uid = kubectl(
        dir,
        &["get", "vmi", "vmi-fedora", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
    let selector = format!("kubevirt.io/created-by={uid}");
    eventually("the launcher pod", || {
        kubectl(dir, &["get", "pods", "-l", &selector, "-o", "name"], None)
            .starts_with("pod/virt-launcher-vmi-fedora-")
    });
    let pod = kubectl(dir, &["get", "pods", "-l", &selector, "-o", "json"], None);
    let pod: serde_json::Value = serde_json::from_str(&pod).unwrap();
    let pod = &pod["items"][0];
    assert_eq!(pod["metadata"]["labels"]["kubevirt.io"], "virt-launcher");
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["kind"],
        "VirtualMachineInstance"
    );
    assert_eq!(pod["spec"]["containers"][1]["name"], "volumecontainerdisk");
    eventually("phase Scheduling", || {
        kubectl(
            dir,
            &["get", "vmi", "vmi-fedora", "-o", "jsonpath={.status.phase}"],
            None,
        ) == "Scheduling"
    });
    // No node yet: the scheduler's reason reaches the VMI's PodScheduled condition.
    eventually("PodScheduled=False on the VMI", || {
        kubectl(
            dir,
            &[
                "get",
                "vmi",
                "vmi-fedora",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}"#,
            ],
            None,
        ) == "Unschedulable"
    });
    // A node that can take it (the KVM device is not needed: the example cluster runs without emulation, so give
    // the node the devices the pod asks for).
    let node = NODE
        .replace("NAME", "box1")
        .replace(r#""kubevirt.io/schedulable": "true""#, r#""kubevirt.io/schedulable": "true", "kubernetes.io/arch": "amd64""#)
        .replace(
        r#""pods": "110""#,
        r#""pods": "110", "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k""#,
    );
    kubectl(dir, &["create", "-f", "-"], Some(&node));
    eventually("the pod bound", || {
        kubectl(
            dir,
            &[
                "get",
                "pods",
                "-l",
                &selector,
                "-o",
                "jsonpath={.items[0].spec.nodeName}",
            ],
            None,
        ) == "box1"
    });
    // Deleting the VMI deletes its pod gracefully (box1 has no kubelet: the test finishes that deletion as one
    // would), then the finalizer goes, then the VMI.
    kubectl(dir, &["delete", "vmi", "vmi-fedora", "--wait=false"], None);
    eventually("the pod terminating", || {
        !kubectl(
            dir,
            &[
                "get",
                "pods",
                "-l",
                &selector,
                "-o",
                "jsonpath={.items[0].metadata.deletionTimestamp}",
            ],
            None,
        )
        .is_empty()
    });
    kubectl(
        dir,
        &["delete", "pods", "-l", &selector, "--grace-period=0", "--force"],
        None,
    );
    kubectl(
        dir,
        &["wait", "--for=delete", "vmi/vmi-fedora", "--timeout=30s"],
        None,
    );
    assert_eq!(
        kubectl(dir, &["get", "pods", "-l", &selector, "-o", "name"], None),
        ""
    );
}

#[test]
fn replica_sets_scale_with_kubectl_scale() {
    let server = BoxServer::start(&[]);
    let dir = server.dir();
    let rs = common::examples().join("vmi-replicaset-cirros.yaml");
    kubectl(dir, &["apply", "-f", rs.to_str().unwrap()], None);
    let count = |dir: &std::path::Path| {
        kubectl(
            dir,
            &[
                "get",
                "vmis",
                "-l",
                "kubevirt.io/vmReplicaSet=vmi-replicaset-cirros",
                "-o",
                "name",
            ],
            None,
        )
        .lines()
        .count()
    };
    eventually("3 VMIs", || count(dir) == 3);
    for n in [0usize, 3, 1] {
        kubectl(
            dir,
            &[
                "scale",
                "vmirs",
                "vmi-replicaset-cirros",
                &format!("--replicas={n}"),
            ],
            None,
        );
        eventually(&format!("{n} VMIs"), || count(dir) == n);
        eventually(&format!("status.replicas {n}"), || {
            kubectl(
                dir,
                &[
                    "get",
                    "vmirs",
                    "vmi-replicaset-cirros",
                    "-o",
                    "jsonpath={.status.replicas}",
                ],
                None,
            ) == n.to_string()
        });
    }
    let names = kubectl(dir, &["get", "vmis", "-o", "name"], None);
    assert!(
        names.starts_with("virtualmachineinstance.kubevirt.io/vmi-replicaset-cirros"),
        "{names}"
    );
    assert_eq!(
        kubectl(
            dir,
            &[
                "get",
                "vmirs",
                "vmi-replicaset-cirros",
                "-o",
                "jsonpath={.status.labelSelector}"
            ],
            None
        ),
        "kubevirt.io/vmReplicaSet=vmi-replicaset-cirros"
    );
}

#[test]
fn vm_run_strategies_drive_the_vmi_and_printable_status() {
    let server = BoxServer::start(&[]);
    let dir = server.dir();
    let vm = common::examples().join("vm-cirros.yaml");
    kubectl(dir, &["apply", "-f", vm.to_str().unwrap()], None);
    let status = |dir: &std::path::Path| {
        kubectl(
            dir,
            &[
                "get",
                "vm",
                "vm-cirros",
                "-o",
                "jsonpath={.status.printableStatus}",
            ],
            None,
        )
    };
    eventually("Stopped", || status(dir) == "Stopped");
    assert!(kubectl(dir, &["get", "vmis", "-o", "name"], None).is_empty());

    // Always: the VMI is created from the template, owned by the VM. No node can take it here, so the scheduler's
    // verdict surfaces as ErrorUnschedulable.
    kubectl(
        dir,
        &[
            "patch",
            "vm",
            "vm-cirros",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"runStrategy":"Always"}}"#,
        ],
        None,
    );
    eventually("the VMI", || {
        kubectl(dir, &["get", "vmis", "-o", "name"], None).contains("vm-cirros")
    });
    let owner = kubectl(
        dir,
        &[
            "get",
            "vmi",
            "vm-cirros",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}",
        ],
        None,
    );
    assert_eq!(owner, "VirtualMachine");
    eventually("ErrorUnschedulable", || status(dir) == "ErrorUnschedulable");
    assert_eq!(
        kubectl(
            dir,
            &["get", "vm", "vm-cirros", "-o", "jsonpath={.status.created}"],
            None
        ),
        "true"
    );

    // Halted: the VMI goes away and the VM is Stopped again.
    kubectl(
        dir,
        &[
            "patch",
            "vm",
            "vm-cirros",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"runStrategy":"Halted"}}"#,
        ],
        None,
    );
    eventually("the VMI gone", || {
        kubectl(dir, &["get", "vmis", "-o", "name"], None).is_empty()
    });
    eventually("Stopped again", || status(dir) == "Stopped");

    // Manual: nothing starts until a Start request.
    kubectl(
        dir,
        &[
            "patch",
            "vm",
            "vm-cirros",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"runStrategy":"Manual"}}"#,
        ],
        None,
    );
    // Once the controller has seen the change (status.runStrategy), still no VMI.
    eventually("Manual observed", || {
        kubectl(
            dir,
            &["get", "vm", "vm-cirros", "-o", "jsonpath={.status.runStrategy}"],
            None,
        ) == "Manual"
    });
    assert!(kubectl(dir, &["get", "vmis", "-o", "name"], None).is_empty());
    kubectl(
        dir,
        &[
            "patch",
            "vm",
            "vm-cirros",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"stateChangeRequests":[{"action":"Start"}]}}"#,
        ],
        None,
    );
    eventually("the started VMI", || {
        kubectl(dir, &["get", "vmis", "-o", "name"], None).contains("vm-cirros")
    });
}

#[test]
fn emulation_mode_is_recorded_in_the_kubevirt_cr_and_shapes_launcher_pods() {
    let server = BoxServer::start(&["--emulation"]);
    let dir = server.dir();
    eventually("the default KubeVirt CR", || {
        kubectl(
            dir,
            &[
                "get",
                "kubevirt",
                "-n",
                "kubevirt",
                "kubevirt",
                "-o",
                "jsonpath={.spec.configuration.developerConfiguration.useEmulation}",
                "--ignore-not-found",
            ],
            None,
        ) == "true"
    });
    let vmi = common::examples().join("vmi-fedora.yaml");
    kubectl(dir, &["apply", "-f", vmi.to_str().unwrap()], None);
    eventually("a launcher pod without the KVM device", || {
        let limits = kubectl(
            dir,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={.items[0].spec.containers[0].resources.limits}",
            ],
            None,
        );
        !limits.is_empty() && !limits.contains("devices.kubevirt.io/kvm")
    });
}

#[test]
fn a_node_that_stops_heartbeating_fails_its_vmis() {
    let server = BoxServer::start(&["--node-heartbeat-timeout", "2s"]);
    let dir = server.dir();
    let now = jiff_now();
    let node = NODE.replace("NAME", "quiet").replace(
        r#""metadata": {"name": "quiet","#,
        &format!(r#""metadata": {{"name": "quiet", "annotations": {{"kubevirt.io/heartbeat": "{now}"}},"#),
    );
    kubectl(dir, &["create", "-f", "-"], Some(&node));
    let vmi = common::examples().join("vmi-fedora.yaml");
    kubectl(dir, &["apply", "-f", vmi.to_str().unwrap()], None);
    eventually("Scheduling", || {
        kubectl(
            dir,
            &["get", "vmi", "vmi-fedora", "-o", "jsonpath={.status.phase}"],
            None,
        ) == "Scheduling"
    });
    // What the node's handler would have written.
    kubectl(
        dir,
        &[
            "patch",
            "vmi",
            "vmi-fedora",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"phase":"Running","nodeName":"quiet"}}"#,
        ],
        None,
    );
    eventually("the node marked unschedulable", || {
        kubectl(
            dir,
            &[
                "get",
                "node",
                "quiet",
                "-o",
                r#"jsonpath={.metadata.labels.kubevirt\.io/schedulable}"#,
            ],
            None,
        ) == "false"
    });
    eventually("NodeUnresponsive", || {
        kubectl(
            dir,
            &[
                "get",
                "vmi",
                "vmi-fedora",
                "-o",
                "jsonpath={.status.phase}/{.status.reason}",
            ],
            None,
        ) == "Failed/NodeUnresponsive"
    });
}

fn jiff_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
