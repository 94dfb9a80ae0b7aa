//! What real clients found missing (issue 11), driven through kubectl and virtctl against one box server, as those
//! clients drive it: an instancetype + preference VM from `virtctl create vm` boots with the instancetype's size and
//! records its ControllerRevisions; a missing instancetype is reported on the VM; NoCloud user data from a Secret
//! reaches the guest; a Service with upstream virtctl's `targetPort: ""` gets endpoints; built-in defaults a real
//! kube-apiserver stores; migrations end and disappear; CDI's StorageProfile kind is served; guestfs and memorydump
//! say plainly that they are not supported; virtctl's usage errors exit 1; a serviceAccount volume carries a token
//! that authenticates as the account.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::path::PathBuf;
use std::process::Command;

use node::{NodeBox, eventually};

fn virtctl(b: &NodeBox, args: &[&str]) -> (i32, String, String) {
    virtctl_in(b, args, "")
}

/// `virtctl ARGS` with `stdin` on its standard input.
fn virtctl_in(b: &NodeBox, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virtctl");
    let mut child = Command::new(bin)
        .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
        .env("HOME", b.dir().join("home"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// root's authorized keys in the guest, asked of its agent directly (empty when the agent is busy or away).
fn guest_authorized_keys(b: &NodeBox, uid: &str) -> String {
    use std::io::{BufRead as _, Write as _};
    let path = b.dir().join("launchers").join(uid).join("qga.sock");
    let Ok(sock) = std::os::unix::net::UnixStream::connect(&path) else {
        return String::new();
    };
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut w = sock.try_clone().unwrap();
    let mut r = std::io::BufReader::new(sock);
    let mut line = String::new();
    let _ = writeln!(w, r#"{{"execute": "guest-sync", "arguments": {{"id": 7}}}}"#);
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => {
                if line.contains("\"return\": 7") || line.contains("\"return\":7") {
                    break;
                }
            }
            _ => return String::new(),
        }
    }
    let _ = writeln!(
        w,
        r#"{{"execute": "guest-ssh-get-authorized-keys", "arguments": {{"username": "root"}}}}"#
    );
    line.clear();
    let _ = r.read_line(&mut line);
    line
}

/// A VMI of the test guest with a second disk `second` whose volume is `volume` (YAML, indented for `volumes`),
/// and `extra` spec fields (YAML at spec level).
fn guest_vmi(name: &str, volume: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}}}
spec:
  domain:
    devices:
      disks:
      - {{name: root, disk: {{bus: virtio}}}}
      - {{name: second, disk: {{bus: virtio}}}}
    resources: {{requests: {{memory: 128Mi}}}}
  volumes:
  - {{name: root, containerDisk: {{image: "kubevirt-rs/test-guest:latest"}}}}
  - name: second
{volume}
{extra}
"#
    )
}

const INSTANCETYPES: &str = r#"
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterInstancetype
metadata: {name: box-small}
spec:
  cpu: {guest: 2}
  memory: {guest: 160Mi}
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterPreference
metadata: {name: box-virtio}
spec:
  devices: {preferredDiskBus: virtio}
  cpu: {preferredCPUTopology: preferCores}
"#;

