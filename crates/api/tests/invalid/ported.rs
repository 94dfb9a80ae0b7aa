//! Rules ported from upstream's admitters after real clients found them missing (issue 11): feature gates checked
//! first, gated template annotations, per-architecture devices, launchSecurity per architecture, memory hotplug
//! under LiveUpdate, and Kubernetes' scheduling-term validation — each with upstream's field path and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubevirt_api::admission::Outcome;
use serde_json::{Value, json};

use crate::{cause, check, check_in, configured, run};

fn template(spec: Value) -> Value {
    json!({"spec": {"template": {"spec": spec}}})
}

const QN: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn feature_gates_and_gated_annotations() {
    check_in(
        configured(json!({"developerConfiguration": {"featureGates": ["Passt"]}})),
        101,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "passt": {}}]}},
            "networks": [{"name": "default", "pod": {}}]}}),
        cause(
            "",
            "Passt network binding is discontinued since v1.3. Please refer to Kubevirt user guide for alternatives.",
        ),
    );
    check_in(
        configured(json!({"developerConfiguration": {"featureGates": ["Macvtap"]}})),
        101,
        "vm",
        template(
            json!({"domain": {"devices": {"interfaces": [{"name": "default", "macvtap": {}}]}},
            "networks": [{"name": "default", "pod": {}}]}),
        ),
        cause(
            "",
            "Macvtap network binding is discontinued since v1.3. Please refer to Kubevirt user guide for alternatives.",
        ),
    );
    check_in(
        configured(json!({"developerConfiguration": {"disabledFeatureGates": ["GPUsWithDRA"]}})),
        102,
        "vmi",
        json!({"spec": {"domain": {"devices": {"gpus": [{"name": "g", "claimName": "c", "requestName": "r"}]}}}}),
        cause(
            "spec.domain.devices.gpus",
            "vmi.spec.domain.devices.gpus contains DRA enabled GPUs but feature gate is not enabled",
        ),
    );
    check(
        102,
        "vmi",
        json!({"spec": {"networks": [{"name": "n", "resourceClaim": {"claimName": "c", "requestName": "r"}}]}}),
        cause(
            "spec.networks",
            "vmi.spec.networks contains DRA networks but NetworkDevicesWithDRA feature gate is not enabled",
        ),
    );
    // The hook-sidecar and ignition annotations are gated on VM templates too.
    check(
        103,
        "vm",
        json!({"spec": {"template": {"metadata": {"annotations": {"hooks.kubevirt.io/hookSidecars": "[{\"image\": \"x\"}]"}}}}}),
        cause(
            "spec.template.metadata.annotations",
            "sidecar feature gate is not enabled in kubevirt-config, invalid entry spec.template.metadata.annotations.hooks.kubevirt.io/hookSidecars",
        ),
    );
    check(
        103,
        "pool",
        json!({"spec": {"virtualMachineTemplate": {"spec": {"template": {"metadata": {"annotations": {"kubevirt.io/ignitiondata": "{}"}}}}}}}),
        cause(
            "spec.virtualMachineTemplate.spec.template.metadata.annotations",
            "ExperimentalIgnitionSupport feature gate is not enabled in kubevirt-config, invalid entry spec.virtualMachineTemplate.spec.template.metadata.annotations.kubevirt.io/ignitiondata",
        ),
    );
}

#[test]
fn per_architecture_devices() {
    check(
        111,
        "vmi",
        json!({"spec": {"domain": {"devices": {"watchdog": {"name": "w", "diag288": {}}}}}}),
        cause(
            "spec.domain.devices.watchdog",
            "amd64 only supports I6300ESB watchdog device",
        ),
    );
    check(
        111,
        "vmi",
        json!({"spec": {"domain": {"devices": {"video": {}}}}}),
        cause(
            "spec.domain.devices.video.type",
            "video model '' is not supported on amd64 architecture",
        ),
    );
    let arm = |extra: Value| {
        let mut p = json!({"spec": {"architecture": "arm64", "domain": {"firmware": {"bootloader": {"efi": {"secureBoot": false}}}}}});
        crate::merge(&mut p, &extra);
        p
    };
    check(
        112,
        "vmi",
        json!({"spec": {"architecture": "arm64", "domain": {"firmware": {"bootloader": {"bios": {}}}}}}),
        cause(
            "spec.domain.firmware.bootloader.bios",
            "Arm64 does not support bios boot, please change to uefi boot",
        ),
    );
    check(
        112,
        "vmi",
        arm(json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "sata"}}]}}}})),
        cause(
            "spec.domain.devices.disks[0].disk.bus",
            "Arm64 not support this disk bus type, please use virtio or scsi",
        ),
    );
    check(
        112,
        "vmi",
        arm(json!({"spec": {"domain": {"devices": {"video": {"type": "vga"}}}}})),
        cause(
            "spec.domain.devices.video.type",
            "video model 'vga' is not supported on arm64 architecture",
        ),
    );
    check(
        112,
        "vmi",
        arm(
            json!({"spec": {"domain": {"cpu": {"dedicatedCpuPlacement": true, "threads": 2},
            "resources": {"requests": {"cpu": "2", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "128Mi"}}}}}),
        ),
        cause(
            "spec.architecture",
            "threads must not be greater than 1 at spec.domain.cpu.threads (got 2) when spec.architecture is arm64",
        ),
    );
    check(
        113,
        "vmi",
        json!({"spec": {"architecture": "s390x", "domain": {"devices": {"video": {"type": "vga"}}}}}),
        cause(
            "spec.domain.devices.video.type",
            "video model 'vga' is not supported on s390x architecture",
        ),
    );
    check(
        113,
        "vmi",
        json!({"spec": {"architecture": "s390x", "domain": {"devices": {"panicDevices": [{"model": "pvpanic"}]}}}}),
        cause(
            "spec.domain.devices.panicDevices",
            "custom panic devices are not supported on s390x architecture",
        ),
    );
}

