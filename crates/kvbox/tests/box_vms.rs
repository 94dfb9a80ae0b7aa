//! VMs really running in box mode, driven with kubectl as a user would: `kvbox server --emulation` with its node
//! (handler + pod runtime over CNI) boots the test guest from the image store, reports Running with the pod IP,
//! restarts crashed VMs per run strategy, stops them, cleans up every namespace, lease and process, and keeps VMs
//! running across a `kill -9` of the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use node::{NodeBox, Watch, eventually};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name),
    )
    .unwrap()
}

/// The test VM fixture turned into a bare VMI named `name`.
fn vmi(name: &str) -> String {
    let vm: serde_json::Value = serde_norway::from_str(&fixture("vm-testguest.yaml")).unwrap();
    let mut spec = vm["spec"]["template"]["spec"].clone();
    spec["volumes"][1]["cloudInitNoCloud"]["userData"] =
        serde_json::json!(format!("#cloud-config\nhostname: {name}-guest\n"));
    serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name}, "spec": spec})
    .to_string()
}

#[test]
fn a_vmi_runs_with_its_pod_ip_and_deleting_it_removes_everything() {
    let b = NodeBox::start(1, &[]);
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("vmi-a")));
    eventually("VMI Running", 60, || {
        b.get("vmi vmi-a", "{.status.phase}") == "Running"
    });
    let uid = b.get("vmi vmi-a", "{.metadata.uid}");
    assert_eq!(b.get("vmi vmi-a", "{.status.nodeName}"), "box0");
    assert_eq!(
        b.get("vmi vmi-a", "{.metadata.labels.kubevirt\\.io/nodeName}"),
        "box0"
    );
    let sel = format!("kubevirt.io/created-by={uid}");
    let pod_ip = b.kubectl(&[
        "get",
        "pods",
        "-l",
        &sel,
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let pod_uid = b.kubectl(&[
        "get",
        "pods",
        "-l",
        &sel,
        "-o",
        "jsonpath={.items[0].metadata.uid}",
    ]);
    assert!(pod_ip.starts_with("10.251.1."), "pod IP {pod_ip:?}");
    assert_eq!(b.get("vmi vmi-a", "{.status.interfaces[0].ipAddress}"), pod_ip);
    assert!(NodeBox::netns_exists(&pod_uid));
    assert!(b.leases().contains(&pod_ip), "{:?}", b.leases());
    let qemu = b.qemu_pid(&uid).expect("a QEMU for the VMI");
    // The launcher and its QEMU run in the pod's own cgroup.
    let cg = std::fs::read_to_string(format!("/proc/{qemu}/cgroup")).unwrap();
    assert!(cg.contains(&format!("kvbox-{pod_uid}")), "{cg}");
    // The downward API gave the launcher its pod's IP (which it reports to the handler); QEMU inherits it.
    let environ =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{qemu}/environ")).unwrap()).into_owned();
    assert!(
        environ.split('\0').any(|e| e == format!("POD_IP={pod_ip}")),
        "{environ}"
    );
    // The guest boots from the imported image with the cloud-init hostname, and its agent connects.
    eventually("the guest's banner", 120, || {
        b.serial(&uid).contains("test guest ready")
    });
    assert!(b.serial(&uid).contains("cloud-init: hostname=vmi-a-guest"));
    // Upstream's default binding (bridge): the guest got the pod's IP by DHCP from the launcher.
    assert!(
        b.serial(&uid).contains(&format!("eth0: {pod_ip}")),
        "{}",
        b.serial(&uid)
    );
    eventually("AgentConnected", 60, || {
        b.get(
            "vmi vmi-a",
            r#"{.status.conditions[?(@.type=="AgentConnected")].status}"#,
        ) == "True"
    });
    let ready = b.kubectl(&["get", "pods", "-l", &sel, "--no-headers"]);
    assert!(ready.contains("2/2") && ready.contains("Running"), "{ready}");

    b.kubectl(&["delete", "vmi", "vmi-a", "--wait=true", "--timeout=90s"]);
    assert_eq!(b.kubectl(&["get", "pods", "-l", &sel, "-o", "name"]), "");
    eventually("QEMU gone", 30, || {
        !std::path::Path::new(&format!("/proc/{qemu}")).exists()
    });
    assert!(
        !NodeBox::netns_exists(&pod_uid),
        "the pod's network namespace is left"
    );
    assert!(b.leases().is_empty(), "IPAM leases left: {:?}", b.leases());
    assert!(!b.dir().join("pods").join(&pod_uid).exists());
    assert!(!b.dir().join("launchers").join(&uid).exists());
}

/// `kubectl get vm NAME --watch`: the printableStatus values it goes through, consecutive repeats dropped.
#[test]
fn a_vm_is_restarted_when_qemu_dies_and_stopped_by_halted() {
    let b = NodeBox::start(2, &[]);
    let halted = fixture("vm-testguest.yaml").replace("runStrategy: Always", "runStrategy: Halted");
    b.kubectl_in(&["apply", "-f", "-"], Some(&halted));
    eventually("VM Stopped", 30, || {
        b.get("vm testvm", "{.status.printableStatus}") == "Stopped"
    });
    let watch = Watch::start(&b, "vm testvm", "{.status.printableStatus}");
    eventually("the watch's first event", 30, || !watch.seen().is_empty());
    b.kubectl(&[
        "patch",
        "vm",
        "testvm",
        "--type=merge",
        "-p",
        r#"{"spec":{"runStrategy":"Always"}}"#,
    ]);
    eventually("VM Running", 60, || {
        b.get("vm testvm", "{.status.printableStatus}") == "Running"
    });
    eventually("VM ready", 30, || b.get("vm testvm", "{.status.ready}") == "true");
    let first = b.get("vmi testvm", "{.metadata.uid}");
    let first_ip = b.get("vmi testvm", "{.status.interfaces[0].ipAddress}");
    let first_mac = b.get("vmi testvm", "{.status.interfaces[0].mac}");
    assert!(!first_ip.is_empty() && !first_mac.is_empty());
    let qemu = b.qemu_pid(&first).expect("QEMU");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &qemu.to_string()])
        .status();
    // Always: a new VMI (new uid) runs again.
    eventually("a new VMI running", 60, || {
        let uid = b.get("vmi testvm", "{.metadata.uid}");
        !uid.is_empty() && uid != first && b.get("vmi testvm", "{.status.phase}") == "Running"
    });
    let second = b.get("vmi testvm", "{.metadata.uid}");
    assert!(b.qemu_pid(&second).is_some());
    // Its new pod has the VM's address and MAC again (beyond upstream: a box node keeps them for the VM).
    assert_eq!(b.get("vmi testvm", "{.status.interfaces[0].ipAddress}"), first_ip);
    assert_eq!(b.get("vmi testvm", "{.status.interfaces[0].mac}"), first_mac);
    eventually("the guest up again", 120, || {
        b.serial(&second).contains("test guest ready")
    });
    // Halted: the guest is shut down (ACPI), the VMI and its pod go.
    b.kubectl(&[
        "patch",
        "vm",
        "testvm",
        "--type=merge",
        "-p",
        r#"{"spec":{"runStrategy":"Halted"}}"#,
    ]);
    eventually("VM Stopped", 90, || {
        b.get("vm testvm", "{.status.printableStatus}") == "Stopped"
    });
    eventually("VMI gone", 30, || {
        b.get("vmi testvm", "{.metadata.name}").is_empty()
    });
    eventually("no launcher pods", 30, || {
        b.kubectl(&["get", "pods", "-o", "name"]).is_empty()
    });
    assert!(b.qemu_pid(&second).is_none());
    eventually("the watch saw Stopped again", 10, || {
        watch.seen().last().map(String::as_str) == Some("Stopped")
    });
    // Stopped → Starting → Running → … → Stopping → Stopped, in that order.
    let seen = watch.seen();
    let mut want = ["Stopped", "Starting", "Running", "Stopping", "Stopped"]
        .into_iter()
        .peekable();
    for s in &seen {
        if want.peek() == Some(&s.as_str()) {
            want.next();
        }
    }
    assert_eq!(want.next(), None, "printableStatus went {seen:?}");
    // Stopped, the VM's address stays held for it; deleting the VM frees it.
    assert_eq!(
        b.leases(),
        vec![first_ip.clone()],
        "the stopped VM's address is held"
    );
    // `kubectl describe vm` tells the story with upstream's events.
    let events = |reason: &str| {
        b.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.kind=VirtualMachine,involvedObject.name=testvm,reason={reason}"),
            "-o",
            "jsonpath={range .items[*]}{.source.component}|{.message}{'\\n'}{end}",
        ])
    };
    // The VMI QEMU left Failed and the one Halted stopped are both told of, by uid.
    let stopped = |uid: &str| {
        format!(
            "virtualmachine-controller|Stopped the virtual machine by deleting the virtual machine instance {uid}"
        )
    };
    eventually("SuccessfulCreate and SuccessfulDelete events", 30, || {
        let deleted = events("SuccessfulDelete");
        deleted.contains(&stopped(&first)) && deleted.contains(&stopped(&second))
    });
    let created = events("SuccessfulCreate");
    assert!(
        created.contains(
            "virtualmachine-controller|Started the virtual machine by creating the new virtual machine instance testvm"
        ),
        "{created}"
    );
    b.kubectl(&["delete", "vm", "testvm", "--wait=true", "--timeout=60s"]);
    eventually("the VM's address released", 30, || b.leases().is_empty());
}