/// `inferFromVolume`: the matchers' names come from the labels of the PVC the named volume uses; a failure refuses
/// the VM with upstream's message, or clears the matcher under `inferFromVolumeFailurePolicy: Ignore`.
fn matchers_inferred_from_a_volume(b: &NodeBox) {
    let pvc = r#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "golden",
        "labels": {"instancetype.kubevirt.io/default-instancetype": "box-small",
                   "instancetype.kubevirt.io/default-preference": "box-virtio"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}"#;
    b.kubectl_in(&["apply", "-f", "-"], Some(pvc));
    let vm = |name: &str, volume: &str, policy: &str| {
        format!(
            r#"{{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {{"name": "{name}"}},
            "spec": {{"runStrategy": "Halted",
                "instancetype": {{"inferFromVolume": "{volume}"{policy}}},
                "preference": {{"inferFromVolume": "disk"}},
                "template": {{"spec": {{"domain": {{"devices": {{}}}},
                    "volumes": [{{"name": "disk", "persistentVolumeClaim": {{"claimName": "golden"}}}},
                                {{"name": "cd", "containerDisk": {{"image": "kubevirt-rs/test-guest:latest"}}}}]}}}}}}}}"#
        )
    };
    b.kubectl_in(&["create", "-f", "-"], Some(&vm("inferred", "disk", "")));
    assert_eq!(
        b.get("vm inferred", "{.spec.instancetype.name}/{.spec.preference.name}"),
        "box-small/box-virtio"
    );
    let (ok, _, err) = b.try_kubectl(&["create", "-f", "-"], Some(&vm("refused", "cd", "")));
    assert!(
        !ok && err.contains("unable to infer defaults from volume cd as type is not supported"),
        "{err}"
    );
    let ignore = r#", "inferFromVolumeFailurePolicy": "Ignore""#;
    b.kubectl_in(&["create", "-f", "-"], Some(&vm("ignored", "cd", ignore)));
    assert_eq!(
        b.get("vm ignored", "{.spec.instancetype}/{.spec.preference.name}"),
        "/box-virtio"
    );
    b.kubectl(&["delete", "vm", "inferred", "ignored", "--wait=true"]);
}

/// `instancetype.referencePolicy: expand`: the VM controller writes the instancetype into the VM itself (matchers
/// gone, no revisions kept), as upstream's.
fn the_expand_reference_policy_rewrites_the_vm(b: &NodeBox) {
    let policy = |p: &str| {
        let patch =
            format!(r#"{{"spec": {{"configuration": {{"instancetype": {{"referencePolicy": {p}}}}}}}}}"#);
        b.kubectl(&[
            "patch", "kubevirt", "kubevirt", "-n", "kubevirt", "--type", "merge", "-p", &patch,
        ]);
    };
    policy("\"expand\"");
    let vm = r#"{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "expandme"},
        "spec": {"runStrategy": "Halted", "instancetype": {"name": "box-small"},
            "template": {"spec": {"domain": {"devices": {}},
                "volumes": [{"name": "cd", "containerDisk": {"image": "kubevirt-rs/test-guest:latest"}}]}}}}"#;
    b.kubectl_in(&["create", "-f", "-"], Some(vm));
    eventually("the VM carries its instancetype itself", 30, || {
        b.get(
            "vm expandme",
            "{.spec.instancetype.name}/{.spec.template.spec.domain.memory.guest}",
        ) == "/160Mi"
    });
    assert_eq!(b.get("vm expandme", "{.status.instancetypeRef}"), "");
    policy("null");
    b.kubectl(&["delete", "vm", "expandme", "--wait=true"]);
}

