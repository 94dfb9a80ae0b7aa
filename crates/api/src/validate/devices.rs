//! VMI spec rules about firmware, DNS, devices, architecture and scheduling.

use super::{Causes, FORBIDDEN, INVALID, NOT_SUPPORTED, REQUIRED, dns1123_subdomain, storage};
use crate::config::ClusterConfig;
use crate::v1::VirtualMachineInstanceSpec;

pub(super) fn firmware(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let Some(fw) = spec.domain.firmware.as_ref() else {
        return;
    };
    if let Some(bl) = fw.bootloader.as_ref() {
        if bl.bios.is_some() && bl.efi.is_some() {
            let f = format!("{root}.domain.firmware.bootloader");
            c.push(
                INVALID,
                &f,
                format!("{f} has both EFI and BIOS configured, but they are mutually exclusive."),
            );
        }
        if let Some(efi) = bl.efi.as_ref() {
            let smm_on = spec
                .domain
                .features
                .as_ref()
                .and_then(|f| f.smm.as_ref())
                .is_some_and(|s| s.enabled != Some(false));
            let tdx = spec
                .domain
                .launch_security
                .as_ref()
                .is_some_and(|l| l.tdx.is_some());
            if efi.secure_boot != Some(false) && !smm_on && !tdx {
                let f = format!("{root}.domain");
                c.push(INVALID, &f, format!("{f} has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled."));
            }
        }
    }
    if let Some(kb) = fw.kernel_boot.as_ref() {
        let k = format!("{root}.domain.firmware.kernelBoot");
        match kb.container.as_ref() {
            None => {
                if kb.kernel_args.as_deref().is_some_and(|a| !a.is_empty()) {
                    c.push(
                        INVALID,
                        format!("{k}.kernelArgs"),
                        "kernel arguments cannot be provided without an external kernel",
                    );
                }
            }
            Some(ct) => {
                if ct.image.is_empty() {
                    c.push(
                        REQUIRED,
                        format!("{k}.container.image"),
                        format!("{k}.container must be defined with an image"),
                    );
                }
                let kp = ct.kernel_path.as_deref().unwrap_or("");
                let ip = ct.initrd_path.as_deref().unwrap_or("");
                if kp.is_empty() && ip.is_empty() {
                    c.push(REQUIRED, format!("{k}.container"), format!("{k}.container must be defined with at least one of the following: kernelPath, initrdPath"));
                }
                for (p, name) in [(kp, "kernelPath"), (ip, "initrdPath")] {
                    let f = format!("{k}.container.{name}");
                    if let Some(msg) = storage::bad_path(p) {
                        c.push(INVALID, &f, format!("{f} {msg}"));
                    }
                }
            }
        }
    }
    if let Some(acpi) = fw.acpi.as_ref() {
        let refs = [
            ("slicNameRef", acpi.slic_name_ref.as_deref()),
            ("msdmNameRef", acpi.msdm_name_ref.as_deref()),
        ];
        if refs.iter().all(|(_, r)| r.is_none_or(str::is_empty)) {
            c.push(
                INVALID,
                format!("{root}.acpi"),
                "ACPI was set but no SLIC nor MSDM volume reference was set",
            );
        }
        for (name, r) in refs {
            let Some(r) = r.filter(|r| !r.is_empty()) else {
                continue;
            };
            match spec.volumes.iter().flatten().find(|v| v.name == r) {
                None => c.push(
                    INVALID,
                    format!("{root}.acpi.{name}"),
                    format!("{root}.acpi does not have a matching Volume."),
                ),
                Some(v) if v.secret.is_none() => c.push(
                    INVALID,
                    format!("{root}.acpi.{name}"),
                    format!("{root}.acpi refers to Volume of unsupported type."),
                ),
                Some(_) => {}
            }
        }
    }
}

