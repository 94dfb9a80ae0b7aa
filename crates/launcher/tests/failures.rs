//! Failure paths: QEMU killed under the launcher, the launcher killed under QEMU, and bad VMIs that must fail fast
//! with their cause and leave no QEMU behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Launcher, images, kernel_boot_vmi, wait_no_qemu};

#[test]
fn killing_qemu_is_reported_as_a_crash() {
    let img = images();
    let mut l = Launcher::start(
        &kernel_boot_vmi("crash", "", 30),
        &["--kernel-boot-root".into(), img.display().to_string()],
    );
    l.wait_serial("KUBEVIRT-RS TEST GUEST", 1);
    let qemu = l.qemu_pid().expect("a QEMU process");
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &qemu.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr) = l.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Crashed") && stderr.contains("qemu exited unexpectedly"),
        "{stderr}"
    );
}

#[test]
fn killing_the_launcher_kills_qemu() {
    let img = images();
    let mut l = Launcher::start(
        &kernel_boot_vmi("orphan", "", 30),
        &["--kernel-boot-root".into(), img.display().to_string()],
    );
    l.wait_serial("KUBEVIRT-RS TEST GUEST", 1);
    assert!(l.qemu_pid().is_some());
    l.child.kill().unwrap();
    l.child.wait().unwrap();
    wait_no_qemu(&l.runtime);
}

fn disk_vmi(name: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}}}
spec:
  domain:
    devices:
      disks:
      - name: root
        disk: {{bus: virtio}}
    memory: {{guest: 128Mi}}
  volumes:
  - name: root
    containerDisk: {{image: test/disk}}
"
    )
}

#[test]
fn bad_vmis_fail_fast_with_the_cause_and_leave_nothing_running() {
    let tmp = tempfile::tempdir().unwrap();
    let corrupt = tmp.path().join("corrupt.qcow2");
    // A qcow2 header whose L1 table points far outside the file.
    let mut bytes = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    bytes.resize(512, 0);
    bytes[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes()); // size
    bytes[20..24].copy_from_slice(&16u32.to_be_bytes()); // cluster bits
    bytes[36..40].copy_from_slice(&1u32.to_be_bytes()); // l1 size
    bytes[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes()); // l1 offset
    std::fs::write(&corrupt, &bytes).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "no local source for image \"test/disk\""),
        (
            vec![
                "--volume-source".into(),
                format!("root={}", tmp.path().join("missing.qcow2").display()),
            ],
            "No such file",
        ),
        (
            vec!["--volume-source".into(), format!("root={}", corrupt.display())],
            "volume \"root\"",
        ),
    ];
    for (extra, want) in cases {
        let mut l = Launcher::start(&disk_vmi("bad"), &extra);
        let (code, stderr) = l.wait_exit(Duration::from_secs(30));
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: wanted {want:?} in: {stderr}");
        wait_no_qemu(&l.runtime);
    }
    // An unsupported device is named before anything is prepared.
    let tpm = disk_vmi("tpm").replace("    devices:\n", "    devices:\n      tpm: {}\n");
    let mut l = Launcher::start(&tpm, &["--volume-source".into(), "root=/nonexistent".into()]);
    let (code, stderr) = l.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unsupported: spec.domain.devices.tpm"),
        "{stderr}"
    );
    // Invalid input is refused by admission, naming the field.
    let invalid = disk_vmi("invalid").replace("bus: virtio", "bus: ide");
    let mut l = Launcher::start(&invalid, &[]);
    let (code, stderr) = l.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("spec.domain.devices.disks[0].disk.bus"),
        "{stderr}"
    );
    let _ = images;
}
