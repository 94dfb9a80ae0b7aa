//! Volume, disk, cloud-init, boot order and access-credential rules (upstream's storage admitters).

use std::collections::{HashMap, HashSet};

use base64::Engine as _;

use super::{Causes, INVALID, MAX_LIST, NOT_FOUND, NOT_SUPPORTED, REQUIRED, TOO_MANY, dns1123_label};
use crate::config::ClusterConfig;
use crate::v1::{CloudInitNoCloudSource, VirtualMachineInstanceSpec, Volume};

/// Inline cloud-init user or network data above this size must move to a Secret.
pub(super) const CLOUD_INIT_LIMIT: usize = 2048;

/// Why `p` is not an acceptable absolute file path, if it is not.
pub(super) fn bad_path(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return None;
    }
    if p == "/" {
        return Some("must not point to root");
    }
    let trimmed = p.strip_suffix('/').unwrap_or(p);
    let relative = !trimmed.starts_with('/')
        || trimmed
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    relative.then_some("must be an absolute path to a file without relative components")
}

/// `dddd:bb:ss.f` PCI address.
pub(super) fn valid_pci(s: &str) -> bool {
    let hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((dom, rest)) = s.split_once(':') else {
        return false;
    };
    let Some((bus, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some((slot, func)) = rest.split_once('.') else {
        return false;
    };
    hex(dom, 4) && hex(bus, 2) && hex(slot, 2) && func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7')
}

fn source_count(v: &Volume) -> usize {
    super::count(&[
        v.persistent_volume_claim.is_some(),
        v.sysprep.is_some(),
        v.cloud_init_no_cloud.is_some(),
        v.cloud_init_config_drive.is_some(),
        v.container_disk.is_some(),
        v.ephemeral.is_some(),
        v.empty_disk.is_some(),
        v.host_disk.is_some(),
        v.data_volume.is_some(),
        v.config_map.is_some(),
        v.secret.is_some(),
        v.downward_api.is_some(),
        v.service_account.is_some(),
        v.downward_metrics.is_some(),
        v.memory_dump.is_some(),
        v.container_path.is_some(),
    ])
}

pub(super) fn validate(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let vols = spec.volumes.as_deref().unwrap_or_default();
    let disks = spec.domain.devices.disks.as_deref().unwrap_or_default();
    for (list, f) in [
        (vols.len(), format!("{root}.volumes")),
        (disks.len(), format!("{root}.domain.devices.disks")),
    ] {
        if list > MAX_LIST {
            c.push(
                TOO_MANY,
                &f,
                format!("{f}: Too many: {list}: must have at most {MAX_LIST} items"),
            );
            return;
        }
    }
    volumes(root, vols, config, c);
    disks_and_boot_order(root, spec, config, c);
    access_credentials(root, spec, c);
}

fn volumes(root: &str, vols: &[Volume], config: &ClusterConfig, c: &mut Causes) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let (mut sa, mut dm, mut md) = (0, 0, 0);
    for (i, v) in vols.iter().enumerate() {
        let f = format!("{root}.volumes[{i}]");
        if let Some(j) = first.get(v.name.as_str()) {
            c.push(
                INVALID,
                format!("{f}.name"),
                format!("{f} and {root}.volumes[{j}] must not have the same Name."),
            );
        } else {
            first.insert(&v.name, i);
        }
        if source_count(v) != 1 {
            c.push(INVALID, &f, format!("{f} must have exactly one source type set"));
        }
        if v.data_volume.as_ref().is_some_and(|d| d.name.is_empty()) {
            c.push(REQUIRED, format!("{f}.name"), "DataVolume 'name' must be set");
        }
        if let Some(ci) = v.cloud_init_no_cloud.as_ref() {
            cloud_init(&format!("{f}.cloudInitNoCloud"), "cloudInitNoCloud", ci, c);
        }
        if let Some(cd) = v.cloud_init_config_drive.as_ref() {
            let as_nocloud = CloudInitNoCloudSource {
                user_data: cd.user_data.clone(),
                user_data_base64: cd.user_data_base64.clone(),
                secret_ref: cd.secret_ref.clone(),
                network_data: cd.network_data.clone(),
                network_data_base64: cd.network_data_base64.clone(),
                network_data_secret_ref: cd.network_data_secret_ref.clone(),
            };
            cloud_init(
                &format!("{f}.cloudInitConfigDrive"),
                "cloudInitConfigDrive",
                &as_nocloud,
                c,
            );
        }
        if let Some(h) = v.host_disk.as_ref() {
            if !config.gate("HostDisk") {
                c.push(INVALID, &f, "HostDisk feature gate is not enabled");
            } else {
                if h.path.is_empty() {
                    c.push(
                        NOT_FOUND,
                        format!("{f}.hostDisk.path"),
                        format!("{f}.hostDisk.path is required for hostDisk volume"),
                    );
                }
                if !matches!(h.r#type.as_str(), "Disk" | "DiskOrCreate") {
                    c.push(
                        INVALID,
                        format!("{f}.hostDisk.type"),
                        format!(
                            "{f}.hostDisk.type has invalid value '{}', allowed are 'Disk' or 'DiskOrCreate'",
                            h.r#type
                        ),
                    );
                }
                if h.r#type == "Disk"
                    && h.capacity
                        .as_ref()
                        .is_some_and(|q| crate::quantity::parse(&q.0).is_ok_and(|m| m.0 != 0))
                {
                    c.push(INVALID, format!("{f}.hostDisk.capacity"), format!("{f}.hostDisk.capacity is allowed to pass only with {f}.hostDisk.type equal to 'DiskOrCreate'"));
                }
            }
        }
        if let Some(cm) = v.config_map.as_ref()
            && cm.name.as_deref().is_none_or(str::is_empty)
        {
            c.push(
                INVALID,
                format!("{f}.configMap.name"),
                format!("{f}.configMap.name is a required field"),
            );
        }
        if let Some(s) = v.secret.as_ref()
            && s.secret_name.as_deref().is_none_or(str::is_empty)
        {
            c.push(
                INVALID,
                format!("{f}.secret.secretName"),
                format!("{f}.secret.secretName is a required field"),
            );
        }
        if let Some(s) = v.service_account.as_ref() {
            sa += 1;
            if s.service_account_name.as_deref().is_none_or(str::is_empty) {
                c.push(
                    INVALID,
                    format!("{f}.serviceAccount.serviceAccountName"),
                    format!("{f}.serviceAccount.serviceAccountName is a required field"),
                );
            }
        }
        if v.downward_metrics.is_some() {
            dm += 1;
            if !config.gate("DownwardMetrics") {
                c.push(
                    INVALID,
                    &f,
                    "downwardMetrics disks are not allowed: DownwardMetrics feature gate is not enabled.",
                );
            }
        }
        if v.memory_dump.is_some() {
            md += 1;
        }
        if let Some(p) = v.container_disk.as_ref().and_then(|cd| cd.path.as_deref())
            && let Some(msg) = bad_path(p)
        {
            c.push(
                INVALID,
                format!("{f}.containerDisk"),
                format!("{f}.containerDisk {msg}"),
            );
        }
    }
    let vp = format!("{root}.volumes");
    for (n, what) in [
        (sa, "serviceAccount volume"),
        (dm, "downwardMetric volume"),
        (md, "memory dump volume"),
    ] {
        if n > 1 {
            c.push(INVALID, &vp, format!("{vp} must have max one {what} set"));
        }
    }
}

fn cloud_init(base: &str, ds: &str, ci: &CloudInitNoCloudSource, c: &mut Causes) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut user_len = 0;
    let mut user_sources = 0;
    if ci.secret_ref.as_ref().is_some_and(|s| !s.name.is_empty()) {
        user_sources += 1;
    }
    if let Some(u) = ci.user_data_base64.as_deref().filter(|s| !s.is_empty()) {
        user_sources += 1;
        match b64.decode(u) {
            Ok(d) => user_len = d.len(),
            Err(_) => c.push(
                INVALID,
                format!("{base}.userDataBase64"),
                format!("{base}.userDataBase64.{ds}.userDataBase64 is not a valid base64 value."),
            ),
        }
    }
    if let Some(u) = ci.user_data.as_deref().filter(|s| !s.is_empty()) {
        user_sources += 1;
        user_len = u.len();
    }
    if user_sources > 1 {
        c.push(
            INVALID,
            base,
            format!("{base} must have only one userdatasource set."),
        );
    }
    if user_len > CLOUD_INIT_LIMIT {
        c.push(INVALID, base, format!("{base} userdata exceeds {CLOUD_INIT_LIMIT} byte limit. Should use UserDataSecretRef for larger data."));
    }
    let mut net_len = 0;
    let mut net_sources = 0;
    if ci
        .network_data_secret_ref
        .as_ref()
        .is_some_and(|s| !s.name.is_empty())
    {
        net_sources += 1;
    }
    if let Some(n) = ci.network_data_base64.as_deref().filter(|s| !s.is_empty()) {
        net_sources += 1;
        match b64.decode(n) {
            Ok(d) => net_len = d.len(),
            Err(_) => c.push(
                INVALID,
                format!("{base}.networkDataBase64"),
                format!("{base}.networkDataBase64.{ds}.networkDataBase64 is not a valid base64 value."),
            ),
        }
    }
    if let Some(n) = ci.network_data.as_deref().filter(|s| !s.is_empty()) {
        net_sources += 1;
        net_len = n.len();
    }
    if net_sources > 1 {
        c.push(
            INVALID,
            base,
            format!("{base} must have only one networkdata source set."),
        );
    }
    if net_len > CLOUD_INIT_LIMIT {
        c.push(INVALID, base, format!("{base} networkdata exceeds {CLOUD_INIT_LIMIT} byte limit. Should use NetworkDataSecretRef for larger data."));
    }
    if user_sources == 0 && net_sources == 0 {
        c.push(
            INVALID,
            base,
            format!("{base} must have at least one userdatasource or one networkdatasource set."),
        );
    }
}