pub(super) fn dns(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let policy = spec.dns_policy.as_deref().unwrap_or("");
    if !matches!(
        policy,
        "" | "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
    ) {
        c.push(NOT_SUPPORTED, format!("{root}.dnsPolicy"), format!("DNSPolicy: {policy} is not supported, valid values: [ClusterFirstWithHostNet ClusterFirst Default None ]"));
    }
    let cfg = spec.dns_config.as_ref();
    if policy == "None" {
        match cfg {
            None => c.push(
                REQUIRED,
                format!("{root}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ),
            Some(d) if d.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                c.push(
                    REQUIRED,
                    "nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
            }
            Some(_) => {}
        }
    }
    let Some(d) = cfg else { return };
    let ns = d.nameservers.clone().unwrap_or_default();
    if ns.len() > 3 {
        c.push(
            INVALID,
            "nameservers",
            format!("must not have more than 3 nameservers: [{}]", ns.join(" ")),
        );
    }
    for n in &ns {
        if n.parse::<std::net::IpAddr>().is_err() {
            c.push(INVALID, "nameservers", format!("must be valid IP address: {n}"));
        }
    }
    let search = d.searches.clone().unwrap_or_default();
    if search.len() > 6 {
        c.push(INVALID, "searchDomains", "must not have more than 6 search paths");
    }
    if search.join(" ").len() > 256 {
        c.push(
            INVALID,
            "searchDomains",
            "must not have more than 256 characters (including spaces) in the search list",
        );
    }
    for s in &search {
        if let Err(e) = dns1123_subdomain(s.trim_end_matches('.')) {
            c.push(INVALID, "searchDomains", e);
        }
    }
    for o in d.options.iter().flatten() {
        if o.name.as_deref().is_none_or(str::is_empty) {
            c.push(INVALID, "options", "Option.Name must not be empty");
        }
    }
}

pub(super) fn devices(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let d = &spec.domain.devices;
    let ramfb = d
        .gpus
        .iter()
        .flatten()
        .filter_map(|g| g.virtual_gpu_options.as_ref()?.display.as_ref())
        .filter(|disp| {
            disp.enabled != Some(false) && disp.ram_fb.as_ref().is_none_or(|r| r.enabled != Some(false))
        })
        .count();
    if ramfb > 1 {
        c.push(
            INVALID,
            format!("{root}.GPUs"),
            "configuring multiple displays with ramfb is not valid ",
        );
    }
    if d.host_devices.is_some() && !config.gate("HostDevices") {
        c.push(
            INVALID,
            format!("{root}.HostDevices"),
            "Host Devices feature gate is not enabled in kubevirt-config",
        );
    }
    if let Some(s) = d.sound.as_ref() {
        if !matches!(s.model.as_deref().unwrap_or(""), "" | "ich9" | "ac97") {
            c.push(
                INVALID,
                format!("{root}.Sound"),
                "Sound device type is not supported. Options: 'ich9' or 'ac97'",
            );
        }
        if s.name.is_empty() {
            c.push(
                INVALID,
                format!("{root}.Sound"),
                "Sound device requires a name field.",
            );
        }
    }
    if d.autoattach_vsock == Some(true) && !config.gate("VSOCK") {
        c.push(
            INVALID,
            format!("{root}.domain.devices.autoattachVSOCK"),
            "VSOCK feature gate is not enabled in kubevirt-config",
        );
    }
    if d.downward_metrics.is_some() && !config.gate("DownwardMetrics") {
        c.push(
            INVALID,
            format!("{root}.domain.devices.downwardMetrics"),
            "downwardMetrics virtio serial is not allowed: DownwardMetrics feature gate is not enabled",
        );
    }
    if d.video.is_some() && d.autoattach_graphics_device == Some(false) {
        c.push(
            INVALID,
            format!("{root}.video"),
            "Video configuration is not allowed when autoattachGraphicsDevice is set to false",
        );
    }
    for (i, p) in d.panic_devices.iter().flatten().enumerate() {
        if let Some(m) = p.model.as_deref()
            && !matches!(m, "hyperv" | "isa" | "pvpanic")
        {
            c.push(
                INVALID,
                format!("{root}.domain.devices.panicDevices[{i}].model"),
                format!("invalid PanicDeviceModel({m})"),
            );
        }
    }
    if spec.domain.reboot_policy.is_some() && !config.gate("RebootPolicy") {
        c.push(
            INVALID,
            format!("{root}.domain.rebootPolicy"),
            "RebootPolicy is specified but the RebootPolicy feature gate is not enabled",
        );
    }
    if spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.reserved_overhead.as_ref())
        .is_some()
        && !config.gate("ReservedOverheadMemlock")
    {
        c.push(
            INVALID,
            format!("{root}.domain.memory.reservedOverhead"),
            "Reserved overhead memlock feature gate is not enabled in kubevirt-config",
        );
    }
    launch_security(root, spec, config, c);
    arch_spec_rules(root, spec, config, c);
    if let Some(u) = spec.utility_volumes.as_ref() {
        let _ = u;
        c.push(
            INVALID,
            format!("{root}.utilityVolumes"),
            "cannot create VMI with utility volumes in spec, utility volumes can only be added via hotplug",
        );
    }
}

/// Hyper-V feature dependencies (VMI create only): an enabled feature whose prerequisite is explicitly disabled.
pub(super) fn hyperv(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let Some(features) = spec.domain.features.as_ref() else {
        return;
    };
    let Some(h) = features.hyperv.as_ref() else { return };
    let base = format!("{root}.domain.features.hyperv.domain.features.hyperv");
    let on = |f: Option<bool>| f == Some(true);
    let state = |f: &Option<crate::v1::FeatureState>| f.as_ref().and_then(|f| f.enabled);
    let deps = [
        ("synic", state(&h.synic), "vpindex", state(&h.vpindex)),
        ("evmcs", state(&h.evmcs), "vapic", state(&h.vapic)),
        ("ipi", state(&h.ipi), "vpindex", state(&h.vpindex)),
        (
            "tlbflush",
            h.tlbflush.as_ref().and_then(|t| t.enabled),
            "vpindex",
            state(&h.vpindex),
        ),
        (
            "synictimer",
            h.synictimer.as_ref().and_then(|t| t.enabled),
            "synic",
            state(&h.synic),
        ),
    ];
    for (feature, enabled, needs, needed) in deps {
        if on(enabled) && !on(needed) {
            c.push(
                INVALID,
                format!("{base}.{feature}"),
                format!("'{feature}' requires '{needs}', which was disabled."),
            );
        }
    }
    if features.hyperv_passthrough.is_some() {
        c.push(INVALID, format!("{root}.domain.features.hyperv"), "Cannot explicitly set hyperV features if HypervPassthrough is being used. Please use either HyperV or HypervPassthrough.");
    }
    if on(state(&h.evmcs)) {
        let cpu_features = spec.domain.cpu.as_ref().and_then(|c| c.features.as_ref());
        match cpu_features {
            None => c.push(
                REQUIRED,
                format!("{root}.domain.cpu.features"),
                "vmx cpu feature is required when evmcs is set",
            ),
            Some(list) => {
                if let Some((i, _)) = list
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.name == "vmx" && f.policy.as_deref() != Some("require"))
                {
                    c.push(
                        INVALID,
                        format!("{root}.domain.cpu.features[{i}].policy"),
                        "vmx cpu feature has to be set to require policy",
                    );
                }
            }
        }
    }
}

