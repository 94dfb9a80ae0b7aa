//! Firmware, credentials, strategies, devices, gates, labels and scheduling rules (25–33).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{cause, check, check_in, configured};

#[test]
fn firmware_and_device_rules() {
    // 25 bootloader / secure boot / ACPI
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"bootloader": {"bios": {}, "efi": {"secureBoot": false}}}}}}),
        cause(
            "spec.domain.firmware.bootloader",
            "has both EFI and BIOS configured, but they are mutually exclusive.",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"bootloader": {"efi": {}}}}}}),
        cause(
            "spec.domain",
            "spec.domain has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled.",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"acpi": {}}}}}),
        cause(
            "spec.acpi",
            "ACPI was set but no SLIC nor MSDM volume reference was set",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"acpi": {"slicNameRef": "root"}}}}}),
        cause(
            "spec.acpi.slicNameRef",
            "spec.acpi refers to Volume of unsupported type.",
        ),
    );
    // 26 kernel boot
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"kernelArgs": "console=ttyS0"}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.kernelArgs",
            "kernel arguments cannot be provided without an external kernel",
        ),
    );
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"container": {"image": "k"}}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.container",
            "must be defined with at least one of the following: kernelPath, initrdPath",
        ),
    );
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"container": {"image": "k", "kernelPath": "boot/../vmlinuz"}}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.container.kernelPath",
            "must be an absolute path to a file without relative components",
        ),
    );
    // 27 access credentials
    let secret = json!({"secret": {"secretName": "keys"}});
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{"sshPublicKey": {"source": secret, "propagationMethod": {"noCloud": {}}}}]}}),
        cause(
            "spec.accessCredentials[0].sshPublicKey.propagationMethod",
            "requires a noCloud volume to exist",
        ),
    );
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{"sshPublicKey": {"source": secret, "propagationMethod": {"qemuGuestAgent": {"users": []}}}}]}}),
        cause(
            "spec.accessCredentials[0].sshPublicKey.propagationMethod.qemuGuestAgent.users",
            "requires at least one user",
        ),
    );
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{}]}}),
        cause(
            "spec.accessCredentials[0]",
            "must have exactly one access credential type set",
        ),
    );
    // 28 eviction / start strategy
    check(
        28,
        "vmi",
        json!({"spec": {"evictionStrategy": "Sometimes"}}),
        cause(
            "spec.evictionStrategy",
            "spec.evictionStrategy is set with an unrecognized option: Sometimes",
        ),
    );
    check(
        28,
        "vmi",
        json!({"spec": {"startStrategy": "Running"}}),
        cause(
            "spec.startStrategy",
            "spec.startStrategy is set with an unrecognized option: Running",
        ),
    );
    // 29 inputs / sound / panic
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"inputs": [{"name": "t", "type": "tablet", "bus": "ps2"}]}}}}),
        cause(
            "spec.domain.devices.inputs[0].bus",
            "Input device can have only virtio or usb bus.",
        ),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"inputs": [{"name": "k", "type": "keyboard"}]}}}}),
        cause(
            "spec.domain.devices.inputs[0].type",
            "Input device can have only tablet type.",
        ),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"sound": {"name": "s", "model": "sb16"}}}}}),
        cause("spec.Sound", "Sound device type is not supported."),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"panicDevices": [{"model": "crashy"}]}}}}),
        cause(
            "spec.domain.devices.panicDevices[0].model",
            "invalid PanicDeviceModel(crashy)",
        ),
    );
    // 30 feature gates
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"hostDevices": [{"name": "h", "deviceName": "x/y"}]}}}}),
        cause(
            "spec.HostDevices",
            "Host Devices feature gate is not enabled in kubevirt-config",
        ),
    );
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachVSOCK": true}}}}),
        cause(
            "spec.domain.devices.autoattachVSOCK",
            "VSOCK feature gate is not enabled in kubevirt-config",
        ),
    );
    check(
        30,
        "vmi",
        json!({"metadata": {"annotations": {"hooks.kubevirt.io/hookSidecars": "[]"}}}),
        cause("metadata.annotations", "sidecar feature gate is not enabled"),
    );
    // 31 reserved labels
    check(
        31,
        "vmi",
        json!({"metadata": {"labels": {"kubevirt.io/nodeName": "n1"}}}),
        cause(
            "metadata.labels",
            "creation of the following reserved kubevirt.io/ labels on a VMI object is prohibited",
        ),
    );
    check(
        31,
        "vm",
        json!({"spec": {"template": {"metadata": {"labels": {"kubevirt.io/created-by": "me"}}}}}),
        cause("spec.template.metadata.labels", "reserved kubevirt.io/ labels"),
    );
    // 32 ramfb / video / launchSecurity
    let gpu = |n: &str| json!({"name": n, "deviceName": "v/gpu", "virtualGPUOptions": {"display": {}}});
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"devices": {"gpus": [gpu("a"), gpu("b")]}}}}),
        cause(
            "spec.GPUs",
            "configuring multiple displays with ramfb is not valid",
        ),
    );
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachGraphicsDevice": false, "video": {"type": "vga"}}}}}),
        cause(
            "spec.video",
            "Video configuration is not allowed when autoattachGraphicsDevice is set to false",
        ),
    );
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {}}}}),
        cause(
            "spec.launchSecurity",
            "One and only one launchSecurity type can be set",
        ),
    );
    // 33 utility volumes / architecture
    check(
        33,
        "vmi",
        json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "c"}]}}),
        cause(
            "spec.utilityVolumes",
            "cannot create VMI with utility volumes in spec",
        ),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"architecture": "riscv64"}}),
        cause("spec.architecture", "unsupported architecture: riscv64"),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            "must have at least one node selector term",
        ),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}}),
        cause(
            "spec.topologySpreadConstraints[0].maxSkew",
            "must be greater than zero",
        ),
    );
}