fn disks_and_boot_order(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let f = format!("{root}.domain.devices.disks");
    let vols: HashMap<&str, &Volume> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut boot: HashSet<i32> = HashSet::new();
    for (i, d) in spec.domain.devices.disks.iter().flatten().enumerate() {
        let df = format!("{f}[{i}]");
        if let Some(j) = names.get(d.name.as_str()) {
            c.push(
                INVALID,
                format!("{df}.name"),
                format!("{df} and {f}[{j}] must not have the same Name."),
            );
        } else {
            names.insert(&d.name, i);
        }
        if let Err(e) = dns1123_label(&d.name) {
            c.push(INVALID, format!("{f}.domain.devices.disks[{i}].name"), e);
        }
        let targets = super::count(&[d.disk.is_some(), d.lun.is_some(), d.cdrom.is_some()]);
        if targets > 1 {
            c.push(
                INVALID,
                &df,
                format!("{df} can only have a single target type defined"),
            );
        }
        let (kind, bus) = if let Some(t) = d.disk.as_ref() {
            ("disk", t.bus.as_deref())
        } else if let Some(t) = d.lun.as_ref() {
            ("lun", t.bus.as_deref())
        } else if let Some(t) = d.cdrom.as_ref() {
            ("cdrom", t.bus.as_deref())
        } else {
            ("disk", None)
        };
        let bus = bus.unwrap_or("");
        if let Some(pci) = d.disk.as_ref().and_then(|t| t.pci_address.as_deref()) {
            let qf = format!("{f}.domain.devices.disks.disk[{i}].pciAddress");
            if bus != "virtio" {
                c.push(INVALID, &qf, format!("disk {f}.domain.devices.disks.disk[{i}].name - setting a PCI address is only possible with bus type virtio."));
            } else if !valid_pci(pci) {
                c.push(
                    INVALID,
                    &qf,
                    format!(
                        "disk {f}.domain.devices.disks.disk[{i}].name has malformed PCI address ({pci})."
                    ),
                );
            }
        }
        let bf = format!("{df}.{kind}.bus");
        if bus == "ide" {
            c.push(INVALID, &bf, "IDE bus is not supported");
        } else if kind == "cdrom" && bus == "virtio" {
            c.push(
                INVALID,
                &bf,
                format!("Bus type {bus} is invalid for CD-ROM device"),
            );
        } else if !matches!(bus, "" | "virtio" | "scsi" | "sata" | "usb") {
            c.push(
                INVALID,
                &bf,
                format!("{df} is set with an unrecognized bus {bus}, must be one of: [virtio scsi sata usb]"),
            );
        }
        if kind == "disk" && bus == "sata" && d.disk.as_ref().and_then(|t| t.readonly) == Some(true) {
            c.push(
                INVALID,
                format!("{df}.disk.bus"),
                format!("{bus} hard-disks do not support read-only."),
            );
        }
        if d.dedicated_io_thread == Some(true) && !bus.is_empty() && bus != "virtio" {
            c.push(
                NOT_SUPPORTED,
                format!("{f}.domain.devices.disks[{i}]"),
                format!("IOThreads are not supported for disks on a {bus} bus"),
            );
        }
        if let Some(s) = d.serial.as_deref() {
            if s.chars().count() > 256 {
                c.push(
                    INVALID,
                    format!("{df}.serial"),
                    format!("{df} must be less than or equal to 256 in length, if specified"),
                );
            } else if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
                || s.is_empty()
            {
                c.push(
                    INVALID,
                    format!("{df}.serial"),
                    format!("{df} must be made up of the following characters [A-Za-z0-9_.+-], if specified"),
                );
            }
        }
        if let Some(cache) = d
            .cache
            .as_deref()
            .filter(|x| !matches!(*x, "" | "none" | "writethrough" | "writeback"))
        {
            c.push(
                INVALID,
                format!("{df}.cache"),
                format!("{df}.cache has invalid value {cache}"),
            );
        }
        if d.io
            .as_deref()
            .is_some_and(|x| !matches!(x, "" | "native" | "threads"))
        {
            c.push(
                NOT_SUPPORTED,
                format!("{f}.domain.devices.disks[{i}].io"),
                format!("Disk IO mode for {f} is not supported. Supported modes are: native, threads."),
            );
        }
        if let Some(p) = d
            .error_policy
            .as_deref()
            .filter(|x| !matches!(*x, "stop" | "ignore" | "report" | "enospace"))
        {
            c.push(
                INVALID,
                format!("{df}.errorPolicy"),
                format!("{df}.errorPolicy has invalid value \"{p}\""),
            );
        }
        block_size(&df, d, bus, c);
        if let Some(order) = d.boot_order {
            if order < 1 {
                c.push(
                    INVALID,
                    format!("{df}.bootOrder"),
                    format!("{df} must have a boot order > 0, if supplied"),
                );
            } else if !boot.insert(order) {
                c.push(
                    INVALID,
                    format!("{df}.bootOrder"),
                    format!("Boot order for {df}.bootOrder already set for a different device."),
                );
            }
        }
        match vols.get(d.name.as_str()) {
            None if d.cdrom.is_some() && !config.gate("DeclarativeHotplugVolumes") => {
                c.push(
                    INVALID,
                    format!("{df}.name"),
                    "DeclarativeHotplugVolumes feature gate not enabled, cannot define an empty CD-ROM disk",
                );
            }
            Some(v) if v.downward_metrics.is_some() && d.disk.is_none() => {
                c.push(
                    REQUIRED,
                    format!("{df}.disk"),
                    format!("DownwardMetrics volume must be mapped to a disk, but disk is not set on {df}."),
                );
            }
            Some(v) if v.downward_metrics.is_some() && !matches!(bus, "" | "virtio") => {
                c.push(INVALID, format!("{df}.disk.bus"), format!("DownwardMetrics volume must be mapped to virtio bus, but {df}.disk.bus is set to {bus}"));
            }
            None if d.cdrom.is_none() => {
                c.push(
                    INVALID,
                    format!("{df}.name"),
                    format!("{df}.Name '{}' not found.", d.name),
                );
            }
            Some(v) if d.lun.is_some() && v.persistent_volume_claim.is_none() && v.data_volume.is_none() => {
                c.push(
                    INVALID,
                    format!("{df}.lun"),
                    format!("{df}.lun can only be mapped to a DataVolume or PersistentVolumeClaim volume."),
                );
            }
            _ => {}
        }
    }
    for (i, iface) in spec.domain.devices.interfaces.iter().flatten().enumerate() {
        let Some(order) = iface.boot_order else { continue };
        if order < 1 {
            c.push(
                INVALID,
                format!("{root}[{i}].bootOrder"),
                format!("{root}[{i}] must have a boot order > 0, if supplied"),
            );
        } else if !boot.insert(order) {
            let bf = format!("{root}.domain.devices.interfaces[{i}].bootOrder");
            c.push(
                INVALID,
                &bf,
                format!("Boot order for {bf} already set for a different device."),
            );
        }
    }
}

