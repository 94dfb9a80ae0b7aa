//! VirtualMachineInstance defaults: what upstream's mutating webhook does to a VMI on create.
//!
//! Order (as upstream): architecture, machine type, CPU request, guest memory, CPU topology, containerDisk pull
//! policy, eviction strategy, default pod network, a disk per volume; then the API defaulters (firmware, features,
//! disk targets, inputs, probes, firmware uuid, timers, hyperv), hyperv dependencies, per-architecture buses and
//! watchdog, CPU model, seeded status, hotplug maxima, annotations, finalizer and the Pending phase.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{DefaultsError, Env};
use crate::config::ClusterConfig;
use crate::quantity;
use crate::v1::{
    CPUFeature, CPUTopology, Devices, Disk, DiskTarget, DomainSpec, FeatureState, Features, Firmware,
    Interface, InterfaceBridge, InterfaceMasquerade, Memory, MemoryStatus, Network, PodNetwork, Probe,
    VirtualMachineInstance, VirtualMachineInstancePhaseTransitionTimestamp, VirtualMachineInstanceSpec,
    VirtualMachineInstanceStatus,
};

/// Finalizer upstream puts on every VMI.
pub const VMI_FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";
/// Annotation recording the PCI topology layout the VMI was created with.
pub const PCI_TOPOLOGY_ANNOTATION: &str = "kubevirt.io/pci-topology-version";

/// Applies every create-time default to a VMI (spec, metadata and seeded status).
///
/// # Errors
/// [`DefaultsError`] when the cluster configuration forbids the default pod interface.
pub fn default_vmi(vmi: &mut VirtualMachineInstance, env: &mut Env<'_>) -> Result<(), DefaultsError> {
    default_spec(&mut vmi.spec, env.config)?;
    api_defaults(&mut vmi.spec, env);
    hyperv_dependencies(&mut vmi.spec.domain);
    arch_defaults(&mut vmi.spec, env.config);
    let status = vmi
        .status
        .get_or_insert_with(VirtualMachineInstanceStatus::default);
    if let Some(guest) = vmi.spec.domain.memory.as_ref().and_then(|m| m.guest.clone()) {
        status.memory = Some(MemoryStatus {
            guest_at_boot: Some(guest.clone()),
            guest_current: Some(guest.clone()),
            guest_requested: Some(guest),
            memory_overhead: None,
        });
    }
    if let (Some(cpu), None) = (vmi.spec.domain.cpu.as_ref(), status.current_cpu_topology.as_ref()) {
        status.current_cpu_topology = Some(CPUTopology {
            sockets: cpu.sockets,
            cores: cpu.cores,
            threads: cpu.threads,
        });
    }
    hotplug_maxima(&mut vmi.spec, env.config);
    if supports_pcie_hotplug(&vmi.spec) {
        vmi.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .entry(PCI_TOPOLOGY_ANNOTATION.to_string())
            .or_insert_with(|| "v3".to_string());
    }
    if !env.config.gate("Root") {
        status.runtime_user = Some(107);
    }
    vmi.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(VMI_FINALIZER.to_string());
    status.phase = Some("Pending".to_string());
    status
        .phase_transition_timestamps
        .get_or_insert_with(Vec::new)
        .push(VirtualMachineInstancePhaseTransitionTimestamp {
            phase: Some("Pending".to_string()),
            phase_transition_timestamp: Some(env.now.clone()),
        });
    Ok(())
}

