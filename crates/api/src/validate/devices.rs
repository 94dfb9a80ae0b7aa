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
    if let Some(ls) = spec.domain.launch_security.as_ref() {
        let n = super::count(&[ls.sev.is_some(), ls.snp.is_some(), ls.tdx.is_some()]);
        if n != 1 {
            c.push(
                FORBIDDEN,
                format!("{root}.launchSecurity"),
                "One and only one launchSecurity type can be set",
            );
        } else if (ls.sev.is_some() || ls.snp.is_some()) && !config.gate("WorkloadEncryptionSEV") {
            c.push(
                INVALID,
                format!("{root}.launchSecurity"),
                "WorkloadEncryptionSEV feature gate is not enabled in kubevirt-config",
            );
        } else if ls.tdx.is_some() && !config.gate("WorkloadEncryptionTDX") {
            c.push(
                INVALID,
                format!("{root}.launchSecurity"),
                "WorkloadEncryptionTDX feature gate is not enabled in kubevirt-config",
            );
        }
    }
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
    if let Some(ls) = spec.domain.launch_security.as_ref() {
        let efi = spec
            .domain
            .firmware
            .as_ref()
            .and_then(|f| f.bootloader.as_ref())
            .and_then(|b| b.efi.as_ref());
        let kind = if ls.tdx.is_some() {
            "TDX"
        } else if ls.snp.is_some() {
            "SEV-SNP"
        } else {
            "SEV"
        };
        match efi {
            None => c.push(
                INVALID,
                format!("{root}.launchSecurity"),
                format!("{kind} requires OVMF (UEFI)"),
            ),
            Some(e) if ls.tdx.is_none() && e.secure_boot != Some(false) => {
                c.push(
                    INVALID,
                    format!("{root}.launchSecurity"),
                    format!("{kind} does not work along with SecureBoot"),
                );
            }
            Some(_) => {}
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
    let video = d.video.as_ref().and_then(|v| v.r#type.as_deref());
    match arch.as_str() {
        "amd64" => {
            if d.watchdog.as_ref().is_some_and(|w| w.i6300esb.is_none()) {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.watchdog"),
                    "amd64 only supports I6300ESB watchdog device",
                );
            }
            if let Some(v) = video.filter(|v| !matches!(*v, "vga" | "cirrus" | "virtio" | "ramfb" | "bochs"))
            {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.video.type"),
                    format!("video model '{v}' is not supported on amd64 architecture"),
                );
            }
        }
        "arm64" => {
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
            if d.watchdog.is_some() {
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
        }
        "s390x" => {
            if d.watchdog.as_ref().is_some_and(|w| w.diag288.is_none()) {
                c.push(
                    NOT_SUPPORTED,
                    format!("{root}.domain.devices.watchdog"),
                    "s390x only supports Diag288 watchdog device",
                );
            }
        }
        other => c.push(
            INVALID,
            format!("{root}.architecture"),
            format!("unsupported architecture: {other}"),
        ),
    }
}

/// Affinity and topology spread, checked as for pods (upstream roots affinity errors at `spec`, not `spec.affinity`).
pub(super) fn scheduling(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    if let Some(na) = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
        if let Some(req) = na.required_during_scheduling_ignored_during_execution.as_ref()
            && req.node_selector_terms.is_empty()
        {
            let f = format!(
                "{root}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            );
            c.push(
                INVALID,
                &f,
                format!("{f}: Required value: must have at least one node selector term"),
            );
        }
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            if !(1..=100).contains(&t.weight) {
                let f = format!(
                    "{root}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].weight"
                );
                c.push(
                    INVALID,
                    &f,
                    format!("{f}: Invalid value: {}: must be in the range 1-100", t.weight),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in spec.topology_spread_constraints.iter().flatten().enumerate() {
        let f = format!("{root}.topologySpreadConstraints[{i}]");
        if t.max_skew <= 0 {
            c.push(
                INVALID,
                format!("{f}.maxSkew"),
                format!(
                    "{f}.maxSkew: Invalid value: {}: must be greater than zero",
                    t.max_skew
                ),
            );
        }
        if t.topology_key.is_empty() {
            c.push(
                INVALID,
                format!("{f}.topologyKey"),
                format!("{f}.topologyKey: Required value: can not be empty"),
            );
        }
        if !matches!(t.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
            c.push(INVALID, format!("{f}.whenUnsatisfiable"), format!("{f}.whenUnsatisfiable: Unsupported value: {:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\"", t.when_unsatisfiable));
        }
        if !seen.insert((t.topology_key.clone(), t.when_unsatisfiable.clone())) {
            c.push(
                INVALID,
                f.to_string(),
                format!(
                    "{f}: Duplicate value: {{{:?}, {:?}}}",
                    t.topology_key, t.when_unsatisfiable
                ),
            );
        }
    }
}