#[test]
fn launch_security_per_architecture() {
    let snp = json!({"spec": {"domain": {"launchSecurity": {"snp": {}}, "features": {"smm": {"enabled": false}},
        "firmware": {"bootloader": {"efi": {"secureBoot": false, "persistent": true}}}}}});
    check(
        121,
        "vmi",
        snp.clone(),
        cause(
            "spec.launchSecurity",
            "SNP does not work along with Persistent EFI variables",
        ),
    );
    check(
        121,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {"snp": {}}}}}),
        cause("spec.launchSecurity", "SNP requires OVMF (UEFI)"),
    );
    check(
        121,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {"sev": {"attestation": {}}}, "features": {"smm": {"enabled": false}},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}}}}}),
        cause(
            "spec.launchSecurity",
            "SEV attestation requires VMI StartStrategy 'Paused'",
        ),
    );
    check(
        121,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {"sev": {}}, "features": {"smm": {"enabled": false}},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}},
            "devices": {"interfaces": [{"name": "default", "masquerade": {}, "bootOrder": 2}]}},
            "networks": [{"name": "default", "pod": {}}]}}),
        cause(
            "spec.launchSecurity",
            "SEV does not work with bootable NICs: default",
        ),
    );
    check_in(
        configured(json!({"developerConfiguration": {"featureGates": ["WorkloadEncryptionTDX"]}})),
        121,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {"tdx": {}}, "features": {"smm": {}},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}}}}}),
        cause("spec.launchSecurity", "TDX does not work along with SMM"),
    );
    check(
        122,
        "vmi",
        json!({"spec": {"architecture": "arm64", "domain": {"launchSecurity": {"sev": {}},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}}}}}),
        cause(
            "spec.architecture",
            "No launchSecurity support for architecture: arm64",
        ),
    );
    // s390x (Secure Execution) takes launchSecurity as it is.
    match run(
        "vmi",
        json!({"spec": {"architecture": "s390x", "domain": {"launchSecurity": {},
            "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}}}}),
    ) {
        Outcome::Invalid(causes) => assert!(
            !causes
                .iter()
                .any(|c| c.field.as_deref() == Some("spec.launchSecurity")),
            "{causes:#?}"
        ),
        Outcome::Admitted { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn memory_hotplug_under_live_update() {
    let mem = |m: Value| template(json!({"domain": {"memory": m}}));
    let at = "spec.template.spec.domain.memory.guest";
    match run("vm", mem(json!({"guest": "1Gi", "maxGuest": "4Gi"}))) {
        Outcome::Admitted { .. } => {}
        other => panic!("a hotplug-capable VM is refused: {other:?}"),
    }
    let cases = [
        (
            json!({"guest": "4112Mi", "maxGuest": "4Gi"}),
            "Guest memory is greater than the configured maxGuest memory",
        ),
        (
            json!({"guest": "1025Mi", "maxGuest": "4Gi"}),
            "Guest memory must be 2Mi aligned",
        ),
        (
            json!({"guest": "1Gi", "maxGuest": "2049Mi"}),
            "MaxGuest must be 2Mi aligned",
        ),
        (
            json!({"guest": "512Mi", "maxGuest": "4Gi"}),
            "Memory hotplug is only available for VMs with at least 1Gi of guest memory",
        ),
    ];
    for (m, msg) in cases {
        check(131, "vm", mem(m), cause(at, msg));
    }
    check(
        131,
        "vm",
        template(
            json!({"domain": {"memory": {"guest": "1Gi", "maxGuest": "4Gi"}, "cpu": {"realtime": {}, "dedicatedCpuPlacement": true}}}),
        ),
        cause(at, "Memory hotplug is not compatible with realtime VMs"),
    );
    check(
        131,
        "vm",
        template(
            json!({"architecture": "arm64", "domain": {"memory": {"guest": "1Gi", "maxGuest": "4Gi"},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}}}}),
        ),
        cause(at, "Memory hotplug is only available for x86_64 VMs"),
    );
    // Not under the Stage rollout.
    match run_staged() {
        Outcome::Admitted { .. } => {}
        other => panic!("{other:?}"),
    }
}

fn run_staged() -> Outcome {
    crate::run_in(
        configured(json!({"vmRolloutStrategy": "Stage"})),
        "vm",
        template(json!({"domain": {"memory": {"guest": "512Mi", "maxGuest": "4Gi"}}})),
    )
}

#[test]
fn scheduling_terms_as_kubernetes_validates_them() {
    let affinity = |a: Value| json!({"spec": {"affinity": a}});
    check(
        141,
        "vmi",
        affinity(
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 255,
            "podAffinityTerm": {"topologyKey": "zone"}}]}}),
        ),
        cause(
            "spec.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
            "spec.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 255: must be in the range 1-100",
        ),
    );
    check(
        141,
        "vmi",
        affinity(
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]}}),
        ),
        cause(
            "spec.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].values",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
    );
    check(
        141,
        "vmi",
        affinity(
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "hostname=host1"}]}}),
        ),
        cause(
            "spec.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
            QN,
        ),
    );
    check(
        141,
        "vmi",
        affinity(
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": ""}]}}),
        ),
        cause(
            "spec.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
            "Required value: can not be empty",
        ),
    );
    check(
        141,
        "vmi",
        affinity(
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone",
            "namespaces": ["Bad_NS"]}]}}),
        ),
        cause(
            "spec.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespace",
            "Invalid value: \"Bad_NS\": a lowercase RFC 1123 label must consist of",
        ),
    );
    check(
        141,
        "vmi",
        affinity(
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}]}}),
        ),
        cause(
            "spec.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].values",
            "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
    );
    let node = |term: Value| {
        affinity(
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}),
        )
    };
    check(
        142,
        "vmi",
        node(json!({"matchFields": [{"key": "key", "operator": "In", "values": ["n1"]}]})),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key",
            "matchFields[0].key: Invalid value: \"key\": not a valid field selector key",
        ),
    );
    check(
        142,
        "vmi",
        node(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [""]}]})),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]",
            "values[0]: Invalid value: \"\": a lowercase RFC 1123 subdomain must consist of",
        ),
    );
    check(
        142,
        "vmi",
        node(json!({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["1", "2"]}]})),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
            "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
        ),
    );
    check(
        142,
        "vmi",
        node(json!({"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]})),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator",
            "Invalid value: \"Near\": not a valid selector operator",
        ),
    );
    let tsc = |list: Value| json!({"spec": {"topologySpreadConstraints": list}});
    check(
        143,
        "vmi",
        tsc(json!([{"maxSkew": 1, "topologyKey": "hostname=host1", "whenUnsatisfiable": "DoNotSchedule"}])),
        cause("spec.topologySpreadConstraints[0].topologyKey", QN),
    );
    check(
        143,
        "vmi",
        tsc(
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]),
        ),
        cause(
            "spec.topologySpreadConstraints.labelSelector.matchExpressions[0].values",
            "spec.topologySpreadConstraints.labelSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
    );
    check(
        143,
        "vmi",
        tsc(json!([
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}])),
        cause(
            "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}",
            "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{zone, DoNotSchedule}\"",
        ),
    );
    // VM templates are checked at the template's root.
    check(
        144,
        "vm",
        template(
            json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0,
            "podAffinityTerm": {"topologyKey": "zone"}}]}}}),
        ),
        cause(
            "spec.template.spec.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
            "Invalid value: 0: must be in the range 1-100",
        ),
    );
}