fn block_size(df: &str, d: &crate::v1::Disk, bus: &str, c: &mut Causes) {
    let Some(bs) = d.block_size.as_ref() else { return };
    let Some(custom) = bs.custom.as_ref() else { return };
    if bs.match_volume.as_ref().is_some_and(|m| m.enabled != Some(false)) {
        c.push(
            INVALID,
            format!("{df}.blockSize"),
            "Block size matching can't be enabled together with a custom value",
        );
        return;
    }
    let (logical, physical) = (custom.logical.unwrap_or(0), custom.physical.unwrap_or(0));
    let lf = format!("{df}.blockSize.custom.logical");
    if logical > physical {
        c.push(
            INVALID,
            &lf,
            format!("Logical size {logical} must be the same or less than the physical size of {physical}"),
        );
    } else if bus == "sata" && logical != 512 {
        c.push(
            INVALID,
            &lf,
            format!("Logical size {logical} must be 512 for SATA devices"),
        );
    } else if logical != 0 && custom.discard_granularity.is_some_and(|g| g % logical != 0) {
        c.push(
            INVALID,
            format!("{df}.blockSize.custom.discardGranularity"),
            format!(
                "Discard granularity {} must be multiples of logical size {logical}",
                custom.discard_granularity.unwrap_or(0)
            ),
        );
    } else {
        for (v, name) in [(logical, "logical"), (physical, "physical")] {
            let f = format!("{df}.blockSize.custom.{name}");
            if v < 512 {
                c.push(
                    INVALID,
                    &f,
                    format!("Provided size of {v} is less than the supported minimum size of 512"),
                );
            } else if v > 2_097_152 {
                c.push(
                    INVALID,
                    &f,
                    format!("Provided size of {v} is greater than the supported maximum size of 2097152"),
                );
            } else if v.count_ones() != 1 {
                c.push(INVALID, &f, format!("Provided size of {v} is not a power of 2"));
            }
        }
    }
}

