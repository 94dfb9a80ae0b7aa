//! Configurators for the machine, vCPUs, memory, platform features, clock and firmware.

use kubevirt_api::quantity;
use kubevirt_api::v1::FeatureState;

use crate::model::{Accel, ClockBase, Domain, FirmwareKind, KernelBoot};
use crate::{Ctx, DomainError};

fn enabled(f: Option<&FeatureState>) -> Option<bool> {
    f.map(|s| s.enabled.unwrap_or(true))
}

/// Machine type: upstream's `q35` family only (amd64).
pub(crate) fn machine(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let spec = &i.vmi.spec;
    if let Some(arch) = spec.architecture.as_deref().filter(|a| *a != "amd64") {
        return Err(DomainError::unsupported(
            "spec.architecture",
            format!("{arch:?}: this launcher runs amd64 guests"),
        ));
    }
    if let Some(t) = spec.domain.machine.as_ref().and_then(|m| m.r#type.as_deref()) {
        if !(t == "q35" || t.starts_with("pc-q35")) {
            return Err(DomainError::unsupported(
                "spec.domain.machine.type",
                format!("{t:?}: only q35 machines are supported"),
            ));
        }
        d.machine = t.to_string();
    }
    Ok(())
}

/// Topology and model. `host-model`/`host-passthrough` become `host` under KVM and `max` (every feature TCG
/// emulates) under TCG, where the host CPU cannot be passed through.
pub(crate) fn cpu(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let cpu = i.vmi.spec.domain.cpu.as_ref();
    let count = |v: Option<i64>, field: &str| -> Result<u32, DomainError> {
        match v {
            None => Ok(1),
            Some(n) if (1..=512).contains(&n) => {
                u32::try_from(n).map_err(|_| DomainError::invalid(field, "too large"))
            }
            Some(n) => Err(DomainError::invalid(
                field,
                format!("{n} is not between 1 and 512"),
            )),
        }
    };
    d.cpu.sockets = count(cpu.and_then(|c| c.sockets), "spec.domain.cpu.sockets")?;
    d.cpu.cores = count(cpu.and_then(|c| c.cores), "spec.domain.cpu.cores")?;
    d.cpu.threads = count(cpu.and_then(|c| c.threads), "spec.domain.cpu.threads")?;
    d.cpu.max_sockets =
        count(cpu.and_then(|c| c.max_sockets), "spec.domain.cpu.maxSockets")?.max(d.cpu.sockets);
    let model = cpu.and_then(|c| c.model.as_deref()).unwrap_or("host-model");
    d.cpu.model = match (model, d.accel) {
        ("host-model" | "host-passthrough", Accel::Kvm) => "host".into(),
        ("host-model" | "host-passthrough", Accel::Tcg) => "max".into(),
        (named, _) => named.to_string(),
    };
    for (idx, f) in cpu
        .and_then(|c| c.features.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let on = match f.policy.as_deref().unwrap_or("require") {
            "require" | "force" | "optional" => true,
            "disable" | "forbid" => false,
            other => {
                return Err(DomainError::invalid(
                    format!("spec.domain.cpu.features[{idx}].policy"),
                    format!("{other:?} is not one of force, require, optional, disable, forbid"),
                ));
            }
        };
        d.cpu.features.push((f.name.clone(), on));
    }
    Ok(())
}

/// Guest memory: `memory.guest`, else the memory request, else the limit.
pub(crate) fn memory(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let spec = &i.vmi.spec.domain;
    let res = spec.resources.as_ref();
    let candidates = [
        (
            "spec.domain.memory.guest",
            spec.memory.as_ref().and_then(|m| m.guest.as_ref()),
        ),
        (
            "spec.domain.resources.requests.memory",
            res.and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory")),
        ),
        (
            "spec.domain.resources.limits.memory",
            res.and_then(|r| r.limits.as_ref()).and_then(|r| r.get("memory")),
        ),
    ];
    let Some((field, q)) = candidates.into_iter().find_map(|(f, q)| q.map(|q| (f, q))) else {
        return Err(DomainError::invalid(
            "spec.domain.memory.guest",
            "no guest memory: set memory.guest or resources.requests.memory",
        ));
    };
    let mib = |field: &str, q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        let bytes = quantity::parse(&q.0)
            .map_err(|e| DomainError::invalid(field, e.to_string()))?
            .value();
        let mib = (bytes + (1 << 20) - 1) >> 20;
        if mib < 1 {
            return Err(DomainError::invalid(field, format!("{} is less than 1Mi", q.0)));
        }
        u64::try_from(mib).map_err(|_| DomainError::invalid(field, "too large"))
    };
    d.memory_mib = mib(field, q)?;
    if let Some(max) = spec.memory.as_ref().and_then(|m| m.max_guest.as_ref()) {
        let max = mib("spec.domain.memory.maxGuest", max)?;
        if max < d.memory_mib {
            return Err(DomainError::invalid(
                "spec.domain.memory.maxGuest",
                format!("{max}Mi is less than the guest memory ({}Mi)", d.memory_mib),
            ));
        }
        d.max_memory_mib = Some(max).filter(|m| *m > d.memory_mib);
    }
    Ok(())
}

