//! Box-mode storage through kubectl: the default StorageClass `local`, claims bound to volumes the node's local
//! provisioner makes (`WaitForFirstConsumer` once a node is selected, `Immediate` at once), static volumes bound
//! and released, refusals the provisioner explains, and everything removed when the claims go.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/guest.rs"]
mod guest;
#[path = "common/node.rs"]
mod node;

use guest::{in_guest, running, vmi};
use node::{NodeBox, eventually};

fn apply(b: &NodeBox, yaml: &str) {
    b.kubectl_in(&["apply", "-f", "-"], Some(yaml));
}

fn claim(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 64Mi}}}}\n{extra}"
    )
}

fn events_for(b: &NodeBox, name: &str) -> String {
    b.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

#[test]
fn claims_are_provisioned_bound_refused_and_cleaned_up_as_kubernetes_does() {
    let b = NodeBox::start(46, &[]);
    assert_eq!(
        b.get(
            "storageclass local",
            "{.volumeBindingMode} {.provisioner} {.allowVolumeExpansion}"
        ),
        "WaitForFirstConsumer kubevirt-rs.io/local true"
    );
    assert!(b.kubectl(&["get", "storageclass"]).contains("local (default)"));

    // WaitForFirstConsumer: the default class is given, the claim waits; once a node is selected (the scheduler's
    // part) the node's provisioner makes the volume and the claim binds.
    apply(&b, &claim("wffc", ""));
    eventually("the default class and the provisioner asked", 30, || {
        b.get(
            "pvc wffc",
            "{.spec.storageClassName} {.metadata.annotations.volume\\.kubernetes\\.io/storage-provisioner}",
        ) == "local kubevirt-rs.io/local"
    });
    assert_eq!(b.get("pvc wffc", "{.status.phase}"), "Pending");
    eventually("the WaitForFirstConsumer event", 30, || {
        events_for(&b, "wffc")
            .contains("WaitForFirstConsumer: waiting for first consumer to be created before binding")
    });
    b.kubectl(&[
        "annotate",
        "pvc",
        "wffc",
        "volume.kubernetes.io/selected-node=box0",
    ]);
    eventually("wffc bound", 30, || {
        b.get("pvc wffc", "{.status.phase}") == "Bound"
    });
    let uid = b.get("pvc wffc", "{.metadata.uid}");
    let pv = format!("pvc-{uid}");
    assert_eq!(b.get("pvc wffc", "{.spec.volumeName}"), pv);
    assert_eq!(b.get("pvc wffc", "{.status.capacity.storage}"), "64Mi");
    eventually("the volume Bound", 30, || {
        b.get(&format!("pv {pv}"), "{.status.phase}") == "Bound"
    });
    assert_eq!(
        b.get(
            &format!("pv {pv}"),
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.persistentVolumeReclaimPolicy} {.spec.claimRef.name}"
        ),
        "box0 Delete wffc"
    );
    let dir = b.dir().join("volumes").join(&pv);
    assert!(dir.is_dir(), "{}", dir.display());
    assert_eq!(
        b.get(&format!("pv {pv}"), "{.spec.local.path}"),
        dir.display().to_string()
    );
    assert!(events_for(&b, "wffc").contains(&format!(
        "ProvisioningSucceeded: Successfully provisioned volume {pv}"
    )));

    // Immediate: bound at once, on a node of the volume controllers' choosing.
    apply(
        &b,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: now}\nprovisioner: kubevirt-rs.io/local\nvolumeBindingMode: Immediate\n",
    );
    apply(&b, &claim("now", "  storageClassName: now\n"));
    eventually("now bound", 30, || b.get("pvc now", "{.status.phase}") == "Bound");
    assert_eq!(
        b.get(
            "pvc now",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "box0"
    );

    // Refusals, in the provisioner's words; the claims stay Pending.
    apply(
        &b,
        &claim("huge", "  storageClassName: now\n").replace("64Mi", "100Pi"),
    );
    apply(
        &b,
        &claim("block", "  storageClassName: now\n  volumeMode: Block\n"),
    );
    eventually("the refusals explained", 30, || {
        events_for(&b, "huge").contains("ProvisioningFailed")
            && events_for(&b, "huge").contains("not enough space")
            && events_for(&b, "block").contains("does not support block volume provisioning")
    });
    assert_eq!(b.get("pvc huge", "{.status.phase}"), "Pending");

    // A static volume: bound to a claim of its class; Retain keeps it Released after the claim goes.
    apply(
        &b,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: manual-1}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: manual\n  hostPath: {path: /tmp/kvbox-manual-1}\n",
    );
    apply(&b, &claim("static", "  storageClassName: manual\n"));
    eventually("static bound", 30, || {
        b.get("pvc static", "{.spec.volumeName} {.status.phase}") == "manual-1 Bound"
    });

    // Deleting the claims: provisioned volumes and their directories go, the static one stays Released.
    b.kubectl(&[
        "delete",
        "pvc",
        "wffc",
        "now",
        "huge",
        "block",
        "static",
        "--wait=true",
        "--timeout=60s",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = b.kubectl(&["get", "pv", "-o", "name"]);
        if left.trim() == "persistentvolume/manual-1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "volumes left: {left}\n{}",
            b.kubectl(&["get", "pv,pvc", "-o", "yaml"])
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!dir.exists(), "the volume's directory is removed");
    assert_eq!(
        std::fs::read_dir(b.dir().join("volumes")).unwrap().count(),
        0,
        "no volume directories left"
    );
    eventually("the static volume Released", 30, || {
        b.get("pv manual-1", "{.status.phase}") == "Released"
    });
    b.kubectl(&["delete", "pv", "manual-1", "--wait=true", "--timeout=30s"]);
}