#[test]
fn vms_keep_running_across_a_kill_9_of_the_server_and_are_adopted() {
    let mut b = NodeBox::start(3, &[]);
    b.kubectl_in(&["apply", "-f", "-"], Some(&fixture("vm-testguest.yaml")));
    eventually("VMI Running", 60, || {
        b.get("vmi testvm", "{.status.phase}") == "Running"
    });
    let uid = b.get("vmi testvm", "{.metadata.uid}");
    let qemu = b.qemu_pid(&uid).expect("QEMU");
    b.kill9();
    assert!(
        std::path::Path::new(&format!("/proc/{qemu}")).exists(),
        "the VM died with the server"
    );
    b.run();
    // Same VMI, same QEMU, still Running; the node heartbeats again.
    eventually("the node Ready again", 30, || {
        b.get("node box0", r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "True"
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(b.get("vmi testvm", "{.metadata.uid}"), uid);
    assert_eq!(b.get("vmi testvm", "{.status.phase}"), "Running");
    assert_eq!(b.qemu_pid(&uid), Some(qemu));
    // A clean stop (SIGTERM) ends the server promptly and leaves the VM running; the next start adopts it again.
    let st = b.terminate(30);
    assert!(st.success(), "kvbox server exited with {st}");
    assert_eq!(
        b.qemu_pid(&uid),
        Some(qemu),
        "SIGTERM of the server stopped the VM"
    );
    b.run();
    eventually("the node Ready after the clean restart", 30, || {
        b.get("node box0", r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "True"
    });
    // The adopted launcher still obeys: stopping the VM shuts it down.
    b.kubectl(&[
        "patch",
        "vm",
        "testvm",
        "--type=merge",
        "-p",
        r#"{"spec":{"runStrategy":"Halted"}}"#,
    ]);
    eventually("VMI gone", 90, || {
        b.get("vmi testvm", "{.metadata.name}").is_empty()
    });
    eventually("QEMU gone", 30, || {
        !std::path::Path::new(&format!("/proc/{qemu}")).exists()
    });
    assert_eq!(
        b.leases().len(),
        1,
        "the stopped VM's address is held: {:?}",
        b.leases()
    );
    b.kubectl(&["delete", "vm", "testvm"]);
    eventually("the VM's address released", 30, || b.leases().is_empty());
}

#[test]
fn a_missing_image_is_reported_as_an_image_pull_error() {
    let b = NodeBox::start(4, &[]);
    let vm = fixture("vm-testguest.yaml")
        .replace("name: testvm", "name: noimage")
        .replace("kubevirt-rs/test-guest:latest", "example.com/missing:1");
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    eventually("ErrImagePull on the pod", 30, || {
        let out = b.kubectl(&["get", "pods", "--no-headers"]);
        out.contains("ErrImagePull") || out.contains("ImagePullBackOff")
    });
    eventually("the VM's printableStatus", 30, || {
        matches!(
            b.get("vm noimage", "{.status.printableStatus}").as_str(),
            "ErrImagePull" | "ImagePullBackOff"
        )
    });
    let message = b.kubectl(&[
        "get",
        "pods",
        "-o",
        "jsonpath={.items[0].status.containerStatuses[*].state.waiting.message}",
    ]);
    assert!(message.contains("kvbox images import"), "{message}");
    b.kubectl(&["delete", "vm", "noimage"]);
    eventually("pods gone", 30, || {
        b.kubectl(&["get", "pods", "-o", "name"]).is_empty()
    });
}

#[test]
fn a_replica_set_scales_running_vms_with_kubectl_scale() {
    let b = NodeBox::start(5, &[]);
    let vm: serde_json::Value = serde_norway::from_str(&fixture("vm-testguest.yaml")).unwrap();
    let rs = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
        "metadata": {"name": "guests"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "guests"}},
            "template": {"metadata": {"labels": {"app": "guests"}}, "spec": vm["spec"]["template"]["spec"]}}});
    b.kubectl_in(&["apply", "-f", "-"], Some(&rs.to_string()));
    let running = |b: &NodeBox| {
        b.kubectl(&[
            "get",
            "vmis",
            "-l",
            "app=guests",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .split_whitespace()
        .filter(|p| *p == "Running")
        .count()
    };
    let total = |b: &NodeBox| {
        b.kubectl(&["get", "vmis", "-l", "app=guests", "-o", "name"])
            .lines()
            .count()
    };
    eventually("status.replicas 0", 30, || {
        b.get("vmirs guests", "{.status.replicas}") == "0"
    });
    b.kubectl(&["scale", "vmirs", "guests", "--replicas=3"]);
    eventually("3 VMIs running", 120, || running(&b) == 3);
    eventually("readyReplicas 3", 30, || {
        b.get("vmirs guests", "{.status.readyReplicas}") == "3"
    });
    let qemus = b
        .kubectl(&[
            "get",
            "vmis",
            "-l",
            "app=guests",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ])
        .split_whitespace()
        .filter(|u| b.qemu_pid(u).is_some())
        .count();
    assert_eq!(qemus, 3);
    b.kubectl(&["scale", "vmirs", "guests", "--replicas=1"]);
    eventually("1 VMI left", 120, || total(&b) == 1 && running(&b) == 1);
    eventually("2 launcher pods gone", 60, || {
        b.kubectl(&["get", "pods", "-o", "name"]).lines().count() == 1
    });
    eventually("two leases released", 30, || b.leases().len() == 1);
}

#[test]
fn a_vm_that_cannot_start_backs_off_in_a_crash_loop() {
    let b = NodeBox::start(6, &[]);
    // A TPM passes admission but this node's launcher cannot run one: every start fails before Running.
    let vm = fixture("vm-testguest.yaml")
        .replace("name: testvm", "name: crashy")
        .replace("        devices:\n", "        devices:\n          tpm: {}\n");
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    eventually("CrashLoopBackOff", 60, || {
        b.get("vm crashy", "{.status.printableStatus}") == "CrashLoopBackOff"
    });
    assert_eq!(
        b.get("vm crashy", "{.status.startFailure.consecutiveFailCount}"),
        "1"
    );
    assert!(
        !b.get("vm crashy", "{.status.startFailure.retryAfterTimestamp}")
            .is_empty()
    );
    // After the first wait (10-15 s) the VM tries again and fails again: the count grows.
    eventually("a second start failure", 60, || {
        b.get("vm crashy", "{.status.startFailure.consecutiveFailCount}") == "2"
    });
    assert_eq!(
        b.get("vm crashy", "{.status.printableStatus}"),
        "CrashLoopBackOff"
    );
    b.kubectl(&["delete", "vm", "crashy"]);
    eventually("pods gone", 30, || {
        b.kubectl(&["get", "pods", "-o", "name"]).is_empty()
    });
    eventually("the VM's address released", 30, || b.leases().is_empty());
}

#[test]
fn a_hundred_create_delete_cycles_leave_nothing_behind() {
    let b = NodeBox::start(7, &[]);
    let mut pod_uids = std::collections::BTreeSet::new();
    for round in 0..10 {
        // Every one on the pod network: the default bridge binding, or (odd ones) masquerade with its NAT table.
        let list: Vec<String> = (0..10)
            .map(|i| {
                let mut v = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"name": format!("c{i}"), "labels": {"cycle": "yes"}},
                    "spec": {"terminationGracePeriodSeconds": 0, "domain": {"devices": {},
                        "memory": {"guest": "32Mi"}, "resources": {"requests": {"cpu": "10m"}}}}});
                if i % 2 == 1 {
                    v["spec"]["domain"]["devices"]["interfaces"] =
                        serde_json::json!([{"name": "default", "masquerade": {}}]);
                    v["spec"]["networks"] = serde_json::json!([{"name": "default", "pod": {}}]);
                }
                v.to_string()
            })
            .collect();
        let items = list.join("\n");
        b.kubectl_in(&["create", "-f", "-"], Some(&items));
        eventually(&format!("round {round}: 10 VMIs running"), 120, || {
            b.kubectl(&[
                "get",
                "vmis",
                "-l",
                "cycle=yes",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
                == 10
        });
        pod_uids.extend(
            b.kubectl(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"])
                .split_whitespace()
                .map(str::to_string),
        );
        b.kubectl(&[
            "delete",
            "vmis",
            "-l",
            "cycle=yes",
            "--wait=true",
            "--timeout=120s",
        ]);
        eventually(&format!("round {round}: pods gone"), 60, || {
            b.kubectl(&["get", "pods", "-o", "name"]).is_empty()
        });
    }
    assert_eq!(pod_uids.len(), 100, "100 launcher pods ran");
    eventually("every lease released", 30, || b.leases().is_empty());
    let left: Vec<&String> = pod_uids.iter().filter(|u| NodeBox::netns_exists(u)).collect();
    assert!(left.is_empty(), "network namespaces left: {left:?}");
    // The pods' host ends (veths on the node bridge) went with their namespaces.
    let ports = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", "kvbt7"])
        .output()
        .unwrap();
    let ports = String::from_utf8_lossy(&ports.stdout).to_string();
    assert!(ports.trim().is_empty(), "bridge ports left: {ports}");
    let cgroups: Vec<_> = pod_uids.iter().flat_map(|u| node::pod_cgroups(u)).collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert_eq!(
        std::fs::read_dir(b.dir().join("pods")).unwrap().count(),
        0,
        "pod directories left"
    );
    assert_eq!(
        std::fs::read_dir(b.dir().join("launchers")).unwrap().count(),
        0,
        "launcher directories left"
    );
    let marker = b.dir().to_string_lossy().to_string();
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker) && !c.contains(" server "))
        .collect();
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

/// Asks the VMI's launcher for an ACPI shutdown, as a guest powering itself off would end it (Succeeded).
fn guest_power_off(b: &NodeBox, uid: &str) {
    use std::io::{BufRead as _, Write as _};
    let sock = b.dir().join("launchers").join(uid).join("launcher.sock");
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    writeln!(
        &s,
        r#"{{"id": 1, "command": {{"Shutdown": {{"gracePeriodSeconds": 60}}}}}}"#
    )
    .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(r#""ok":true"#), "{line}");
}

fn run_strategy_vm(b: &NodeBox, name: &str, strategy: &str) {
    let vm = fixture("vm-testguest.yaml")
        .replace("name: testvm", &format!("name: {name}"))
        .replace("runStrategy: Always", &format!("runStrategy: {strategy}"));
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
}

#[test]
fn rerun_on_failure_once_and_manual_behave_as_upstream() {
    let b = NodeBox::start(8, &[]);
    let running = |name: &str| b.get(&format!("vmi {name}"), "{.status.phase}") == "Running";
    let uid = |name: &str| b.get(&format!("vmi {name}"), "{.metadata.uid}");
    let status = |name: &str| b.get(&format!("vm {name}"), "{.status.printableStatus}");

    // RerunOnFailure: a crash restarts the VM, a guest shutdown does not.
    run_strategy_vm(&b, "rerun", "RerunOnFailure");
    // Once: runs once; whatever ends it, it is not started again.
    run_strategy_vm(&b, "once", "Once");
    // Manual: nothing until a start request; a stop request stops it.
    run_strategy_vm(&b, "manual", "Manual");
    eventually("rerun and once running", 90, || {
        running("rerun") && running("once")
    });
    assert_eq!(status("manual"), "Stopped");
    assert!(uid("manual").is_empty());

    let first = uid("rerun");
    let qemu = b.qemu_pid(&first).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &qemu.to_string()])
        .status();
    eventually("rerun restarted after its crash", 90, || {
        let u = uid("rerun");
        !u.is_empty() && u != first && running("rerun")
    });
    let second = uid("rerun");
    eventually("the rerun guest up", 120, || {
        b.serial(&second).contains("test guest ready")
    });
    guest_power_off(&b, &second);
    eventually("rerun Succeeded and Stopped", 90, || status("rerun") == "Stopped");
    assert_eq!(
        b.get("vmi rerun", "{.status.phase}"),
        "Succeeded",
        "the succeeded VMI stays"
    );
    assert_eq!(uid("rerun"), second, "not restarted after a clean shutdown");

    let once = uid("once");
    eventually("the once guest up", 120, || {
        b.serial(&once).contains("test guest ready")
    });
    guest_power_off(&b, &once);
    eventually("once Stopped", 90, || status("once") == "Stopped");
    // A negative: nothing may happen, so the check needs a window (2 s: far beyond the controller's reaction).
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(uid("once"), once, "Once never starts a second VMI");

    let request = |action: &str| {
        let patch = format!(r#"{{"status":{{"stateChangeRequests":[{{"action":"{action}"}}]}}}}"#);
        b.kubectl(&[
            "patch",
            "vm",
            "manual",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    };
    request("Start");
    eventually("manual running after its start request", 90, || running("manual"));
    request("Stop");
    eventually("manual stopped after its stop request", 90, || {
        status("manual") == "Stopped" && uid("manual").is_empty()
    });
}