/// ACPI, SMM, Hyper-V enlightenments, KVM hiding.
pub(crate) fn features(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let Some(f) = i.vmi.spec.domain.features.as_ref() else {
        return Ok(());
    };
    if let Some(acpi) = enabled(f.acpi.as_ref()) {
        d.features.acpi = acpi;
    }
    if f.apic.as_ref().and_then(|a| a.enabled) == Some(false) {
        return Err(DomainError::unsupported(
            "spec.domain.features.apic.enabled",
            "x86 guests always have an APIC",
        ));
    }
    d.features.smm = enabled(f.smm.as_ref()).unwrap_or(false);
    d.features.kvm_hidden = f.kvm.as_ref().and_then(|k| k.hidden).unwrap_or(false);
    if let Some(hv) = f.hyperv.as_ref() {
        let flags = [
            ("hv-relaxed", enabled(hv.relaxed.as_ref())),
            ("hv-vapic", enabled(hv.vapic.as_ref())),
            ("hv-vpindex", enabled(hv.vpindex.as_ref())),
            ("hv-runtime", enabled(hv.runtime.as_ref())),
            ("hv-synic", enabled(hv.synic.as_ref())),
            (
                "hv-stimer",
                hv.synictimer.as_ref().map(|s| s.enabled.unwrap_or(true)),
            ),
            ("hv-reset", enabled(hv.reset.as_ref())),
            ("hv-frequencies", enabled(hv.frequencies.as_ref())),
            ("hv-reenlightenment", enabled(hv.reenlightenment.as_ref())),
            (
                "hv-tlbflush",
                hv.tlbflush.as_ref().map(|s| s.enabled.unwrap_or(true)),
            ),
            ("hv-ipi", enabled(hv.ipi.as_ref())),
            ("hv-evmcs", enabled(hv.evmcs.as_ref())),
        ];
        for (flag, on) in flags {
            if on == Some(true) {
                d.features.hyperv.push(flag.to_string());
            }
        }
        if let Some(s) = hv.spinlocks.as_ref().filter(|s| s.enabled.unwrap_or(true)) {
            let n = s.spinlocks.unwrap_or(4096);
            d.features.hyperv.push(format!("hv-spinlocks=0x{n:x}"));
        }
        if let Some(v) = hv.vendorid.as_ref().filter(|v| v.enabled.unwrap_or(true)) {
            d.features.hyperv.push(format!(
                "hv-vendor-id={}",
                v.vendorid.as_deref().unwrap_or("KubeVirt")
            ));
        }
    }
    Ok(())
}

/// RTC base (UTC with offset or a timezone) and timers.
pub(crate) fn clock(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let Some(c) = i.vmi.spec.domain.clock.as_ref() else {
        return Ok(());
    };
    if let Some(tz) = c.timezone.as_deref() {
        if tz.is_empty() || tz.contains("..") || tz.starts_with('/') {
            return Err(DomainError::invalid(
                "spec.domain.clock.timezone",
                format!("{tz:?} is not a zone name"),
            ));
        }
        d.clock.base = ClockBase::Timezone(tz.to_string());
    } else if let Some(utc) = c.utc.as_ref() {
        d.clock.base = ClockBase::Utc {
            offset_seconds: i64::from(utc.offset_seconds.unwrap_or(0)),
        };
    }
    if let Some(t) = c.timer.as_ref() {
        if let Some(h) = t.hpet.as_ref() {
            d.clock.hpet = Some(h.present.unwrap_or(true));
        }
        if let Some(rtc) = t.rtc.as_ref() {
            d.clock.rtc_catchup = rtc.tick_policy.as_deref() == Some("catchup");
        }
        if let Some(pit) = t.pit.as_ref() {
            d.clock.pit_tick_policy = pit.tick_policy.clone();
        }
        if t.hyperv.as_ref().is_some_and(|h| h.present.unwrap_or(true)) {
            d.features.hyperv.push("hv-time".into());
        }
    }
    Ok(())
}

