//! Applying an instancetype (sizing that must not conflict) and a preference (defaults that only fill gaps) to a
//! VMI spec, as upstream's VM webhook (on a copy, to find conflicts) and VM controller (for real) do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;
use crate::v1::{Bootloader, Disk, EFI, Firmware, Input, VirtualMachineInstanceSpec};
use crate::v1beta1::{VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec};

/// A field the VM sets that the instancetype also owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Full path, such as `spec.template.spec.domain.cpu.sockets`.
    pub path: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VM field(s) {} conflicts with selected instance type",
            self.path
        )
    }
}

/// Applies `instancetype` then (when there were no conflicts) `preference` to `spec`.
///
/// `base` prefixes conflict paths (`spec.template.spec` in the webhook, `spec` in the controller); `annotations`
/// are the VMI's annotations, which receive the instancetype's and preference's own.
///
/// # Errors
/// Every conflicting field; nothing of the preference is applied then.
pub fn apply(
    base: &str,
    spec: &mut VirtualMachineInstanceSpec,
    annotations: &mut BTreeMap<String, String>,
    instancetype: Option<&VirtualMachineInstancetypeSpec>,
    preference: Option<&VirtualMachinePreferenceSpec>,
) -> Result<(), Vec<Conflict>> {
    let mut conflicts = Vec::new();
    if let Some(it) = instancetype {
        apply_instancetype(base, spec, annotations, it, preference, &mut conflicts);
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    if let Some(p) = preference {
        apply_preference(spec, annotations, p);
    }
    Ok(())
}

fn has_key(m: Option<&BTreeMap<String, Quantity>>, k: &str) -> bool {
    m.is_some_and(|m| m.contains_key(k))
}

fn apply_instancetype(
    base: &str,
    spec: &mut VirtualMachineInstanceSpec,
    annotations: &mut BTreeMap<String, String>,
    it: &VirtualMachineInstancetypeSpec,
    pref: Option<&VirtualMachinePreferenceSpec>,
    conflicts: &mut Vec<Conflict>,
) {
    let mut conflict = |p: &str| {
        conflicts.push(Conflict {
            path: format!("{base}.{p}"),
        })
    };
    if let Some(ns) = it.node_selector.as_ref() {
        if spec.node_selector.is_some() {
            conflict("nodeSelector");
        } else {
            spec.node_selector = Some(ns.clone());
        }
    }
    if let Some(s) = it.scheduler_name.as_ref() {
        if spec.scheduler_name.as_deref().is_some_and(|x| !x.is_empty()) {
            conflict("schedulerName");
        } else {
            spec.scheduler_name = Some(s.clone());
        }
    }
    let domain = &mut spec.domain;
    let res = domain.resources.clone().unwrap_or_default();
    // CPU: every conflict is listed; nothing is applied if there is one.
    let cpu = domain.cpu.get_or_insert_with(Default::default);
    let before = conflicts_len(&res, cpu, it);
    for p in before {
        conflict(p);
    }
    if conflicts_len(&res, cpu, it).is_empty() {
        if it.cpu.model.is_some() {
            cpu.model.clone_from(&it.cpu.model);
        }
        if it.cpu.dedicated_cpu_placement.is_some() {
            cpu.dedicated_cpu_placement = it.cpu.dedicated_cpu_placement;
        }
        if it.cpu.isolate_emulator_thread.is_some() {
            cpu.isolate_emulator_thread = it.cpu.isolate_emulator_thread;
        }
        if it.cpu.numa.is_some() {
            cpu.numa.clone_from(&it.cpu.numa);
        }
        if it.cpu.realtime.is_some() {
            cpu.realtime.clone_from(&it.cpu.realtime);
        }
        if it.cpu.max_sockets.is_some() {
            cpu.max_sockets = it.cpu.max_sockets;
        }
        let (s, c, t) = topology(it.cpu.guest, pref);
        cpu.sockets = Some(s);
        cpu.cores = Some(c);
        cpu.threads = Some(t);
    }
    // Memory: first conflict only.
    let memory = domain.memory.get_or_insert_with(Default::default);
    let mem_conflict = if memory.guest.is_some() {
        Some("domain.memory.guest")
    } else if memory.hugepages.is_some() && it.memory.hugepages.is_some() {
        Some("domain.memory.hugepages")
    } else if memory.max_guest.is_some() && it.memory.max_guest.is_some() {
        Some("domain.memory.maxGuest")
    } else if has_key(res.requests.as_ref(), "memory") {
        Some("domain.resources.requests.memory")
    } else if has_key(res.limits.as_ref(), "memory") {
        Some("domain.resources.limits.memory")
    } else {
        None
    };
    if let Some(p) = mem_conflict {
        conflict(p);
    } else {
        memory.guest = Some(it.memory.guest.clone());
        if it.memory.hugepages.is_some() {
            memory.hugepages.clone_from(&it.memory.hugepages);
        }
        if it.memory.max_guest.is_some() {
            memory.max_guest.clone_from(&it.memory.max_guest);
        }
        if let (Some(pct), Ok(g)) = (
            it.memory.overcommit_percent.filter(|p| *p > 0),
            quantity::parse(&it.memory.guest.0),
        ) {
            let bytes = g.value() * i128::from(100 - pct) / 100;
            // Keep the guest's format: a binary-suffixed guest gives a binary-suffixed request.
            let text = if it.memory.guest.0.ends_with('i') {
                super::vmi::binary_si(bytes)
            } else {
                bytes.to_string()
            };
            domain
                .resources
                .get_or_insert_with(Default::default)
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert("memory".into(), Quantity(text));
        }
    }
    if let Some(n) = it.io_threads.as_ref() {
        if domain.io_threads.is_some() {
            conflict("domain.ioThreads.supplementalPoolThreadCount");
        } else {
            domain.io_threads = Some(n.clone());
        }
    }
    if let Some(p) = it.io_threads_policy.as_ref() {
        if domain.io_threads_policy.is_some() {
            conflict("domain.ioThreadsPolicy");
        } else {
            domain.io_threads_policy = Some(p.clone());
        }
    }
    if let Some(ls) = it.launch_security.as_ref() {
        if domain.launch_security.is_some() {
            conflict("domain.launchSecurity");
        } else {
            domain.launch_security = Some(ls.clone());
        }
    }
    if let Some(g) = it.gpus.as_ref() {
        if domain.devices.gpus.as_ref().is_some_and(|x| !x.is_empty()) {
            conflict("domain.devices.gpus");
        } else {
            domain.devices.gpus = Some(g.clone());
        }
    }
    if let Some(h) = it.host_devices.as_ref() {
        if domain
            .devices
            .host_devices
            .as_ref()
            .is_some_and(|x| !x.is_empty())
        {
            conflict("domain.devices.hostDevices");
        } else {
            domain.devices.host_devices = Some(h.clone());
        }
    }
    for (k, v) in it.annotations.iter().flatten() {
        match annotations.get(k) {
            Some(existing) if existing != v => conflicts.push(Conflict {
                path: format!("annotations.{k}"),
            }),
            Some(_) => {}
            None => {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
}

fn conflicts_len(
    res: &crate::v1::ResourceRequirements,
    cpu: &crate::v1::CPU,
    it: &VirtualMachineInstancetypeSpec,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if has_key(res.requests.as_ref(), "cpu") {
        out.push("domain.resources.requests.cpu");
    }
    if has_key(res.limits.as_ref(), "cpu") {
        out.push("domain.resources.limits.cpu");
    }
    if cpu.sockets.unwrap_or(0) != 0 {
        out.push("domain.cpu.sockets");
    }
    if cpu.cores.unwrap_or(0) != 0 {
        out.push("domain.cpu.cores");
    }
    if cpu.threads.unwrap_or(0) != 0 {
        out.push("domain.cpu.threads");
    }
    if cpu.model.as_deref().is_some_and(|m| !m.is_empty()) && it.cpu.model.is_some() {
        out.push("domain.cpu.model");
    }
    if cpu.dedicated_cpu_placement == Some(true) && it.cpu.dedicated_cpu_placement.is_some() {
        out.push("domain.cpu.dedicatedCPUPlacement");
    }
    if cpu.isolate_emulator_thread == Some(true) && it.cpu.isolate_emulator_thread.is_some() {
        out.push("domain.cpu.isolateEmulatorThread");
    }
    if cpu.numa.is_some() && it.cpu.numa.is_some() {
        out.push("domain.cpu.numa");
    }
    if cpu.realtime.is_some() && it.cpu.realtime.is_some() {
        out.push("domain.cpu.realtime");
    }
    out
}

/// (sockets, cores, threads) for `guest` vCPUs under the preference's preferred topology (sockets by default).
#[must_use]
pub fn topology(guest: i64, pref: Option<&VirtualMachinePreferenceSpec>) -> (i64, i64, i64) {
    let n = guest.max(1);
    if n == 1 {
        return (1, 1, 1);
    }
    let cpu = pref.and_then(|p| p.cpu.as_ref());
    let preferred = cpu
        .and_then(|c| c.preferred_cpu_topology.as_deref())
        .unwrap_or("sockets");
    match preferred {
        "cores" | "preferCores" => (1, n, 1),
        "threads" | "preferThreads" => (1, 1, n),
        "spread" | "preferSpread" => {
            let spread = cpu.and_then(|c| c.spread_options.as_ref());
            let ratio = spread
                .and_then(|s| s.ratio)
                .or_else(|| {
                    pref.and_then(|p| p.prefer_spread_socket_to_core_ratio)
                        .filter(|r| *r != 0)
                })
                .unwrap_or(2)
                .max(1);
            match spread.and_then(|s| s.across.as_deref()).unwrap_or("SocketsCores") {
                "CoresThreads" => (1, n / ratio, ratio),
                "SocketsCoresThreads" => (n / 2 / ratio, ratio, 2),
                _ => (n / ratio, ratio, 1),
            }
        }
        _ => (n, 1, 1),
    }
}

fn fill<T: Clone>(slot: &mut Option<T>, pref: Option<&T>) {
    if slot.is_none()
        && let Some(p) = pref
    {
        *slot = Some(p.clone());
    }
}

fn fill_str(slot: &mut Option<String>, pref: Option<&String>) {
    if slot.as_deref().is_none_or(str::is_empty)
        && let Some(p) = pref
    {
        *slot = Some(p.clone());
    }
}

fn apply_preference(
    spec: &mut VirtualMachineInstanceSpec,
    annotations: &mut BTreeMap<String, String>,
    p: &VirtualMachinePreferenceSpec,
) {
    let domain = &mut spec.domain;
    if let Some(features) = p.cpu.as_ref().and_then(|c| c.preferred_cpu_features.as_ref()) {
        let cpu = domain.cpu.get_or_insert_with(Default::default);
        let list = cpu.features.get_or_insert_with(Vec::new);
        for f in features {
            if !list.iter().any(|x| x.name == f.name) {
                list.push(f.clone());
            }
        }
    }
    if let Some(d) = p.devices.as_ref() {
        let dev = &mut domain.devices;
        fill(
            &mut dev.use_virtio_transitional,
            d.preferred_use_virtio_transitional.as_ref(),
        );
        fill(&mut dev.block_multi_queue, d.preferred_block_multi_queue.as_ref());
        fill(
            &mut dev.network_interface_multiqueue,
            d.preferred_network_interface_multi_queue.as_ref(),
        );
        if d.preferred_disable_hotplug.is_some() {
            dev.disable_hotplug = d.preferred_disable_hotplug;
        }
        fill(&mut dev.rng, d.preferred_rng.as_ref());
        fill(&mut dev.tpm, d.preferred_tpm.as_ref());
        fill(
            &mut dev.autoattach_graphics_device,
            d.preferred_autoattach_graphics_device.as_ref(),
        );
        fill(
            &mut dev.autoattach_mem_balloon,
            d.preferred_autoattach_mem_balloon.as_ref(),
        );
        fill(
            &mut dev.autoattach_pod_interface,
            d.preferred_autoattach_pod_interface.as_ref(),
        );
        fill(
            &mut dev.autoattach_serial_console,
            d.preferred_autoattach_serial_console.as_ref(),
        );
        fill(
            &mut dev.autoattach_input_device,
            d.preferred_autoattach_input_device.as_ref(),
        );
        if let Some(sound) = dev.sound.as_mut() {
            fill_str(&mut sound.model, d.preferred_sound_model.as_ref());
        }
        if let Some(v) = d.preferred_video_type.as_ref() {
            fill_str(
                &mut dev.video.get_or_insert_with(Default::default).r#type,
                Some(v),
            );
        }
        for disk in dev.disks.iter_mut().flatten() {
            prefer_disk(disk, d);
        }
        for iface in dev.interfaces.iter_mut().flatten() {
            fill_str(&mut iface.model, d.preferred_interface_model.as_ref());
        }
        for input in dev.inputs.iter_mut().flatten() {
            prefer_input(input, d);
        }
    }
    if let Some(f) = p.features.as_ref() {
        let features = domain.features.get_or_insert_with(Default::default);
        if f.preferred_acpi.is_some() {
            features.acpi.clone_from(&f.preferred_acpi);
        }
        fill(&mut features.apic, f.preferred_apic.as_ref());
        fill(&mut features.kvm, f.preferred_kvm.as_ref());
        fill(&mut features.pvspinlock, f.preferred_pvspinlock.as_ref());
        fill(&mut features.smm, f.preferred_smm.as_ref());
        fill(&mut features.hyperv, f.preferred_hyperv.as_ref());
    }
    if let Some(f) = p.firmware.as_ref() {
        let fw = domain.firmware.get_or_insert_with(Firmware::default);
        let bl = fw.bootloader.get_or_insert_with(Bootloader::default);
        let neither = bl.bios.is_none() && bl.efi.is_none();
        if f.preferred_use_bios == Some(true) && neither {
            bl.bios = Some(Default::default());
        }
        if let (Some(bios), Some(serial)) = (bl.bios.as_mut(), f.preferred_use_bios_serial) {
            bios.use_serial.get_or_insert(serial);
        }
        if let Some(efi) = f.preferred_efi.as_ref() {
            if bl.bios.is_none() && bl.efi.is_none() {
                bl.efi = Some(efi.clone());
            }
        } else if f.preferred_use_efi == Some(true) && bl.bios.is_none() && bl.efi.is_none() {
            bl.efi = Some(EFI {
                secure_boot: f.preferred_use_secure_boot,
                ..EFI::default()
            });
        }
    }
    if let Some(m) = p.machine.as_ref().and_then(|m| m.preferred_machine_type.as_ref()) {
        fill_str(
            &mut domain.machine.get_or_insert_with(Default::default).r#type,
            Some(m),
        );
    }
    if let Some(c) = p.clock.as_ref() {
        let clock = domain.clock.get_or_insert_with(Default::default);
        if clock.utc.is_none()
            && clock.timezone.is_none()
            && let Some(off) = c.preferred_clock_offset.as_ref()
        {
            clock.utc.clone_from(&off.utc);
            clock.timezone.clone_from(&off.timezone);
        }
        fill(&mut clock.timer, c.preferred_timer.as_ref());
    }
    fill(&mut domain.launch_security, p.preferred_launch_security.as_ref());
    fill_str(&mut spec.subdomain, p.preferred_subdomain.as_ref());
    fill(
        &mut spec.termination_grace_period_seconds,
        p.preferred_termination_grace_period_seconds.as_ref(),
    );
    fill_str(&mut spec.architecture, p.preferred_architecture.as_ref());
    for (k, v) in p.annotations.iter().flatten() {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn prefer_disk(disk: &mut Disk, d: &crate::v1beta1::DevicePreferences) {
    if disk.disk.is_none() && disk.cdrom.is_none() && disk.lun.is_none() {
        disk.disk = Some(Default::default());
    }
    if let Some(t) = disk.disk.as_mut() {
        fill_str(&mut t.bus, d.preferred_disk_bus.as_ref());
        fill(&mut disk.block_size, d.preferred_disk_block_size.as_ref());
        fill_str(&mut disk.cache, d.preferred_disk_cache.as_ref());
        fill_str(&mut disk.io, d.preferred_disk_io.as_ref());
        if t.bus.as_deref() == Some("virtio") {
            fill(
                &mut disk.dedicated_io_thread,
                d.preferred_disk_dedicated_io_thread.as_ref(),
            );
        }
    }
    if let Some(c) = disk.cdrom.as_mut() {
        fill_str(&mut c.bus, d.preferred_cdrom_bus.as_ref());
    }
    if let Some(l) = disk.lun.as_mut() {
        fill_str(&mut l.bus, d.preferred_lun_bus.as_ref());
    }
}

fn prefer_input(input: &mut Input, d: &crate::v1beta1::DevicePreferences) {
    fill_str(&mut input.bus, d.preferred_input_bus.as_ref());
    if input.r#type.is_empty()
        && let Some(t) = d.preferred_input_type.as_ref()
    {
        input.r#type.clone_from(t);
    }
}