/// The spec-level defaults shared with VMIs created from VM templates (upstream's `SetDefaultVirtualMachineInstanceSpec`).
///
/// # Errors
/// [`DefaultsError`] when the cluster configuration forbids the default pod interface.
pub fn default_spec(
    spec: &mut VirtualMachineInstanceSpec,
    config: &ClusterConfig,
) -> Result<(), DefaultsError> {
    let arch = spec
        .architecture
        .get_or_insert_with(|| config.default_architecture())
        .clone();
    let domain = &mut spec.domain;
    let machine = domain.machine.get_or_insert_with(Default::default);
    if machine.r#type.as_deref().is_none_or(str::is_empty) {
        machine.r#type = Some(config.machine_type(&arch));
    }
    default_cpu_request(domain, config);
    default_guest_memory(domain);
    default_cpu_topology(domain);
    for vol in spec.volumes.iter_mut().flatten() {
        if let Some(cd) = vol.container_disk.as_mut()
            && cd.image_pull_policy.as_deref().is_none_or(str::is_empty)
        {
            cd.image_pull_policy = Some(pull_policy_for(&cd.image).to_string());
        }
    }
    if spec.eviction_strategy.is_none() {
        spec.eviction_strategy = Some(config.eviction_strategy());
    }
    default_pod_network(spec, config)?;
    default_volume_disks(spec);
    Ok(())
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
#[must_use]
pub fn pull_policy_for(image: &str) -> &'static str {
    let tail = image.rsplit('/').next().unwrap_or(image);
    if image.ends_with(":latest") || (!tail.contains(':') && !image.contains('@')) {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn is_zero(q: Option<&Quantity>) -> bool {
    quantity::of(q).ok().flatten().is_none_or(|m| m.0 == 0)
}

fn default_cpu_request(domain: &mut DomainSpec, config: &ClusterConfig) {
    let res = domain.resources.get_or_insert_with(Default::default);
    let limit = res.limits.as_ref().and_then(|l| l.get("cpu")).cloned();
    let has_request = res.requests.as_ref().is_some_and(|r| r.contains_key("cpu"));
    if let Some(limit) = limit.filter(|l| !is_zero(Some(l))) {
        if is_zero(res.requests.as_ref().and_then(|r| r.get("cpu"))) {
            res.requests
                .get_or_insert_with(BTreeMap::new)
                .insert("cpu".into(), limit);
        }
    } else if let Some(req) = config.custom_cpu_request() {
        let dedicated = domain
            .cpu
            .as_ref()
            .and_then(|c| c.dedicated_cpu_placement)
            .unwrap_or(false);
        if !has_request && !dedicated {
            res.requests
                .get_or_insert_with(BTreeMap::new)
                .insert("cpu".into(), req.clone());
        }
    }
}

fn default_guest_memory(domain: &mut DomainSpec) {
    let res = domain.resources.clone().unwrap_or_default();
    let memory = domain.memory.get_or_insert_with(Memory::default);
    if memory.guest.is_some() {
        return;
    }
    let req = res
        .requests
        .as_ref()
        .and_then(|r| r.get("memory"))
        .filter(|q| !is_zero(Some(q)));
    let lim = res
        .limits
        .as_ref()
        .and_then(|r| r.get("memory"))
        .filter(|q| !is_zero(Some(q)));
    memory.guest = req.or(lim).cloned().or_else(|| {
        let page = memory.hugepages.as_ref()?.page_size.clone()?;
        quantity::parse(&page).ok().map(|_| Quantity(page))
    });
}

fn default_cpu_topology(domain: &mut DomainSpec) {
    let unset = domain.cpu.as_ref().is_none_or(|c| {
        c.sockets.unwrap_or(0) == 0 && c.cores.unwrap_or(0) == 0 && c.threads.unwrap_or(0) == 0
    });
    if !unset {
        return;
    }
    let res = domain.resources.clone().unwrap_or_default();
    let from = |m: Option<&BTreeMap<String, Quantity>>| {
        m.and_then(|m| m.get("cpu"))
            .map(|q| quantity::parse(&q.0).map(|v| v.value()).unwrap_or(1))
    };
    let sockets = from(res.limits.as_ref())
        .or_else(|| from(res.requests.as_ref()))
        .unwrap_or(1);
    let cpu = domain.cpu.get_or_insert_with(Default::default);
    cpu.cores = Some(1);
    cpu.threads = Some(1);
    cpu.sockets = Some(i64::try_from(sockets).unwrap_or(1).max(1));
}

fn default_pod_network(
    spec: &mut VirtualMachineInstanceSpec,
    config: &ClusterConfig,
) -> Result<(), DefaultsError> {
    let devices = &mut spec.domain.devices;
    if devices.autoattach_pod_interface == Some(false)
        || spec.networks.as_ref().is_some_and(|n| !n.is_empty())
        || devices.interfaces.as_ref().is_some_and(|i| !i.is_empty())
    {
        return Ok(());
    }
    let binding = config.default_network_interface();
    let mut iface = Interface {
        name: "default".into(),
        ..Interface::default()
    };
    match binding.as_str() {
        "bridge" => {
            if !config.permit_bridge_on_pod_network() {
                return Err(DefaultsError::BridgeNotPermitted);
            }
            iface.bridge = Some(InterfaceBridge {});
            devices.interfaces = Some(vec![iface]);
        }
        "masquerade" => {
            iface.masquerade = Some(InterfaceMasquerade {});
            devices.interfaces = Some(vec![iface]);
        }
        "slirp" => return Err(DefaultsError::SlirpDiscontinued),
        _ => {}
    }
    spec.networks = Some(vec![Network {
        name: "default".into(),
        pod: Some(PodNetwork::default()),
        ..Network::default()
    }]);
    Ok(())
}

/// Adds a `disk` device for every volume that no disk or filesystem names.
pub fn default_volume_disks(spec: &mut VirtualMachineInstanceSpec) {
    let devices = &mut spec.domain.devices;
    let mut used: std::collections::HashSet<String> = devices
        .disks
        .iter()
        .flatten()
        .map(|d| d.name.clone())
        .chain(devices.filesystems.iter().flatten().map(|f| f.name.clone()))
        .collect();
    for vol in spec.volumes.iter().flatten() {
        if used.insert(vol.name.clone()) {
            devices.disks.get_or_insert_with(Vec::new).push(Disk {
                name: vol.name.clone(),
                ..Disk::default()
            });
        }
    }
}

fn api_defaults(spec: &mut VirtualMachineInstanceSpec, env: &mut Env<'_>) {
    let domain = &mut spec.domain;
    let firmware = domain.firmware.get_or_insert_with(Firmware::default);
    if firmware.uuid.as_deref().is_none_or(str::is_empty) {
        firmware.uuid = Some((env.new_uuid)());
    }
    let features = domain.features.get_or_insert_with(Features::default);
    default_features(features);
    default_disk_targets(&mut domain.devices);
    for input in domain.devices.inputs.iter_mut().flatten() {
        if input.bus.as_deref().is_none_or(str::is_empty) {
            input.bus = Some("usb".into());
        }
        if input.r#type.is_empty() {
            input.r#type = "tablet".into();
        }
    }
    for gpu in domain.devices.gpus.iter_mut().flatten() {
        if let Some(fs) = gpu
            .virtual_gpu_options
            .as_mut()
            .and_then(|o| o.display.as_mut())
            .and_then(|d| d.ram_fb.as_mut())
        {
            fs.enabled.get_or_insert(true);
        }
    }
    if let Some(timer) = domain.clock.as_mut().and_then(|c| c.timer.as_mut()) {
        if let Some(t) = timer.hpet.as_mut() {
            t.present.get_or_insert(true);
        }
        if let Some(t) = timer.kvm.as_mut() {
            t.present.get_or_insert(true);
        }
        if let Some(t) = timer.pit.as_mut() {
            t.present.get_or_insert(true);
        }
        if let Some(t) = timer.rtc.as_mut() {
            t.present.get_or_insert(true);
        }
        if let Some(t) = timer.hyperv.as_mut() {
            t.present.get_or_insert(true);
        }
    }
    for probe in [spec.readiness_probe.as_mut(), spec.liveness_probe.as_mut()]
        .into_iter()
        .flatten()
    {
        default_probe(probe);
    }
}

