//! Container images from the box image store boot VMs: upstream's kernel-boot example (kernelBoot.container) from
//! an OCI archive holding the test guest's kernel and initramfs, and a containerDisk from an OCI image layout
//! holding the test guest's disk under /disk/, and one from an image whose disk is elsewhere (`containerDisk.path`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;
#[path = "common/oci.rs"]
mod oci;

use node::{NodeBox, eventually, test_disk};

fn import(b: &NodeBox, reference: &str, file: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(["images", "import", "--data-dir"])
        .arg(b.dir())
        .arg(reference)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kernel_boot_and_container_disks_come_from_container_images() {
    let b = NodeBox::start(25, &[]);
    let disk = test_disk();
    let images = oci::test_images();
    let tmp = tempfile::tempdir().unwrap();
    let kernel_image = tmp.path().join("kernel-boot.tar");
    oci::archive(
        &kernel_image,
        &[
            ("boot/vmlinuz-virt", &images.join("vmlinuz")),
            ("boot/initramfs-virt", &images.join("initrd.gz")),
        ],
    );
    import(
        &b,
        "registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel",
        &kernel_image,
    );
    let disk_layout = tmp.path().join("disk-layout");
    oci::layout(&disk_layout, &[("disk/disk.qcow2", &disk)]);
    import(&b, "quay.io/kubevirt-rs/test-guest-oci:1", &disk_layout);
    // An image whose disk is not under /disk/: `containerDisk.path` says where.
    let pathed_layout = tmp.path().join("pathed-layout");
    oci::layout(&pathed_layout, &[("images/custom.qcow2", &disk)]);
    import(&b, "quay.io/kubevirt-rs/test-guest-pathed:1", &pathed_layout);

    let example = std::fs::read_to_string(testing::examples().join("vmi-kernel-boot.yaml")).unwrap();
    b.kubectl_in(&["apply", "-f", "-"], Some(&example));
    let vm = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap()
    .replace(
        "kubevirt-rs/test-guest:latest",
        "quay.io/kubevirt-rs/test-guest-oci:1",
    );
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    let pathed = vm.replace("name: testvm", "name: pathed").replace(
        "image: quay.io/kubevirt-rs/test-guest-oci:1",
        "image: quay.io/kubevirt-rs/test-guest-pathed:1\n          path: /images/custom.qcow2",
    );
    assert!(pathed.contains("path: /images/custom.qcow2"));
    b.kubectl_in(&["apply", "-f", "-"], Some(&pathed));

    eventually("the VMIs Running", 90, || {
        b.get("vmi vmi-kernel-boot", "{.status.phase}") == "Running"
            && b.get("vmi testvm", "{.status.phase}") == "Running"
            && b.get("vmi pathed", "{.status.phase}") == "Running"
    });
    let kb = b.get("vmi vmi-kernel-boot", "{.metadata.uid}");
    let cd = b.get("vmi testvm", "{.metadata.uid}");
    eventually("both guests booted", 150, || {
        b.serial(&kb).contains("test guest ready") && b.serial(&cd).contains("test guest ready")
    });
    // The kernel came straight from the image's files (no disk), the other guest from the image's /disk/.
    let cmdline = |uid: &str| {
        let pid = b.qemu_pid(uid).unwrap();
        String::from_utf8(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
            .unwrap()
            .replace('\0', " ")
    };
    let kb_cmd = cmdline(&kb);
    assert!(
        kb_cmd.contains("-kernel ") && kb_cmd.contains("rootfs/boot/vmlinuz-virt"),
        "{kb_cmd}"
    );
    assert!(kb_cmd.contains("rootfs/boot/initramfs-virt"), "{kb_cmd}");
    assert!(b.serial(&cd).contains("cloud-init: hostname=testvm-guest"));
    let pd = b.get("vmi pathed", "{.metadata.uid}");
    eventually("the guest from containerDisk.path booted", 150, || {
        b.serial(&pd).contains("test guest ready")
    });
    b.kubectl(&["delete", "vm", "pathed", "--wait=true", "--timeout=90s"]);

    b.kubectl(&["delete", "vmi", "vmi-kernel-boot", "--wait=true", "--timeout=60s"]);
    b.kubectl(&["delete", "vm", "testvm", "--wait=true", "--timeout=90s"]);
    eventually("the launcher pods gone", 90, || {
        b.kubectl(&["get", "pods", "-o", "name"]).is_empty()
    });
    assert!(b.qemu_pid(&kb).is_none() && b.qemu_pid(&cd).is_none());
}