/// The scheduler's volume binding: a pod's `WaitForFirstConsumer` claim is placed on the pod's node (the
/// provisioner makes it there) before the pod is bound; missing claims, unbound `Immediate` claims and volumes
/// pinned elsewhere keep pods pending with kube-scheduler's messages.
#[test]
fn pods_are_placed_with_their_volumes() {
    let b = NodeBox::start(47, &[]);
    let pod = |name: &str, claim: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
        )
    };
    apply(&b, &claim("data", ""));
    apply(&b, &pod("user", "data"));
    eventually("the claim placed with the pod and bound", 60, || {
        b.get(
            "pvc data",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node} {.status.phase}",
        ) == "box0 Bound"
    });
    eventually("the pod bound to the volume's node", 30, || {
        b.get("pod user", "{.spec.nodeName}") == "box0"
    });
    let unschedulable = |name: &str| {
        b.get(
            &format!("pod {name}"),
            r#"{.status.conditions[?(@.type=="PodScheduled")].message}"#,
        )
    };
    apply(&b, &pod("lost", "missing"));
    eventually("a missing claim named", 30, || {
        unschedulable("lost") == "persistentvolumeclaim \"missing\" not found"
    });
    apply(
        &b,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: now}\nprovisioner: kubevirt-rs.io/local\nvolumeBindingMode: Immediate\n",
    );
    apply(
        &b,
        &claim("blocky", "  storageClassName: now\n  volumeMode: Block\n"),
    );
    apply(&b, &pod("early", "blocky"));
    eventually("an unbound immediate claim keeps the pod pending", 30, || {
        unschedulable("early") == "pod has unbound immediate PersistentVolumeClaims"
    });
    apply(
        &b,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: far-1}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: far\n  local: {path: /tmp/kvbox-far-1}\n  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [elsewhere]}]}]}}\n",
    );
    apply(&b, &claim("far", "  storageClassName: far\n"));
    eventually("far bound", 30, || b.get("pvc far", "{.status.phase}") == "Bound");
    apply(&b, &pod("distant", "far"));
    eventually("a volume pinned elsewhere", 30, || {
        unschedulable("distant") == "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
    });
    assert_eq!(b.get("pod distant", "{.spec.nodeName}"), "");
    b.kubectl(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
    b.kubectl(&["delete", "pvc", "--all", "--wait=true", "--timeout=60s"]);
    b.kubectl(&["delete", "pv", "far-1", "--wait=true", "--timeout=30s"]);
    eventually("no volumes left", 30, || {
        b.kubectl(&["get", "pv", "-o", "name"]).trim().is_empty()
    });
}