fn access_credentials(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let has_nocloud = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.cloud_init_no_cloud.is_some());
    let has_cd = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.cloud_init_config_drive.is_some());
    for (i, ac) in spec.access_credentials.iter().flatten().enumerate() {
        let a = format!("{root}.accessCredentials[{i}]");
        match (ac.ssh_public_key.as_ref(), ac.user_password.as_ref()) {
            (Some(k), None) => {
                let pm = &k.propagation_method;
                let pf = format!("{a}.sshPublicKey.propagationMethod");
                let n = super::count(&[
                    pm.no_cloud.is_some(),
                    pm.config_drive.is_some(),
                    pm.qemu_guest_agent.is_some(),
                ]);
                if n != 1 {
                    c.push(
                        INVALID,
                        &pf,
                        format!("{pf} must have exactly one propagationMethod set"),
                    );
                }
                if pm.no_cloud.is_some() && !has_nocloud {
                    c.push(INVALID, &pf, format!("{a} requires a noCloud volume to exist when the noCloud propagationMethod is in use."));
                }
                if pm.config_drive.is_some() && !has_cd {
                    c.push(INVALID, &pf, format!("{a} requires a configDrive volume to exist when the configDrive propagationMethod is in use."));
                }
                if pm.qemu_guest_agent.as_ref().is_some_and(|q| q.users.is_empty()) {
                    let uf = format!("{pf}.qemuGuestAgent.users");
                    c.push(
                        INVALID,
                        &uf,
                        format!("{uf} requires at least one user to be present in the users list"),
                    );
                }
                if k.source.secret.is_none() {
                    let sf = format!("{a}.sshPublicKey.source");
                    c.push(INVALID, &sf, format!("{sf} must have exactly one source set"));
                }
            }
            (None, Some(p)) => {
                if p.source.secret.is_none() {
                    let sf = format!("{a}.userPassword.source");
                    c.push(INVALID, &sf, format!("{sf} must have exactly one source set"));
                }
                if p.propagation_method.qemu_guest_agent.is_none() {
                    let pf = format!("{a}.userPassword.propagationMethod");
                    c.push(
                        INVALID,
                        &pf,
                        format!("{pf} must have exactly one propagationMethod set"),
                    );
                }
            }
            _ => c.push(
                INVALID,
                &a,
                format!("{a} must have exactly one access credential type set"),
            ),
        }
    }
}

/// Every volume must be used by a disk or filesystem (VMI create only; memory dumps exempt).
pub(super) fn volumes_have_disks(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let d = &spec.domain.devices;
    let used: HashSet<&str> = d
        .disks
        .iter()
        .flatten()
        .map(|x| x.name.as_str())
        .chain(d.filesystems.iter().flatten().map(|x| x.name.as_str()))
        .collect();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.memory_dump.is_none() && !used.contains(v.name.as_str()) {
            let f = format!("{root}.domain.volumes[{i}].name");
            c.push(INVALID, &f, format!("{f} '{}' not found.", v.name));
        }
    }
}