#[test]
fn hyperv_and_gated_storage_rules() {
    // Hyper-V: an enabled feature whose dependency is explicitly off.
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"features": {"hyperv": {"synic": {"enabled": true}, "vpindex": {"enabled": false}}}}}}),
        cause(
            "spec.domain.features.hyperv.domain.features.hyperv.synic",
            "'synic' requires 'vpindex', which was disabled.",
        ),
    );
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"features": {"hyperv": {"evmcs": {}, "vapic": {"enabled": false}}}}}}),
        cause(
            "spec.domain.features.hyperv.domain.features.hyperv.evmcs",
            "'evmcs' requires 'vapic', which was disabled.",
        ),
    );
    // Persistent reservation and virtiofs on PVCs.
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "lun": {"reservation": true}}]}},
            "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "c"}}]}}),
        cause(
            "spec.domain.devices.disks.luns.reservation",
            "persistent reservation is not enabled in kubevirt config",
        ),
    );
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root"}], "filesystems": [{"name": "share", "virtiofs": {}}]}},
            "volumes": [{"name": "root", "containerDisk": {"image": "c"}}, {"name": "share", "persistentVolumeClaim": {"claimName": "c"}}]}}),
        cause(
            "spec.domain.devices.filesystems",
            "virtiofs is not allowed: virtiofs feature gate is not enabled for PVC",
        ),
    );
    // Launch security needs UEFI without secure boot.
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {"sev": {}}}}}),
        cause("spec.launchSecurity", "SEV requires OVMF (UEFI)"),
    );
}

#[test]
fn gates_that_are_on_by_default_can_be_turned_off() {
    check_in(
        configured(
            json!({"developerConfiguration": {"disabledFeatureGates": ["DeclarativeHotplugVolumes"]}}),
        ),
        15,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root"}, {"name": "empty", "cdrom": {}}]}}}}),
        cause(
            "spec.domain.devices.disks[1].name",
            "DeclarativeHotplugVolumes feature gate not enabled, cannot define an empty CD-ROM disk",
        ),
    );
    check_in(
        configured(json!({"network": {"permitBridgeInterfaceOnPodNetwork": false}})),
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}]}}, "networks": [{"name": "default", "pod": {}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "Bridge on pod network configuration is not enabled under kubevirt-config",
        ),
    );
}