fn enable(f: &mut Option<FeatureState>) {
    if let Some(f) = f.as_mut() {
        f.enabled.get_or_insert(true);
    }
}

fn default_features(features: &mut Features) {
    features
        .acpi
        .get_or_insert_with(FeatureState::default)
        .enabled
        .get_or_insert(true);
    if let Some(apic) = features.apic.as_mut() {
        apic.enabled.get_or_insert(true);
    }
    enable(&mut features.smm);
    enable(&mut features.pvspinlock);
    if let Some(h) = features.hyperv.as_mut() {
        for f in [
            &mut h.relaxed,
            &mut h.vapic,
            &mut h.vpindex,
            &mut h.runtime,
            &mut h.synic,
            &mut h.reset,
            &mut h.frequencies,
            &mut h.reenlightenment,
            &mut h.ipi,
            &mut h.evmcs,
        ] {
            enable(f);
        }
        if let Some(s) = h.spinlocks.as_mut() {
            let on = *s.enabled.get_or_insert(true);
            if on {
                s.spinlocks.get_or_insert(4096);
            }
        }
        if let Some(v) = h.vendorid.as_mut() {
            v.enabled.get_or_insert(true);
        }
        if let Some(t) = h.synictimer.as_mut() {
            t.enabled.get_or_insert(true);
            enable(&mut t.direct);
        }
        if let Some(t) = h.tlbflush.as_mut() {
            t.enabled.get_or_insert(true);
            enable(&mut t.direct);
            enable(&mut t.extended);
        }
    }
}