fn instancetype_vm_boots_with_its_size(b: &NodeBox) {
    b.kubectl_in(&["apply", "-f", "-"], Some(INSTANCETYPES));
    let (code, vm, err) = virtctl(
        b,
        &[
            "create",
            "vm",
            "--name",
            "itvm",
            "--instancetype",
            "box-small",
            "--preference",
            "box-virtio",
            "--volume-containerdisk",
            "src:kubevirt-rs/test-guest:latest",
        ],
    );
    assert_eq!(code, 0, "{err}");
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    eventually("the instancetype VM runs", 90, || {
        b.get("vmi itvm", "{.status.phase}") == "Running"
    });
    // `virtctl expand`: the stored VM (expand-spec) and a VM from stdin (expand-vm-spec), instancetype written in.
    let (code, out, err) = virtctl(b, &["expand", "--vm", "itvm"]);
    assert_eq!(code, 0, "{err}");
    let expanded: serde_json::Value = serde_norway::from_str(&out).unwrap();
    assert_eq!(
        expanded["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
        "160Mi"
    );
    assert!(expanded["spec"].get("instancetype").is_none(), "{out}");
    let (code, out, err) = virtctl_in(b, &["expand", "--file", "-", "--output", "json"], &vm);
    assert_eq!(code, 0, "{err}");
    let expanded: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(expanded["spec"]["template"]["spec"]["domain"]["cpu"]["cores"], 2);
    let (code, _, err) = virtctl(b, &["expand", "--vm", "no-such-vm"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error expanding VirtualMachine - no-such-vm in namespace - default"),
        "{err}"
    );
    // The VMI carries the instancetype's size and the preference's topology and bus.
    assert_eq!(b.get("vmi itvm", "{.spec.domain.memory.guest}"), "160Mi");
    assert_eq!(b.get("vmi itvm", "{.spec.domain.cpu.cores}"), "2");
    assert_eq!(
        b.get("vmi itvm", "{.spec.domain.devices.disks[0].disk.bus}"),
        "virtio"
    );
    assert_eq!(
        b.get(
            "vmi itvm",
            "{.metadata.annotations.kubevirt\\.io/cluster-instancetype-name}"
        ),
        "box-small"
    );
    assert_eq!(
        b.get(
            "vmi itvm",
            "{.metadata.annotations.kubevirt\\.io/cluster-preference-name}"
        ),
        "box-virtio"
    );
    // The VM references the ControllerRevisions it stored, owned by the VM.
    assert_eq!(b.get("vm itvm", "{.status.instancetypeRef.name}"), "box-small");
    let rev = b.get("vm itvm", "{.status.instancetypeRef.controllerRevisionRef.name}");
    assert!(rev.starts_with("itvm-box-small-v1beta1-"), "{rev}");
    let pref_rev = b.get("vm itvm", "{.status.preferenceRef.controllerRevisionRef.name}");
    assert!(pref_rev.starts_with("itvm-box-virtio-v1beta1-"), "{pref_rev}");
    assert_eq!(
        b.get(
            &format!("controllerrevision {rev}"),
            "{.metadata.ownerReferences[0].kind}/{.data.spec.memory.guest}"
        ),
        "VirtualMachine/160Mi"
    );
    let listed = b.kubectl(&["get", "controllerrevisions"]);
    assert!(listed.contains("virtualmachine.kubevirt.io/itvm"), "{listed}");
    assert_eq!(b.get("vm itvm", "{.status.printableStatus}"), "Running");
    subresources_not_served_yet_say_so(b, "itvm");
    // Upstream's finalizer: the VM stays until its VMI is gone.
    assert_eq!(
        b.get("vm itvm", "{.metadata.finalizers}"),
        "[\"kubevirt.io/virtualMachineControllerFinalize\"]"
    );
    b.kubectl(&["delete", "vm", "itvm", "--wait=true", "--timeout=90s"]);
    assert!(b.get("vmi itvm", "{.metadata.name}").is_empty());
    eventually("the revisions are collected with the VM", 30, || {
        b.get(&format!("controllerrevision {rev}"), "{.metadata.name}")
            .is_empty()
    });
}

fn missing_instancetype_is_reported_then_recovered(b: &NodeBox) {
    let vm = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: late}
spec:
  runStrategy: Always
  instancetype: {name: box-late}
  template:
    spec:
      domain: {devices: {disks: [{name: root, disk: {bus: virtio}}]}}
      volumes: [{name: root, containerDisk: {image: "kubevirt-rs/test-guest:latest"}}]
"#;
    let (ok, _, warn) = b.try_kubectl(&["apply", "-f", "-"], Some(vm));
    assert!(ok, "{warn}");
    eventually("the Failure condition", 30, || {
        b.get("vm late", "{.status.conditions[?(@.type==\"Failure\")].reason}") == "FailedFindInstancetype"
    });
    let message = b.get("vm late", "{.status.conditions[?(@.type==\"Failure\")].message}");
    assert_eq!(
        message,
        "virtualmachineclusterinstancetypes.instancetype.kubevirt.io \"box-late\" not found"
    );
    assert_eq!(b.get("vm late", "{.status.printableStatus}"), "Stopped");
    assert!(b.get("vmi late", "{.metadata.name}").is_empty());
    // Once it exists the VM starts and the failure goes.
    b.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: instancetype.kubevirt.io/v1beta1\nkind: VirtualMachineClusterInstancetype\n\
             metadata: {name: box-late}\nspec: {cpu: {guest: 1}, memory: {guest: 128Mi}}\n",
        ),
    );
    eventually("the VM starts once its instancetype exists", 60, || {
        !b.get("vmi late", "{.metadata.name}").is_empty()
    });
    eventually("the failure is cleared", 30, || {
        b.get("vm late", "{.status.conditions[?(@.type==\"Failure\")].reason}")
            .is_empty()
    });
    b.kubectl(&["delete", "vm", "late", "--wait=true", "--timeout=90s"]);
}