/// Storage features behind gates or cluster settings.
pub(super) fn gated_storage(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let d = &spec.domain.devices;
    if d.disks
        .iter()
        .flatten()
        .any(|x| x.lun.as_ref().is_some_and(|l| l.reservation == Some(true)))
        && !config.persistent_reservation()
    {
        c.push(
            INVALID,
            format!("{root}.domain.devices.disks.luns.reservation"),
            "persistent reservation is not enabled in kubevirt config",
        );
    }
    let pvc_backed = |name: &str| {
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name == name && (v.persistent_volume_claim.is_some() || v.data_volume.is_some()))
    };
    if d.filesystems.iter().flatten().any(|f| pvc_backed(&f.name))
        && !config.gate("EnableVirtioFsStorageVolumes")
    {
        c.push(
            INVALID,
            format!("{root}.domain.devices.filesystems"),
            "virtiofs is not allowed: virtiofs feature gate is not enabled for PVC",
        );
    }
}

/// Architecture rules that hold for templates too: threads with dedicated CPUs on arm64, panic devices on s390x.
fn arch_spec_rules(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let arch = spec
        .architecture
        .clone()
        .unwrap_or_else(|| config.default_architecture());
    let cpu = spec.domain.cpu.as_ref();
    if arch == "arm64"
        && cpu.is_some_and(|c| c.dedicated_cpu_placement == Some(true))
        && let Some(t) = cpu.and_then(|c| c.threads).filter(|t| *t > 1)
    {
        c.push(
            INVALID,
            format!("{root}.architecture"),
            format!("threads must not be greater than 1 at {root}.domain.cpu.threads (got {t}) when {root}.architecture is arm64"),
        );
    }
    if arch == "s390x"
        && spec
            .domain
            .devices
            .panic_devices
            .as_ref()
            .is_some_and(|p| !p.is_empty())
    {
        c.push(
            INVALID,
            format!("{root}.domain.devices.panicDevices"),
            "custom panic devices are not supported on s390x architecture",
        );
    }
}