fn default_disk_targets(devices: &mut Devices) {
    for disk in devices.disks.iter_mut().flatten() {
        if disk.disk.is_none() && disk.cdrom.is_none() && disk.lun.is_none() {
            disk.disk = Some(DiskTarget::default());
        }
        if let Some(cd) = disk.cdrom.as_mut() {
            cd.readonly.get_or_insert(true);
            if cd.tray.as_deref().is_none_or(str::is_empty) {
                cd.tray = Some("closed".into());
            }
        }
        if let Some(m) = disk.block_size.as_mut().and_then(|b| b.match_volume.as_mut()) {
            m.enabled.get_or_insert(true);
        }
    }
}

fn default_probe(p: &mut Probe) {
    if p.timeout_seconds.unwrap_or(0) < 1 {
        p.timeout_seconds = Some(1);
    }
    if p.period_seconds.unwrap_or(0) < 1 {
        p.period_seconds = Some(10);
    }
    if p.success_threshold.unwrap_or(0) < 1 {
        p.success_threshold = Some(1);
    }
    if p.failure_threshold.unwrap_or(0) < 1 {
        p.failure_threshold = Some(3);
    }
}

/// Turns on the Hyper-V features others depend on, and requires `vmx` for `evmcs`.
fn hyperv_dependencies(domain: &mut DomainSpec) {
    let Some(h) = domain.features.as_mut().and_then(|f| f.hyperv.as_mut()) else {
        return;
    };
    let on = |f: &Option<FeatureState>| f.as_ref().is_some_and(|f| f.enabled != Some(false));
    let unset = |f: &Option<FeatureState>| f.as_ref().is_none_or(|f| f.enabled.is_none());
    let mut vmx = false;
    if on(&h.evmcs) {
        vmx = true;
        if unset(&h.vapic) {
            h.vapic = Some(FeatureState { enabled: Some(true) });
        }
    }
    let synictimer_on = h.synictimer.as_ref().is_some_and(|t| t.enabled != Some(false));
    let tlbflush_on = h.tlbflush.as_ref().is_some_and(|t| t.enabled != Some(false));
    if (on(&h.ipi) || tlbflush_on) && unset(&h.vpindex) {
        h.vpindex = Some(FeatureState { enabled: Some(true) });
    }
    if synictimer_on && unset(&h.synic) {
        h.synic = Some(FeatureState { enabled: Some(true) });
    }
    if on(&h.synic) && unset(&h.vpindex) {
        h.vpindex = Some(FeatureState { enabled: Some(true) });
    }
    if vmx {
        let features = domain
            .cpu
            .get_or_insert_with(Default::default)
            .features
            .get_or_insert_with(Vec::new);
        match features.iter_mut().find(|f| f.name == "vmx") {
            Some(f) => f.policy = Some("require".into()),
            None => features.push(CPUFeature {
                name: "vmx".into(),
                policy: Some("require".into()),
            }),
        }
    }
}

