//! A containerDisk guest (the test qcow2 through an overlay: the base is never written) with cloud-init NoCloud and
//! ConfigDrive data the guest reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Launcher, images, wait_no_qemu};
use serde_json::json;

fn vmi(name: &str, source: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 60
  domain:
    devices:
      disks:
      - name: containerdisk
        disk: {{bus: virtio}}
      - name: cloudinitdisk
        disk: {{bus: virtio}}
    memory: {{guest: 192Mi}}
  volumes:
  - name: containerdisk
    containerDisk: {{image: test/disk}}
  - name: cloudinitdisk
    {source}:
      userData: |
        #cloud-config
        hostname: {name}-host
        ssh_authorized_keys:
          - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey test@kvbox
"
    )
}

fn boot_and_check(kind: &str, name: &str) {
    let img = images();
    let base = img.join("disk.qcow2");
    let before = std::fs::read(&base).unwrap();
    let mut l = Launcher::start(
        &vmi(name, kind),
        &[
            "--volume-source".into(),
            format!("containerdisk={}", base.display()),
        ],
    );
    l.wait_serial("KUBEVIRT-RS TEST GUEST", 1);
    l.wait_serial(&format!("cloud-init: hostname={name}-host"), 1);
    l.wait_serial(
        "cloud-init: ssh-key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey test@kvbox",
        1,
    );
    l.wait_serial("test guest ready", 1);
    assert!(
        l.runtime.join("disks/containerdisk.qcow2").exists(),
        "the overlay"
    );
    let mut c = l.client();
    c.ok(json!({"Shutdown": {"gracePeriodSeconds": 60}}));
    let (code, stderr) = l.wait_exit(Duration::from_secs(90));
    assert_eq!(code, 0, "{stderr}");
    wait_no_qemu(&l.runtime);
    assert!(
        std::fs::read(&base).unwrap() == before,
        "the container disk image was written"
    );
    assert!(
        !l.runtime.join("disks").exists() && !l.runtime.join("cloud-init").exists(),
        "ephemeral files removed"
    );
}

#[test]
fn container_disk_with_cloud_init_nocloud() {
    boot_and_check("cloudInitNoCloud", "nocloud");
}

#[test]
fn container_disk_with_cloud_init_config_drive() {
    boot_and_check("cloudInitConfigDrive", "configdrive");
}