fn video_rule(root: &str, spec: &VirtualMachineInstanceSpec, arch: &str, allowed: &[&str], c: &mut Causes) {
    // A video device without a type is refused too (upstream does not default it).
    if let Some(v) = spec.domain.devices.video.as_ref() {
        let t = v.r#type.as_deref().unwrap_or_default();
        if !allowed.contains(&t) {
            c.push(
                NOT_SUPPORTED,
                format!("{root}.domain.devices.video.type"),
                format!("video model '{t}' is not supported on {arch} architecture"),
            );
        }
    }
}

/// Architecture-specific device rules (VMI create only).
pub(super) fn per_arch(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let arch = spec
        .architecture
        .clone()
        .unwrap_or_else(|| config.default_architecture());
    let d = &spec.domain.devices;
    let watchdog = d.watchdog.as_ref();
    match arch.as_str() {
        "amd64" => {
            if watchdog.is_some_and(|w| w.i6300esb.is_none() || w.diag288.is_some()) {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.watchdog"),
                    "amd64 only supports I6300ESB watchdog device",
                );
            }
            video_rule(
                root,
                spec,
                "amd64",
                &["vga", "cirrus", "virtio", "ramfb", "bochs"],
                c,
            );
        }
        "arm64" => {
            if spec
                .domain
                .firmware
                .as_ref()
                .and_then(|f| f.bootloader.as_ref())
                .is_some_and(|b| b.bios.is_some())
            {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.firmware.bootloader.bios"),
                    "Arm64 does not support bios boot, please change to uefi boot",
                );
            }
            if spec
                .domain
                .cpu
                .as_ref()
                .and_then(|c| c.model.as_deref())
                .is_some_and(|m| !m.is_empty() && m != "host-passthrough")
            {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.cpu.model"),
                    "currently, host-passthrough is the only model supported on Arm64",
                );
            }
            for (i, disk) in d.disks.iter().flatten().enumerate() {
                let buses = [
                    ("disk", disk.disk.as_ref().and_then(|x| x.bus.as_deref())),
                    ("cdrom", disk.cdrom.as_ref().and_then(|x| x.bus.as_deref())),
                    ("lun", disk.lun.as_ref().and_then(|x| x.bus.as_deref())),
                ];
                for (what, bus) in buses {
                    if bus.is_some_and(|b| !matches!(b, "" | "virtio" | "scsi")) {
                        c.push(
                            NOT_SUPPORTED,
                            format!("{root}.domain.devices.disks[{i}].{what}.bus"),
                            "Arm64 not support this disk bus type, please use virtio or scsi",
                        );
                    }
                }
            }
            if watchdog.is_some() {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.watchdog"),
                    "Arm64 not support Watchdog device",
                );
            }
            if d.sound.is_some() {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.sound"),
                    "Arm64 not support sound device",
                );
            }
            video_rule(root, spec, "arm64", &["virtio", "ramfb"], c);
        }
        "s390x" => {
            if watchdog.is_some_and(|w| w.diag288.is_none() || w.i6300esb.is_some()) {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.watchdog"),
                    "s390x only supports Diag288 watchdog device",
                );
            }
            video_rule(root, spec, "s390x", &["virtio"], c);
        }
        other => c.push(
            INVALID,
            format!("{root}.architecture"),
            format!("unsupported architecture: {other}"),
        ),
    }
}