fn cloud_init_from_a_secret_reaches_the_guest(b: &NodeBox) {
    // stringData, as users write Secrets: the API server turns it into data.
    let secret = r#"
apiVersion: v1
kind: Secret
metadata: {name: guest-userdata}
stringData:
  userdata: |
    #cloud-config
    hostname: from-a-secret
"#;
    b.kubectl_in(&["apply", "-f", "-"], Some(secret));
    b.kubectl(&[
        "create",
        "secret",
        "generic",
        "guest-keys",
        "--from-literal=key1=ssh-ed25519 AAAAC3NzaTEST box@test",
    ]);
    assert_eq!(b.get("secret guest-userdata", "{.type}"), "Opaque");
    assert!(b.get("secret guest-userdata", "{.stringData}").is_empty());
    assert!(!b.get("secret guest-userdata", "{.data.userdata}").is_empty());
    let vmi = guest_vmi(
        "secretci",
        "    cloudInitNoCloud:\n      secretRef: {name: guest-userdata}",
        "  accessCredentials:
  - sshPublicKey:
      source: {secret: {secretName: guest-keys}}
      propagationMethod: {noCloud: {}}
  - sshPublicKey:
      source: {secret: {secretName: guest-keys}}
      propagationMethod: {qemuGuestAgent: {users: [root]}}",
    );
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi));
    eventually("the VMI runs", 90, || {
        b.get("vmi secretci", "{.status.phase}") == "Running"
    });
    let uid = b.get("vmi secretci", "{.metadata.uid}");
    eventually("the guest prints the Secret's hostname", 120, || {
        b.serial(&uid).contains("cloud-init: hostname=from-a-secret")
    });
    // The access credential's key reached the meta data.
    assert!(
        b.serial(&uid)
            .contains("cloud-init: meta-data ssh-key=ssh-ed25519 AAAAC3NzaTEST box@test"),
        "{}",
        b.serial(&uid)
    );
    // The same key through the guest agent: the VMI says when it is in the guest.
    eventually("the agent propagates the access credentials", 120, || {
        b.get(
            "vmi secretci",
            "{.status.conditions[?(@.type==\"AccessCredentialsSynchronized\")].status}",
        ) == "True"
    });
    assert!(guest_authorized_keys(b, &uid).contains("AAAAC3NzaTEST"));
    // A rotated key reaches the guest while it runs (the pod's Secret volume is refreshed, the agent re-applies it).
    let rotated = b.kubectl(&[
        "create",
        "secret",
        "generic",
        "guest-keys",
        "--from-literal=key1=ssh-ed25519 AAAAROTATED box@test",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    b.kubectl_in(&["apply", "-f", "-"], Some(&rotated));
    eventually("the rotated key in the guest", 150, || {
        guest_authorized_keys(b, &uid).contains("AAAAROTATED")
    });
    // The launcher pod mounts the Secret where upstream's does.
    let sel = format!("kubevirt.io/created-by={uid}");
    let mounts = b.kubectl(&[
        "get",
        "pods",
        "-l",
        &sel,
        "-o",
        "jsonpath={.items[0].spec.containers[0].volumeMounts[*].mountPath}",
    ]);
    assert!(
        mounts.contains("/var/run/kubevirt-private/secret/second/userdata"),
        "{mounts}"
    );
    // Upstream virtctl's `expose` body (`targetPort: ""`) selecting the VMI's pod: the Service gets endpoints.
    let svc = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "secretci-ssh"},
        "spec": {"ports": [{"name": "port-1", "protocol": "TCP", "port": 22, "targetPort": ""}],
                 "selector": {"vmi.kubevirt.io/id": "secretci"}, "type": "ClusterIP"}}"#;
    b.kubectl_in(&["create", "-f", "-"], Some(svc));
    let pod_ip = b.get("vmi secretci", "{.status.interfaces[0].ipAddress}");
    eventually("the exposed Service's endpoints", 30, || {
        b.get(
            "endpoints secretci-ssh",
            "{.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ) == format!("{pod_ip}:22")
    });
    // ... and, as kube-controller-manager's EndpointSlice controller keeps them, an EndpointSlice (kubectl's columns).
    eventually("the exposed Service's EndpointSlice", 30, || {
        b.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=secretci-ssh",
            "--no-headers",
        ])
        .split_whitespace()
        .collect::<Vec<_>>()
        .get(1..4)
            == Some(&["IPv4", "22", pod_ip.as_str()][..])
    });
    migrations_end_and_disappear(b, "secretci");
    b.kubectl(&["delete", "vmi", "secretci", "--wait=true", "--timeout=90s"]);
}

