//! The launcher pod of admitted upstream examples (the API crate's golden admitted VMIs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use controller::pod::{RenderConfig, hostname, render, vmi_id};
use kubevirt_api::v1::VirtualMachineInstance;

fn golden(name: &str) -> VirtualMachineInstance {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../api/tests/golden/{name}.yaml"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: VirtualMachineInstance = serde_norway::from_str(text.trim_start_matches("---\n")).unwrap();
    v.metadata.namespace = Some("default".into());
    v.metadata.uid = Some("6f0e5bd4-0000-4000-8000-000000000001".into());
    v
}

fn cfg(use_emulation: bool) -> RenderConfig {
    RenderConfig {
        launcher_image: "kvbox/virt-launcher:dev".into(),
        use_emulation,
    }
}

#[test]
fn fedora_launcher_pod_is_rendered_as_upstream_does() {
    let vmi = golden("vmi-fedora");
    let pod = render(&vmi, &cfg(false)).unwrap();
    let meta = &pod.metadata;
    assert_eq!(meta.generate_name.as_deref(), Some("virt-launcher-vmi-fedora-"));
    let labels = meta.labels.as_ref().unwrap();
    for (k, v) in [
        ("kubevirt.io", "virt-launcher"),
        ("kubevirt.io/created-by", "6f0e5bd4-0000-4000-8000-000000000001"),
        ("vmi.kubevirt.io/id", "vmi-fedora"),
        ("vm.kubevirt.io/name", "vmi-fedora"),
        ("special", "vmi-fedora"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let ann = meta.annotations.as_ref().unwrap();
    assert_eq!(ann["kubevirt.io/domain"], "vmi-fedora");
    assert_eq!(ann["kubectl.kubernetes.io/default-container"], "compute");
    assert_eq!(
        ann["kubevirt.io/pci-topology-version"], "v3",
        "VMI annotations are copied"
    );
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("VirtualMachineInstance", Some(true))
    );

    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.termination_grace_period_seconds,
        Some(30),
        "VMI grace 0 + 2 × 15"
    );
    assert_eq!(
        spec.node_selector.as_ref().unwrap()["kubevirt.io/schedulable"],
        "true"
    );
    assert_eq!(
        spec.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "amd64"
    );
    let sc = spec.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_non_root, sc.fs_group),
        (Some(107), Some(true), Some(107))
    );
    assert_eq!(
        spec.readiness_gates.as_ref().unwrap()[0].condition_type,
        "kubevirt.io/virtual-machine-unpaused"
    );

    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["compute", "volumecontainerdisk"]);
    let disk = &spec.containers[1];
    assert_eq!(
        disk.image.as_deref(),
        Some("registry:5000/kubevirt/fedora-with-test-tooling-container-disk:devel")
    );
    assert_eq!(
        disk.args.as_ref().unwrap()[1],
        "/var/run/kubevirt/container-disks/6f0e5bd4-0000-4000-8000-000000000001/disk_0"
    );
    let res = spec.containers[0].resources.as_ref().unwrap();
    let req = res.requests.as_ref().unwrap();
    assert_eq!(req["cpu"].0, "100m");
    // 1024M guest + our overhead (16+48+8+16 MiB + guest/512, rounded to MiB) under KVM.
    let over: u64 = ann["kubevirt.io/memory-overhead-bytes"].parse().unwrap();
    assert_eq!(over, 90 * 1024 * 1024);
    assert_eq!(req["memory"].0, (1_024_000_000 + over).to_string());
    let limits = res.limits.as_ref().unwrap();
    assert_eq!(limits["devices.kubevirt.io/kvm"].0, "1");
    assert_eq!(limits["devices.kubevirt.io/vhost-net"].0, "1");

    // Under emulation: no KVM device, the TCG translation cache counted.
    let tcg = render(&vmi, &cfg(true)).unwrap();
    let spec = tcg.spec.unwrap();
    let c = &spec.containers[0];
    assert!(
        !c.resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()
            .contains_key("devices.kubevirt.io/kvm")
    );
    assert!(c.args.as_ref().unwrap().contains(&"--emulation".to_string()));
    let over_tcg: u64 = tcg.metadata.annotations.unwrap()["kubevirt.io/memory-overhead-bytes"]
        .parse()
        .unwrap();
    assert_eq!(over_tcg - over, 64 * 1024 * 1024);
}

#[test]
fn kernel_boot_gets_its_container_and_ids_hostnames_follow_upstream() {
    let vmi = golden("vmi-kernel-boot");
    let pod = render(&vmi, &cfg(true)).unwrap();
    let names: Vec<String> = pod
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["compute", "kernel-boot"]);

    let long = "a".repeat(70);
    let id = vmi_id(&long);
    assert_eq!(id.len(), 63);
    assert!(id.starts_with(&"a".repeat(54)) && id.as_bytes()[54] == b'-');
    assert!(
        id[55..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(vmi_id("short"), "short");

    let mut v = golden("vmi-fedora");
    v.metadata.name = Some("web.example".into());
    assert_eq!(hostname(&v), "web");
    v.spec.hostname = Some("custom".into());
    assert_eq!(hostname(&v), "custom");
}