/// `launchSecurity`: s390x (Secure Execution) takes it as it is; amd64 needs exactly one of SEV, SNP or TDX with
/// its gate, OVMF, and what each technology cannot work with; other architectures have none.
fn launch_security(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let Some(ls) = spec.domain.launch_security.as_ref() else {
        return;
    };
    let at = format!("{root}.launchSecurity");
    let arch = spec
        .architecture
        .clone()
        .unwrap_or_else(|| config.default_architecture());
    match arch.as_str() {
        "s390x" => return,
        "amd64" => {}
        other => {
            c.push(
                INVALID,
                format!("{root}.architecture"),
                format!("No launchSecurity support for architecture: {other}"),
            );
            return;
        }
    }
    if super::count(&[ls.sev.is_some(), ls.snp.is_some(), ls.tdx.is_some()]) != 1 {
        c.push(FORBIDDEN, at, "One and only one launchSecurity type can be set");
        return;
    }
    let (kind, gate) = if ls.tdx.is_some() {
        ("TDX", "WorkloadEncryptionTDX")
    } else if ls.snp.is_some() {
        ("SNP", "WorkloadEncryptionSEV")
    } else {
        ("SEV", "WorkloadEncryptionSEV")
    };
    if !config.gate(gate) {
        c.push(
            INVALID,
            at,
            format!("{gate} feature gate is not enabled in kubevirt-config"),
        );
        return;
    }
    let smm_on = spec
        .domain
        .features
        .as_ref()
        .and_then(|f| f.smm.as_ref())
        .is_some_and(|s| s.enabled != Some(false));
    if kind == "TDX" && smm_on {
        c.push(INVALID, &at, "TDX does not work along with SMM");
    }
    let efi = spec
        .domain
        .firmware
        .as_ref()
        .and_then(|f| f.bootloader.as_ref())
        .and_then(|b| b.efi.as_ref());
    match efi {
        None => c.push(INVALID, &at, format!("{kind} requires OVMF (UEFI)")),
        Some(e) => {
            if kind != "TDX" && e.secure_boot != Some(false) {
                c.push(
                    INVALID,
                    &at,
                    format!("{kind} does not work along with SecureBoot"),
                );
            }
            if kind != "SEV" && e.persistent == Some(true) {
                c.push(
                    INVALID,
                    &at,
                    format!("{kind} does not work along with Persistent EFI variables"),
                );
            }
        }
    }
    if ls.sev.as_ref().is_some_and(|s| s.attestation.is_some())
        && spec.start_strategy.as_deref() != Some("Paused")
    {
        c.push(
            INVALID,
            &at,
            "SEV attestation requires VMI StartStrategy 'Paused'",
        );
    }
    for i in spec.domain.devices.interfaces.iter().flatten() {
        if i.boot_order.is_some() {
            c.push(
                INVALID,
                &at,
                format!("{kind} does not work with bootable NICs: {}", i.name),
            );
        }
    }
}