fn a_vmi_whose_secret_is_missing_waits_for_it(b: &NodeBox) {
    let vmi = guest_vmi(
        "nosecret",
        "    cloudInitNoCloud:\n      secretRef: {name: not-yet}",
        "",
    );
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi));
    let uid = b.get("vmi nosecret", "{.metadata.uid}");
    let sel = format!("kubevirt.io/created-by={uid}");
    eventually("the pod says which Secret it waits for", 60, || {
        b.kubectl(&[
            "get",
            "pods",
            "-l",
            &sel,
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.waiting.message}",
        ])
        .contains("secret \"not-yet\" not found")
    });
    // As upstream's VMI update webhook: a user may change neither the spec nor KubeVirt's labels (KubeVirt's own
    // components, under their service accounts, keep writing this VMI throughout).
    let (ok, _, err) = b.try_kubectl(
        &[
            "patch",
            "vmi",
            "nosecret",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"terminationGracePeriodSeconds":7}}"#,
        ],
        None,
    );
    assert!(!ok && err.contains("update of VMI object is restricted"), "{err}");
    let (ok, _, err) = b.try_kubectl(
        &[
            "label",
            "vmi",
            "nosecret",
            "--overwrite",
            "kubevirt.io/nodeName=elsewhere",
        ],
        None,
    );
    assert!(
        !ok && err.contains(
            "modification of the following reserved kubevirt.io/ labels on a VMI object is prohibited"
        ),
        "{err}"
    );
    b.kubectl(&["label", "vmi", "nosecret", "team=a"]);
    b.kubectl_in(
        &[
            "create",
            "secret",
            "generic",
            "not-yet",
            "--from-literal=userData=#cloud-config\nhostname: late-secret\n",
        ],
        None,
    );
    eventually("the guest gets the late Secret's hostname", 150, || {
        b.serial(&uid).contains("cloud-init: hostname=late-secret")
    });
    b.kubectl(&["delete", "vmi", "nosecret", "--wait=true", "--timeout=90s"]);
}