/// BIOS/EFI, direct kernel boot, SMBIOS identity.
pub(crate) fn firmware(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let fw = i.vmi.spec.domain.firmware.as_ref();
    d.uuid = match fw.and_then(|f| f.uuid.as_deref()) {
        Some(u) => uuid::Uuid::parse_str(u)
            .map_err(|e| DomainError::invalid("spec.domain.firmware.uuid", e.to_string()))?
            .to_string(),
        None => i.vmi.metadata.uid.clone().ok_or_else(|| {
            DomainError::invalid("spec.domain.firmware.uuid", "no firmware UUID and no uid")
        })?,
    };
    d.smbios.serial = fw.and_then(|f| f.serial.clone());
    if let Some(ch) = i.vmi.spec.domain.chassis.as_ref() {
        for (k, v) in [
            ("manufacturer", &ch.manufacturer),
            ("version", &ch.version),
            ("serial", &ch.serial),
            ("asset", &ch.asset),
            ("sku", &ch.sku),
        ] {
            if let Some(v) = v {
                d.smbios.chassis.push((k.to_string(), v.clone()));
            }
        }
    }
    if fw.and_then(|f| f.acpi.as_ref()).is_some() {
        return Err(DomainError::unsupported(
            "spec.domain.firmware.acpi",
            "SLIC/MSDM tables are not supported",
        ));
    }
    let boot = fw.and_then(|f| f.bootloader.as_ref());
    if let Some(efi) = boot.and_then(|b| b.efi.as_ref()) {
        if efi.persistent == Some(true) {
            return Err(DomainError::unsupported(
                "spec.domain.firmware.bootloader.efi.persistent",
                "persistent EFI variables need a backend-storage PVC",
            ));
        }
        let secure = efi.secure_boot.unwrap_or(true);
        if secure && !d.features.smm {
            return Err(DomainError::invalid(
                "spec.domain.features.smm",
                "EFI secure boot requires SMM to be enabled",
            ));
        }
        let o = &i.facts.ovmf;
        d.firmware.kind = FirmwareKind::Efi {
            code: if secure {
                o.secure_code.clone()
            } else {
                o.code.clone()
            },
            vars_template: if secure {
                o.secure_vars.clone()
            } else {
                o.vars.clone()
            },
            vars: i.facts.runtime_dir.join("efi-vars.fd"),
            secure_boot: secure,
        };
    } else {
        d.firmware.kind = FirmwareKind::Bios {
            use_serial: boot
                .and_then(|b| b.bios.as_ref())
                .and_then(|b| b.use_serial)
                .unwrap_or(false),
        };
    }
    if let Some(kb) = fw.and_then(|f| f.kernel_boot.as_ref()) {
        let Some(c) = kb.container.as_ref() else {
            return Err(DomainError::invalid(
                "spec.domain.firmware.kernelBoot.container",
                "kernel boot needs a container with the kernel",
            ));
        };
        let Some(root) = i.facts.kernel_boot_root.as_ref() else {
            return Err(DomainError::invalid(
                "spec.domain.firmware.kernelBoot.container.image",
                format!("no local copy of {:?}", c.image),
            ));
        };
        let inside = |p: &str| root.join(p.trim_start_matches('/'));
        let Some(kernel) = c.kernel_path.as_deref() else {
            return Err(DomainError::invalid(
                "spec.domain.firmware.kernelBoot.container.kernelPath",
                "required for kernel boot",
            ));
        };
        d.firmware.kernel = Some(KernelBoot {
            kernel: inside(kernel),
            initrd: c.initrd_path.as_deref().map(inside),
            cmdline: kb.kernel_args.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::testing::{base, build};
    use crate::{Accel, ClockBase, DomainError, FirmwareKind};

    #[test]
    fn host_cpu_models_fall_back_to_max_under_tcg() {
        let mut spec = base();
        spec["domain"]["cpu"] =
            json!({"model": "host-passthrough", "sockets": 2, "cores": 2, "threads": 1, "maxSockets": 4});
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert_eq!(
            (d.cpu.model.as_str(), d.cpu.count(), d.cpu.max_sockets),
            ("max", 4, 4)
        );
        assert_eq!(build(spec.clone(), Accel::Kvm, &[]).unwrap().cpu.model, "host");
        spec["domain"]["cpu"] =
            json!({"model": "Skylake-Client", "features": [{"name": "vmx", "policy": "disable"}]});
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert_eq!(
            (d.cpu.model.as_str(), d.cpu.features.clone()),
            ("Skylake-Client", vec![("vmx".to_string(), false)])
        );
        spec["domain"]["cpu"] = json!({"cores": 0});
        assert!(
            matches!(build(spec, Accel::Tcg, &[]), Err(DomainError::Invalid { field, .. }) if field == "spec.domain.cpu.cores")
        );
    }

    #[test]
    fn memory_comes_from_guest_then_requests_and_is_required() {
        let d = build(base(), Accel::Tcg, &[]).unwrap();
        assert_eq!((d.memory_mib, d.max_memory_mib), (128, None));
        let spec = json!({"domain": {"devices": {}, "resources": {"requests": {"memory": "1G"}}}});
        assert_eq!(build(spec, Accel::Tcg, &[]).unwrap().memory_mib, 954);
        let spec = json!({"domain": {"devices": {}, "memory": {"guest": "1Gi", "maxGuest": "4Gi"}}});
        assert_eq!(build(spec, Accel::Tcg, &[]).unwrap().max_memory_mib, Some(4096));
        let err = build(json!({"domain": {"devices": {}}}), Accel::Tcg, &[]).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field, .. } if field == "spec.domain.memory.guest"));
    }

    #[test]
    fn features_and_clock() {
        let mut spec = base();
        spec["domain"]["features"] = json!({"acpi": {"enabled": false}, "smm": {}, "hyperv": {"relaxed": {}, "spinlocks": {"spinlocks": 8191}}});
        spec["domain"]["clock"] = json!({"timezone": "Europe/Paris", "timer": {"hpet": {"present": false}, "rtc": {"tickPolicy": "catchup"}}});
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert!(!d.features.acpi && d.features.smm);
        assert_eq!(d.features.hyperv, ["hv-relaxed", "hv-spinlocks=0x1fff"]);
        assert_eq!(d.clock.base, ClockBase::Timezone("Europe/Paris".into()));
        assert_eq!((d.clock.hpet, d.clock.rtc_catchup), (Some(false), true));
        spec["domain"]["clock"] = json!({"utc": {"offsetSeconds": 3600}});
        assert_eq!(
            build(spec.clone(), Accel::Tcg, &[]).unwrap().clock.base,
            ClockBase::Utc { offset_seconds: 3600 }
        );
        spec["domain"]["clock"] = json!({"timezone": "../etc/passwd"});
        assert!(build(spec, Accel::Tcg, &[]).is_err());
    }

    #[test]
    fn firmware_bios_efi_and_kernel_boot() {
        let mut spec = base();
        spec["domain"]["firmware"] = json!({"uuid": "5d307ca9-b3ef-428c-8861-06e72d69f223", "bootloader": {"bios": {"useSerial": true}}});
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert_eq!(d.uuid, "5d307ca9-b3ef-428c-8861-06e72d69f223");
        assert_eq!(d.firmware.kind, FirmwareKind::Bios { use_serial: true });
        // Secure boot (the default for EFI) needs SMM.
        spec["domain"]["firmware"] = json!({"bootloader": {"efi": {}}});
        let err = build(spec.clone(), Accel::Tcg, &[]).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field, .. } if field == "spec.domain.features.smm"));
        spec["domain"]["features"] = json!({"smm": {}});
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert!(
            matches!(&d.firmware.kind, FirmwareKind::Efi { secure_boot: true, code, vars, .. }
            if code.ends_with("OVMF_CODE_4M.secboot.fd") && vars.ends_with("efi-vars.fd"))
        );
        // Without a firmware UUID the VMI's uid is used.
        assert_eq!(d.uuid, "11111111-2222-4333-8444-555555555555");
        spec["domain"]["firmware"] = json!({"kernelBoot": {"kernelArgs": "console=ttyS0",
            "container": {"image": "k", "kernelPath": "/boot/vmlinuz", "initrdPath": "/boot/initrd"}}});
        let k = build(spec, Accel::Tcg, &[]).unwrap().firmware.kernel.unwrap();
        assert_eq!(k.kernel.to_str(), Some("/kb/boot/vmlinuz"));
        assert_eq!(k.initrd.unwrap().to_str(), Some("/kb/boot/initrd"));
    }

    #[test]
    fn only_q35_on_amd64() {
        let mut spec = base();
        spec["domain"]["machine"] = json!({"type": "pc-i440fx-9.0"});
        assert!(
            matches!(build(spec.clone(), Accel::Tcg, &[]), Err(DomainError::Unsupported { field, .. }) if field == "spec.domain.machine.type")
        );
        spec["domain"]["machine"] = json!({"type": "pc-q35-9.2"});
        assert_eq!(build(spec, Accel::Tcg, &[]).unwrap().machine, "pc-q35-9.2");
    }
}
