//! `virtctl addvolume` / `removevolume` against box mode: where upstream records a hotplug request (the VM's template
//! under `DeclarativeHotplugVolumes`, the VM's `status.volumeRequests` under `HotplugVolumes`, a standalone VMI's
//! spec), the checks and messages on the way (unknown sources, duplicates, volumes that are not hotpluggable), and
//! dry runs that change nothing; and `virtctl create vm`'s manifest applied and running. Attaching the disk inside the guest is the storage side's and not tested here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;

use node::{NodeBox, eventually};

fn virtctl(b: &NodeBox, args: &[&str]) -> (i32, String, String) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virtctl");
    assert!(bin.exists(), "{} missing: build the workspace", bin.display());
    let out = Command::new(bin)
        .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
        .env("HOME", b.dir().join("home"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(b: &NodeBox, args: &[&str]) -> String {
    let (code, out, err) = virtctl(b, args);
    assert_eq!(code, 0, "virtctl {args:?}: {err}");
    out.trim().to_string()
}

fn refused(b: &NodeBox, args: &[&str]) -> String {
    let (code, _, err) = virtctl(b, args);
    assert_eq!(code, 1, "virtctl {args:?} should fail");
    err.trim().to_string()
}

fn json(b: &NodeBox, what: &str) -> serde_json::Value {
    let mut args = vec!["get"];
    args.extend(what.split(' '));
    args.extend(["-o", "json"]);
    serde_json::from_str(&b.kubectl(&args)).unwrap()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

const PVC: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: hp-disk}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn hotplug_requests_are_recorded_where_upstream_records_them() {
    let b = NodeBox::start(32, &[]);
    let guest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap();
    b.kubectl_in(&["apply", "-f", "-"], Some(PVC));

    // `virtctl create vm` prints a manifest that kubectl applies and that runs.
    let manifest = ok(
        &b,
        &[
            "create",
            "vm",
            "--name=made",
            "--memory=128Mi",
            "--termination-grace-period=5",
            "--volume-containerdisk=src:kubevirt-rs/test-guest:latest,name:root,bootorder:1",
        ],
    );
    assert!(
        manifest.contains("image: kubevirt-rs/test-guest:latest"),
        "{manifest}"
    );
    b.kubectl_in(&["apply", "-f", "-"], Some(&manifest));
    b.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            &guest
                .replace("name: testvm", "name: vol")
                .replace("runStrategy: Always", "runStrategy: Halted"),
        ),
    );

    // DeclarativeHotplugVolumes (on by default): the VM's template gets a hotpluggable volume and its disk.
    assert_eq!(
        ok(&b, &["addvolume", "vol", "--volume-name=hp-disk"]),
        "Successfully submitted add volume request to VM vol for volume hp-disk"
    );
    let spec = &json(&b, "vm vol")["spec"]["template"]["spec"];
    let vol = spec["volumes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        vol,
        serde_json::json!({"name": "hp-disk", "persistentVolumeClaim": {"claimName": "hp-disk", "hotpluggable": true}})
    );
    let disk = spec["domain"]["devices"]["disks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        disk,
        serde_json::json!({"name": "hp-disk", "disk": {"bus": "scsi"}, "serial": "hp-disk"})
    );

    // Upstream's refusals.
    assert_eq!(
        refused(&b, &["addvolume", "vol", "--volume-name=hp-disk"]),
        "error adding volume, Operation cannot be fulfilled on virtualmachine.kubevirt.io \"vol\": Unable to add volume [hp-disk] because volume with that name already exists"
    );
    assert_eq!(
        refused(
            &b,
            &["addvolume", "vol", "--volume-name=hp-disk", "--disk-name=other"]
        ),
        "error adding volume, Operation cannot be fulfilled on virtualmachine.kubevirt.io \"vol\": Unable to add volume source [hp-disk] because it already exists"
    );
    assert_eq!(
        refused(&b, &["addvolume", "vol", "--volume-name=nope"]),
        "error adding volume, Volume nope is not a DataVolume or PersistentVolumeClaim"
    );
    assert!(
        refused(
            &b,
            &[
                "addvolume",
                "vol",
                "--volume-name=hp-disk",
                "--disk-type=lun",
                "--bus=virtio"
            ]
        )
        .contains("Invalid bus type 'virtio' for LUN disk")
    );
    assert_eq!(
        refused(&b, &["removevolume", "vol", "--volume-name=containerdisk"]),
        "error removing volume, Operation cannot be fulfilled on virtualmachine.kubevirt.io \"vol\": Unable to remove volume [containerdisk] because it is not hotpluggable"
    );
    assert!(refused(&b, &["addvolume", "ghost", "--volume-name=hp-disk"]).contains("\"ghost\" not found"));

    // A dry run changes nothing; a real remove drops volume and disk.
    let before = json(&b, "vm vol")["spec"].clone();
    ok(&b, &["removevolume", "vol", "--volume-name=hp-disk", "--dry-run"]);
    assert_eq!(json(&b, "vm vol")["spec"], before);
    assert_eq!(
        ok(&b, &["removevolume", "vol", "--volume-name=hp-disk"]),
        "Successfully submitted remove volume request to VM vol for volume hp-disk"
    );
    let spec = &json(&b, "vm vol")["spec"]["template"]["spec"];
    assert_eq!(names(&spec["volumes"]), ["containerdisk", "cloudinitdisk"]);
    assert_eq!(
        names(&spec["domain"]["devices"]["disks"]),
        ["containerdisk", "cloudinitdisk"]
    );

    // A standalone VMI (ephemeral hotplug): only once it runs, recorded in its own spec.
    let vmi = guest
        .replace("kind: VirtualMachine", "kind: VirtualMachineInstance")
        .replace("name: testvm", "name: solo");
    let vmi: serde_json::Value = serde_norway::from_str(&vmi).unwrap();
    let mut solo = vmi["spec"]["template"].clone();
    solo["apiVersion"] = "kubevirt.io/v1".into();
    solo["kind"] = "VirtualMachineInstance".into();
    solo["metadata"] = serde_json::json!({"name": "solo"});
    b.kubectl_in(&["apply", "-f", "-"], Some(&solo.to_string()));
    eventually("solo running", 120, || {
        b.get("vmi solo", "{.status.phase}") == "Running"
    });
    ok(
        &b,
        &[
            "addvolume",
            "solo",
            "--volume-name=hp-disk",
            "--bus=virtio",
            "--cache=none",
            "--serial=S1",
        ],
    );
    let spec = &json(&b, "vmi solo")["spec"];
    assert_eq!(
        spec["domain"]["devices"]["disks"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone(),
        serde_json::json!({"name": "hp-disk", "disk": {"bus": "virtio"}, "serial": "S1", "cache": "none"})
    );
    assert!(names(&spec["volumes"]).contains(&"hp-disk".to_string()));
    ok(&b, &["removevolume", "solo", "--volume-name=hp-disk"]);
    assert!(!names(&json(&b, "vmi solo")["spec"]["volumes"]).contains(&"hp-disk".to_string()));
    assert_eq!(b.get("vmi solo", "{.status.phase}"), "Running");

    eventually("the VM from `create vm` running", 120, || {
        b.get("vmi made", "{.status.phase}") == "Running"
    });
    assert_eq!(
        b.get("vmi made", "{.spec.domain.devices.disks[0].bootOrder}"),
        "1"
    );

    // HotplugVolumes: a VM's requests go to its status for the VM controller.
    b.kubectl(&[
        "patch",
        "kubevirt",
        "kubevirt",
        "-n",
        "kubevirt",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"configuration":{"developerConfiguration":{"featureGates":["HotplugVolumes"]}}}}"#,
    ]);
    ok(&b, &["addvolume", "vol", "--volume-name=hp-disk"]);
    let requests = json(&b, "vm vol")["status"]["volumeRequests"].clone();
    assert_eq!(requests[0]["addVolumeOptions"]["name"], "hp-disk", "{requests}");
    assert_eq!(
        requests[0]["addVolumeOptions"]["volumeSource"]["persistentVolumeClaim"]["hotpluggable"],
        true
    );
    assert_eq!(
        refused(&b, &["addvolume", "vol", "--volume-name=hp-disk"]),
        "error adding volume, Operation cannot be fulfilled on virtualmachine.kubevirt.io \"vol\": add volume request for volume [hp-disk] already exists"
    );
    // A remove drops the pending add and queues itself.
    let (code, _, err) = virtctl(&b, &["removevolume", "vol", "--volume-name=hp-disk"]);
    assert_eq!(code, 1, "hp-disk is not in the template yet: {err}");
    assert!(
        err.contains("Unable to remove volume [hp-disk] because it does not exist"),
        "{err}"
    );
}