fn services_and_built_in_defaults(b: &NodeBox) {
    // Upstream virtctl's expose body: targetPort "".
    let svc = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 8080, "protocol": "TCP", "targetPort": ""}],
                 "selector": {"kubevirt.io/vm": "nothing-yet"}}}"#;
    b.kubectl_in(&["create", "-f", "-"], Some(svc));
    assert_eq!(b.get("svc web", "{.spec.ports[0].targetPort}"), "8080");
    assert_eq!(
        b.get(
            "svc web",
            "{.spec.sessionAffinity}/{.spec.ipFamilyPolicy}/{.spec.ipFamilies[0]}/{.spec.internalTrafficPolicy}"
        ),
        "None/SingleStack/IPv4/Cluster"
    );
    // Namespaces: the finalizer and the name label.
    b.kubectl(&["create", "namespace", "team-a"]);
    assert_eq!(
        b.get(
            "ns team-a",
            "{.spec.finalizers[0]}/{.metadata.labels.kubernetes\\.io/metadata\\.name}"
        ),
        "kubernetes/team-a"
    );
    // What the cluster's own controllers make in a namespace.
    eventually("team-a's root CA and default account", 10, || {
        !b.get("cm kube-root-ca.crt -n team-a", "{.data.ca\\.crt}")
            .is_empty()
            && b.get("sa default -n team-a", "{.metadata.name}") == "default"
    });
    // The API server's own Service: the service range's first address (the box's range is 10.252.34.0/24).
    assert_eq!(
        b.get(
            "svc kubernetes -n default",
            "{.spec.clusterIP}/{.spec.ports[0].name}/{.spec.ports[0].port}"
        ),
        "10.252.34.1/https/443"
    );
    assert!(
        !b.get("endpoints kubernetes -n default", "{.subsets[0].addresses[0].ip}")
            .is_empty()
    );
    assert_eq!(
        b.get(
            "endpointslice kubernetes -n default",
            "{.metadata.labels.kubernetes\\.io/service-name}/{.ports[0].name}"
        ),
        "kubernetes/https"
    );
    // A Service selecting nothing has a placeholder slice.
    eventually("web's placeholder EndpointSlice", 30, || {
        b.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].addressType}",
        ]) == "IPv4"
    });
    // The node lifecycle controller lifts the not-ready taint admission gave the new node once it is Ready.
    eventually("box0 without the not-ready taint", 30, || {
        !b.get("node box0", "{.spec.taints}")
            .contains("node.kubernetes.io/not-ready")
    });
    // The box node publishes its pod network; its conditions carry no null keys.
    assert_eq!(b.get("node box0", "{.spec.podCIDR}"), b.cidr);
    let node = b.kubectl(&["get", "node", "box0", "-o", "json"]);
    assert!(!node.contains("null"), "{node}");
    // `kubectl create token` (a protobuf TokenRequest) gives a token that authenticates as the account.
    let token = b.kubectl(&["create", "token", "default", "-n", "team-a"]);
    let whoami = b.kubectl(&["auth", "whoami", "--token", token.trim()]);
    assert!(
        whoami.contains("system:serviceaccount:team-a:default"),
        "{whoami}"
    );
    // CDI's StorageProfile kind is served.
    let (ok, _, err) = b.try_kubectl(&["get", "storageprofiles"], None);
    assert!(ok, "{err}");
}

/// Migrations of the running VMI `vmi`: each ends (Failed, finalizer gone) and a deleted one disappears.
fn migrations_end_and_disappear(b: &NodeBox, vmi: &str) {
    let m = format!(
        r#"{{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {{"name": "mig-a"}}, "spec": {{"vmiName": "{vmi}"}}}}"#
    );
    b.kubectl_in(&["create", "-f", "-"], Some(&m));
    eventually("the migration ends", 30, || {
        b.get("vmim mig-a", "{.status.phase}/{.metadata.finalizers}") == "Failed/"
    });
    let reason = b.get("vmim mig-a", "{.status.migrationState.failureReason}");
    assert!(reason.starts_with("Migration failed"), "{reason}");
    let stamps = b.get("vmim mig-a", "{.status.phaseTransitionTimestamps[*].phase}");
    assert_eq!(stamps, "Pending Failed");
    // Deleting one (what migrate-cancel does) ends it even while it is being worked on.
    b.kubectl_in(&["create", "-f", "-"], Some(&m.replace("mig-a", "mig-b")));
    b.kubectl(&["delete", "vmim", "mig-b", "--wait=true", "--timeout=30s"]);
    assert!(b.get("vmim mig-b", "{.metadata.name}").is_empty());
    b.kubectl(&["delete", "vmim", "mig-a", "--wait=true", "--timeout=30s"]);
    assert!(b.get("vmim mig-a", "{.metadata.name}").is_empty());
}