fn arch_defaults(spec: &mut VirtualMachineInstanceSpec, config: &ClusterConfig) {
    let arch = spec.architecture.clone().unwrap_or_default();
    let domain = &mut spec.domain;
    let bus = if arch == "arm64" || arch == "s390x" {
        "virtio"
    } else {
        "sata"
    };
    for disk in domain.devices.disks.iter_mut().flatten() {
        let slot = if let Some(d) = disk.disk.as_mut() {
            &mut d.bus
        } else if let Some(c) = disk.cdrom.as_mut() {
            &mut c.bus
        } else if let Some(l) = disk.lun.as_mut() {
            &mut l.bus
        } else {
            continue;
        };
        if slot.as_deref().is_none_or(str::is_empty) {
            *slot = Some(bus.to_string());
        }
    }
    match arch.as_str() {
        "arm64" => {
            let cpu = domain.cpu.get_or_insert_with(Default::default);
            if cpu.model.as_deref().is_none_or(str::is_empty) {
                cpu.model = Some("host-passthrough".into());
            }
            let fw = domain.firmware.get_or_insert_with(Firmware::default);
            let bl = fw.bootloader.get_or_insert_with(Default::default);
            if bl.bios.is_none() && bl.efi.is_none() {
                bl.efi = Some(Default::default());
            }
            if let Some(efi) = bl.efi.as_mut() {
                efi.secure_boot.get_or_insert(false);
            }
        }
        "s390x" => {
            if let Some(w) = domain.devices.watchdog.as_mut() {
                let d = w.diag288.get_or_insert_with(Default::default);
                if d.action.as_deref().is_none_or(str::is_empty) {
                    d.action = Some("reset".into());
                }
            }
        }
        _ => {
            if let Some(w) = domain.devices.watchdog.as_mut() {
                let i = w.i6300esb.get_or_insert_with(Default::default);
                if i.action.as_deref().is_none_or(str::is_empty) {
                    i.action = Some("reset".into());
                }
            }
        }
    }
    let cpu = domain.cpu.get_or_insert_with(Default::default);
    if cpu.model.as_deref().is_none_or(str::is_empty) {
        cpu.model = Some(config.cpu_model().unwrap_or("host-model").to_string());
    }
}

const MIB2: i128 = 2 * 1024 * 1024 * 1000;
const GIB: i128 = 1024 * 1024 * 1024 * 1000;

fn hotplug_maxima(spec: &mut VirtualMachineInstanceSpec, config: &ClusterConfig) {
    if spec.architecture.as_deref() == Some("arm64") || !config.live_update() {
        return;
    }
    let (ratio, max_sockets, max_guest) = config.live_update_limits();
    if let Some(cpu) = spec.domain.cpu.as_mut()
        && cpu.max_sockets.unwrap_or(0) == 0
    {
        let sockets = cpu.sockets.unwrap_or(0);
        let mut max = max_sockets.unwrap_or(0);
        if max != 0 && sockets > max {
            max = sockets;
        }
        if max == 0 {
            max = sockets.saturating_mul(ratio);
        }
        let per = cpu
            .cores
            .unwrap_or(1)
            .max(1)
            .saturating_mul(cpu.threads.unwrap_or(1).max(1));
        if max.saturating_mul(per) > 512 {
            max = (512 / per).max(sockets);
        }
        if max != 0 {
            cpu.max_sockets = Some(max);
        }
    }
    let domain = &mut spec.domain;
    let Some(memory) = domain.memory.as_mut() else {
        return;
    };
    if memory.max_guest.is_some()
        || domain.cpu.as_ref().is_some_and(|c| c.realtime.is_some())
        || domain.launch_security.is_some()
    {
        return;
    }
    if domain
        .cpu
        .as_ref()
        .and_then(|c| c.numa.as_ref())
        .is_some_and(|n| n.guest_mapping_passthrough.is_some())
    {
        return;
    }
    let Some(guest) = memory.guest.as_ref().and_then(|g| quantity::parse(&g.0).ok()) else {
        return;
    };
    let candidate = match max_guest {
        Some(q) => quantity::parse(&q.0).ok().map(|m| (m, q.0.clone())),
        None => {
            let bytes = guest.value().saturating_mul(i128::from(ratio));
            Some((quantity::Milli(bytes * 1000), binary_si(bytes)))
        }
    };
    let Some((cand, text)) = candidate else { return };
    let align = if memory.hugepages.as_ref().and_then(|h| h.page_size.as_deref()) == Some("1Gi") {
        GIB
    } else {
        MIB2
    };
    if spec.architecture.as_deref().unwrap_or("amd64") != "amd64"
        || guest > cand
        || guest.0 % align != 0
        || cand.0 % align != 0
        || guest.0 < GIB
    {
        return;
    }
    memory.max_guest = Some(Quantity(text));
}

/// Renders a byte count the way Kubernetes prints a BinarySI quantity (`4Gi`, `512Mi`, `1536Ki`).
#[must_use]
pub fn binary_si(bytes: i128) -> String {
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1i128 << shift;
        if bytes != 0 && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

fn supports_pcie_hotplug(spec: &VirtualMachineInstanceSpec) -> bool {
    let arch = spec.architecture.as_deref().unwrap_or("");
    let machine = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.r#type.as_deref())
        .unwrap_or("");
    matches!(arch, "amd64" | "arm64" | "") && (machine.contains("q35") || machine.starts_with("virt"))
}