/// A VM's disk on a claim: the claim is provisioned on the VM's node, the empty claim becomes a blank disk of the
/// claim's size, what the guest writes there survives the VM's stop and start (also after a `kill -9` of the server),
/// and deleting the claim afterwards
/// removes the volume.
#[test]
fn a_vm_keeps_what_it_wrote_to_its_claim_across_a_restart() {
    let mut b = NodeBox::start(48, &[]);
    apply(&b, &claim("vmdata", ""));
    let mut v: serde_json::Value = serde_json::from_str(&vmi("keeper", "masquerade")).unwrap();
    v["spec"]["domain"]["devices"]["disks"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "data", "disk": {"bus": "virtio"}}));
    v["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "vmdata"}}));
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "keeper"}, "spec": {"runStrategy": "Always", "template": {"spec": v["spec"]}}});
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    let (uid, _, _) = running(&b, "keeper");
    assert_eq!(b.get("pvc vmdata", "{.status.phase}"), "Bound");
    let pv = b.get("pvc vmdata", "{.spec.volumeName}");
    let image = b.dir().join("volumes").join(&pv).join("disk.img");
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        64 << 20,
        "a blank disk of the claim's size"
    );
    assert_eq!(
        b.get(
            "vmi keeper",
            r#"{.status.volumeStatus[?(@.name=="data")].persistentVolumeClaimInfo.capacity.storage}"#
        ),
        "64Mi"
    );
    in_guest(
        &b,
        &uid,
        "echo KEPT-ACROSS-RESTART | dd of=/dev/vdc bs=512 count=1 conv=sync 2>/dev/null && sync && echo WROTE''-IT",
        "WROTE-IT",
        60,
    );
    let run = |b: &NodeBox, strategy: &str| {
        let patch = format!(r#"{{"spec": {{"runStrategy": "{strategy}"}}}}"#);
        b.kubectl(&["patch", "vm", "keeper", "--type", "merge", "-p", &patch]);
    };
    run(&b, "Halted");
    eventually("the VMI gone", 90, || {
        b.get("vmi keeper", "{.metadata.uid}").is_empty()
    });
    run(&b, "Always");
    eventually("a new VMI", 60, || {
        let now = b.get("vmi keeper", "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    let (uid, _, _) = running(&b, "keeper");
    let read_back = |b: &NodeBox, uid: &str| {
        in_guest(
            b,
            uid,
            "dd if=/dev/vdc bs=512 count=1 2>/dev/null | head -c 19 | sed 's/^/READ: /'; echo",
            "READ: KEPT-ACROSS-RESTART",
            60,
        );
    };
    read_back(&b, &uid);
    // The server is killed and comes back; the VM is stopped and started once more: still there.
    b.kill9();
    b.run();
    eventually("the server back", 60, || {
        b.get("pvc vmdata", "{.status.phase}") == "Bound"
    });
    run(&b, "Halted");
    eventually("the VMI gone again", 90, || {
        b.get("vmi keeper", "{.metadata.uid}").is_empty()
    });
    run(&b, "Always");
    eventually("another VMI", 60, || {
        let now = b.get("vmi keeper", "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    let (uid, _, _) = running(&b, "keeper");
    read_back(&b, &uid);
    b.kubectl(&["delete", "vm", "keeper", "--wait=true", "--timeout=90s"]);
    b.kubectl(&["delete", "pvc", "vmdata", "--wait=true", "--timeout=60s"]);
    eventually("the volume removed", 30, || {
        !image.exists() && b.kubectl(&["get", "pv", "-o", "name"]).trim().is_empty()
    });
}