/// guestfs and memorydump answer upstream's shapes with a clear "not supported"; virtctl's usage errors exit 1.
fn subresources_not_served_yet_say_so(b: &NodeBox, vm: &str) {
    // Upstream's failure body (not a Status, so kubectl says "unknown"; its verbose log shows the body).
    let (ok, _, err) = b.try_kubectl(
        &[
            "get",
            "--raw",
            "/apis/subresources.kubevirt.io/v1/guestfs",
            "-v=8",
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains(r#"{"guestfs":{"error":"libguestfs-tools is not available"#),
        "{err}"
    );
    let body = b.dir().join("dump.json");
    std::fs::write(&body, r#"{"claimName": "dump-pvc"}"#).unwrap();
    let body = body.to_str().unwrap();
    let path = |name: &str| {
        format!("/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/{name}/memorydump")
    };
    let (ok, _, err) = b.try_kubectl(&["replace", "--raw", &path(vm), "-f", body], None);
    assert!(!ok);
    assert!(
        err.contains("memorydump is not supported by kubevirt-rs yet"),
        "{err}"
    );
    let (ok, _, err) = b.try_kubectl(&["replace", "--raw", &path("no-such-vm"), "-f", body], None);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = virtctl(b, &["no-such-command"]);
    assert_eq!(code, 1, "{err}");
}

/// A serviceAccount volume: the launcher pod gets the account's token (TokenRequest, as the kubelet fetches it), the
/// guest's disk holds it, and the token authenticates as the account.
fn service_account_volume_carries_a_working_token(b: &NodeBox) {
    let vmi = guest_vmi("savol", "    serviceAccount: {serviceAccountName: default}", "");
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi));
    eventually("the VMI runs", 90, || {
        b.get("vmi savol", "{.status.phase}") == "Running"
    });
    let uid = b.get("vmi savol", "{.metadata.uid}");
    let sel = format!("kubevirt.io/created-by={uid}");
    let volumes = b.kubectl(&[
        "get",
        "pods",
        "-l",
        &sel,
        "-o",
        "jsonpath={.items[0].spec.volumes[*].name}",
    ]);
    assert!(volumes.contains("kube-api-access-"), "{volumes}");
    let iso = std::fs::read(b.dir().join("launchers").join(&uid).join("config/second.iso")).unwrap();
    let text = String::from_utf8_lossy(&iso);
    let start = text
        .find("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
        .expect("a token on the disk");
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let whoami = b.kubectl(&["auth", "whoami", "--token", &token]);
    assert!(
        whoami.contains("system:serviceaccount:default:default"),
        "{whoami}"
    );
    // A pod naming an account that does not exist is refused, as the ServiceAccount plugin refuses it.
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nosa"},
        "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "x:1"}]}}"#;
    let (ok, _, err) = b.try_kubectl(&["create", "-f", "-"], Some(pod));
    assert!(!ok);
    assert!(
        err.contains("error looking up service account default/ghost"),
        "{err}"
    );
    b.kubectl(&["delete", "vmi", "savol", "--wait=true", "--timeout=90s"]);
}

#[test]
fn real_clients_gaps() {
    let b = NodeBox::start(34, &[]);
    services_and_built_in_defaults(&b);
    instancetype_vm_boots_with_its_size(&b);
    matchers_inferred_from_a_volume(&b);
    the_expand_reference_policy_rewrites_the_vm(&b);
    missing_instancetype_is_reported_then_recovered(&b);
    cloud_init_from_a_secret_reaches_the_guest(&b);
    a_vmi_whose_secret_is_missing_waits_for_it(&b);
    service_account_volume_carries_a_working_token(&b);
}