/// A cluster permitting a Grace GPU (`10de:2342`) and an NVIDIA wildcard, with `gates` on.
fn grace_cluster(gates: &[&str]) -> kubevirt_api::admission::Cluster {
    let mut all = vec!["GPU", "HostDevices"];
    all.extend_from_slice(gates);
    configured(json!({
        "developerConfiguration": {"featureGates": all},
        "permittedHostDevices": {"pciHostDevices": [
            {"pciVendorSelector": "10de:2342", "resourceName": "nvidia.com/GH100"},
            {"pciVendorSelector": "10DE:*", "resourceName": "nvidia.com/any"},
            {"pciVendorSelector": "8086:1520", "resourceName": "intel.com/nic"}
        ]}
    }))
}

fn grace_gpu() -> Value {
    json!({"domain": {"devices": {"gpus": [{"name": "g", "deviceName": "nvidia.com/GH100"}]}}})
}

#[test]
fn grace_io_virtualization() {
    check_in(
        grace_cluster(&[]),
        145,
        "vmi",
        json!({"spec": grace_gpu()}),
        cause(
            "spec.domain.devices.gpus[0].deviceName",
            "GraceIOVirtualization feature gate must be enabled for NVIDIA Grace GPU passthrough resource \"nvidia.com/GH100\"",
        ),
    );
    let on = || grace_cluster(&["GraceIOVirtualization"]);
    for (rule, field, message) in [
        (
            146,
            "spec.architecture",
            "GraceIOVirtualization requires arm64 architecture",
        ),
        (
            147,
            "spec.domain.machine.type",
            "GraceIOVirtualization requires \"virt\" machine type",
        ),
        (
            148,
            "spec.domain.cpu.dedicatedCpuPlacement",
            "GraceIOVirtualization requires dedicated CPU placement",
        ),
        (
            149,
            "spec.domain.devices",
            "PCINUMAAwareTopology feature gate must be enabled when GraceIOVirtualization is used",
        ),
        (
            150,
            "spec.domain.devices",
            "IOMMUFD feature gate must be enabled when GraceIOVirtualization is used",
        ),
    ] {
        check_in(
            on(),
            rule,
            "vmi",
            json!({"spec": grace_gpu()}),
            cause(field, message),
        );
    }
    check_in(
        on(),
        151,
        "vmi",
        json!({"spec": {"domain": {"devices": {"hostDevices": [{"name": "h", "deviceName": "nvidia.com/any"}]}}}}),
        cause(
            "spec.domain.devices.hostDevices[0].deviceName",
            "GraceIOVirtualization requires an exact pciVendorSelector for NVIDIA PCI host device resource \"nvidia.com/any\"",
        ),
    );
    let annotated = json!({"metadata": {"annotations": {
        "kubevirt.io/placePCIDevicesOnRootComplex": "true", "kubevirt.io/disablePCIHole64": "true"}},
        "spec": grace_gpu()});
    check_in(
        on(),
        152,
        "vmi",
        annotated.clone(),
        cause(
            "metadata.annotations[kubevirt.io/placePCIDevicesOnRootComplex]",
            "GraceIOVirtualization is not compatible with placing PCI devices on the root complex",
        ),
    );
    check_in(
        on(),
        153,
        "vmi",
        annotated,
        cause(
            "metadata.annotations[kubevirt.io/disablePCIHole64]",
            "GraceIOVirtualization requires the 64-bit PCI hole",
        ),
    );
    check_in(
        on(),
        154,
        "vm",
        json!({"spec": {"template": {"metadata": {"annotations": {"kubevirt.io/disablePCIHole64": "true"}},
            "spec": grace_gpu()}}}),
        cause(
            "spec.template.metadata.annotations[kubevirt.io/disablePCIHole64]",
            "GraceIOVirtualization requires the 64-bit PCI hole",
        ),
    );
    check_in(
        grace_cluster(&[]),
        155,
        "vmirs",
        json!({"spec": {"template": {"spec": grace_gpu()}}}),
        cause(
            "spec.template.spec.domain.devices.gpus[0].deviceName",
            "GraceIOVirtualization feature gate must be enabled",
        ),
    );
    // Everything Grace needs: no Grace cause remains; a non-NVIDIA device or a wildcard without the gate is
    // none of its business.
    let complete = json!({"spec": {"architecture": "arm64",
        "domain": {"machine": {"type": "virt"}, "cpu": {"dedicatedCpuPlacement": true},
            "devices": {"gpus": [{"name": "g", "deviceName": "nvidia.com/GH100"}]}}}});
    for (cluster, spec) in [
        (
            grace_cluster(&["GraceIOVirtualization", "PCINUMAAwareTopology", "IOMMUFD"]),
            complete,
        ),
        (
            grace_cluster(&[]),
            json!({"spec": {"domain": {"devices": {"hostDevices": [
                {"name": "a", "deviceName": "nvidia.com/any"}, {"name": "b", "deviceName": "intel.com/nic"}]}}}}),
        ),
    ] {
        if let Outcome::Invalid(causes) = crate::run_in(cluster, "vmi", spec.clone()) {
            let grace: Vec<_> = causes
                .iter()
                .filter(|c| c.message.as_deref().unwrap_or("").contains("GraceIO"))
                .collect();
            assert!(grace.is_empty(), "{spec}: {grace:#?}");
        }
    }
}
