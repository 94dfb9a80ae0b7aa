//! The disks configurator: each `spec.domain.devices.disks[]` entry on the file its volume resolved to.

use crate::model::{Bus, Cache, Disk, DiskDevice, Domain, Io};
use crate::{Ctx, DomainError};

fn bus(field: &str, b: Option<&str>, default: Bus) -> Result<Bus, DomainError> {
    match b {
        None => Ok(default),
        Some("virtio") => Ok(Bus::Virtio),
        Some("sata") => Ok(Bus::Sata),
        Some("scsi") => Ok(Bus::Scsi),
        Some("usb") => Ok(Bus::Usb),
        Some(other) => Err(DomainError::unsupported(field, format!("bus {other:?}"))),
    }
}

pub(crate) fn disks(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let disks = i.vmi.spec.domain.devices.disks.as_deref().unwrap_or_default();
    for (idx, disk) in disks.iter().enumerate() {
        let at = |f: &str| format!("spec.domain.devices.disks[{idx}]{f}");
        let vol = i.volumes.get(&disk.name).ok_or_else(|| {
            DomainError::invalid(
                at(".name"),
                format!("no volume named {:?} was prepared", disk.name),
            )
        })?;
        let (device, bus, readonly) = if let Some(c) = disk.cdrom.as_ref() {
            if c.tray.as_deref() == Some("open") {
                return Err(DomainError::unsupported(at(".cdrom.tray"), "an open tray"));
            }
            let b = bus(&at(".cdrom.bus"), c.bus.as_deref(), Bus::Sata)?;
            if b == Bus::Virtio {
                return Err(DomainError::invalid(
                    at(".cdrom.bus"),
                    "a CD-ROM cannot be on virtio",
                ));
            }
            (DiskDevice::Cdrom, b, c.readonly.unwrap_or(true))
        } else if let Some(l) = disk.lun.as_ref() {
            if !vol.block {
                return Err(DomainError::unsupported(at(".lun"), "a LUN needs a block volume"));
            }
            if l.reservation == Some(true) {
                return Err(DomainError::unsupported(
                    at(".lun.reservation"),
                    "SCSI persistent reservations",
                ));
            }
            (DiskDevice::Lun, Bus::Scsi, l.readonly.unwrap_or(false))
        } else {
            let t = disk.disk.as_ref();
            if t.and_then(|t| t.pci_address.as_ref()).is_some() {
                return Err(DomainError::unsupported(
                    at(".disk.pciAddress"),
                    "fixed PCI addresses",
                ));
            }
            let b = bus(&at(".disk.bus"), t.and_then(|t| t.bus.as_deref()), Bus::Virtio)?;
            (DiskDevice::Disk, b, t.and_then(|t| t.readonly).unwrap_or(false))
        };
        let cache = match disk.cache.as_deref() {
            None if vol.direct_io => Cache::None,
            None => Cache::Writethrough,
            Some("none") if !vol.direct_io => {
                return Err(DomainError::invalid(
                    at(".cache"),
                    "none needs O_DIRECT, which this volume's file system does not support",
                ));
            }
            Some("none") => Cache::None,
            Some("writethrough") => Cache::Writethrough,
            Some("writeback") => Cache::Writeback,
            Some(other) => {
                return Err(DomainError::invalid(
                    at(".cache"),
                    format!("unknown cache mode {other:?}"),
                ));
            }
        };
        let io = match disk.io.as_deref() {
            None if cache == Cache::None && vol.block => Io::Native,
            None => Io::Threads,
            Some("native") if cache != Cache::None => {
                return Err(DomainError::invalid(at(".io"), "native I/O needs cache none"));
            }
            Some("native") => Io::Native,
            Some("threads") => Io::Threads,
            Some(other) => {
                return Err(DomainError::invalid(
                    at(".io"),
                    format!("unknown I/O mode {other:?}"),
                ));
            }
        };
        let block_size = match disk.block_size.as_ref() {
            None => None,
            Some(bs)
                if bs
                    .match_volume
                    .as_ref()
                    .is_some_and(|m| m.enabled.unwrap_or(true)) =>
            {
                return Err(DomainError::unsupported(
                    at(".blockSize.matchVolume"),
                    "probing the volume's block size",
                ));
            }
            Some(bs) => bs.custom.as_ref().map(|c| {
                let l = u32::try_from(c.logical.unwrap_or(512)).unwrap_or(512);
                (
                    l,
                    u32::try_from(c.physical.unwrap_or(c.logical.unwrap_or(512))).unwrap_or(l),
                )
            }),
        };
        if let Some((l, p)) = block_size
            && (!l.is_power_of_two() || !p.is_power_of_two() || !(512..=65536).contains(&l) || p < l)
        {
            return Err(DomainError::invalid(
                at(".blockSize.custom"),
                format!("logical {l} / physical {p} must be powers of two from 512, physical >= logical"),
            ));
        }
        if disk.dedicated_io_thread == Some(true) {
            return Err(DomainError::unsupported(at(".dedicatedIOThread"), "I/O threads"));
        }
        if disk.error_policy.as_deref().is_some_and(|p| p != "stop") {
            return Err(DomainError::unsupported(
                at(".errorPolicy"),
                "policies other than stop",
            ));
        }
        if disk.changed_block_tracking == Some(true) {
            return Err(DomainError::unsupported(
                at(".changedBlockTracking"),
                "changed block tracking",
            ));
        }
        d.disks.push(Disk {
            name: disk.name.clone(),
            path: vol.path.clone(),
            format: vol.format,
            block: vol.block,
            device,
            bus,
            readonly,
            boot_order: disk.boot_order.map(|b| u32::try_from(b.max(1)).unwrap_or(1)),
            serial: disk.serial.clone(),
            cache,
            io,
            block_size,
            shareable: disk.shareable.unwrap_or(false),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::testing::{base, build, volume};
    use crate::{Accel, Bus, Cache, DiskDevice, DomainError, Io};

    fn spec(disks: serde_json::Value) -> serde_json::Value {
        let mut s = base();
        s["domain"]["devices"]["disks"] = disks;
        s
    }

    #[test]
    fn buses_devices_and_defaults() {
        let s = spec(json!([
            {"name": "a", "disk": {"bus": "virtio"}, "bootOrder": 1, "serial": "S1"},
            {"name": "b", "cdrom": {"bus": "sata"}},
            {"name": "c", "disk": {"bus": "scsi", "readonly": true}, "cache": "writeback"},
            {"name": "d", "disk": {"bus": "usb"}},
        ]));
        let v = volume(false, true);
        let d = build(
            s,
            Accel::Tcg,
            &[("a", v.clone()), ("b", v.clone()), ("c", v.clone()), ("d", v)],
        )
        .unwrap();
        let got: Vec<_> = d
            .disks
            .iter()
            .map(|x| (x.bus, x.device, x.readonly, x.cache, x.io))
            .collect();
        assert_eq!(
            got,
            [
                (Bus::Virtio, DiskDevice::Disk, false, Cache::None, Io::Threads),
                (Bus::Sata, DiskDevice::Cdrom, true, Cache::None, Io::Threads),
                (Bus::Scsi, DiskDevice::Disk, true, Cache::Writeback, Io::Threads),
                (Bus::Usb, DiskDevice::Disk, false, Cache::None, Io::Threads),
            ]
        );
        assert_eq!(
            (d.disks[0].boot_order, d.disks[0].serial.as_deref()),
            (Some(1), Some("S1"))
        );
    }

    #[test]
    fn direct_io_block_devices_and_luns() {
        // A file system without O_DIRECT: writethrough by default, `none` refused.
        let d = build(
            spec(json!([{"name": "a", "disk": {}}])),
            Accel::Tcg,
            &[("a", volume(false, false))],
        )
        .unwrap();
        assert_eq!(d.disks[0].cache, Cache::Writethrough);
        let err = build(
            spec(json!([{"name": "a", "disk": {}, "cache": "none"}])),
            Accel::Tcg,
            &[("a", volume(false, false))],
        );
        assert!(
            matches!(err, Err(DomainError::Invalid { field, .. }) if field == "spec.domain.devices.disks[0].cache")
        );
        // Block + O_DIRECT: native I/O.
        let d = build(
            spec(json!([{"name": "a", "disk": {}}])),
            Accel::Tcg,
            &[("a", volume(true, true))],
        )
        .unwrap();
        assert_eq!(d.disks[0].io, Io::Native);
        let err = build(
            spec(json!([{"name": "a", "lun": {}}])),
            Accel::Tcg,
            &[("a", volume(false, true))],
        );
        assert!(
            matches!(err, Err(DomainError::Unsupported { field, .. }) if field == "spec.domain.devices.disks[0].lun")
        );
        let d = build(
            spec(json!([{"name": "a", "lun": {}}])),
            Accel::Tcg,
            &[("a", volume(true, true))],
        )
        .unwrap();
        assert_eq!((d.disks[0].bus, d.disks[0].device), (Bus::Scsi, DiskDevice::Lun));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!([{"name": "a", "cdrom": {"bus": "virtio"}}]),
                "spec.domain.devices.disks[0].cdrom.bus",
            ),
            (
                json!([{"name": "a", "disk": {"bus": "ide"}}]),
                "spec.domain.devices.disks[0].disk.bus",
            ),
            (
                json!([{"name": "a", "disk": {}, "io": "native", "cache": "writeback"}]),
                "spec.domain.devices.disks[0].io",
            ),
            (
                json!([{"name": "a", "disk": {}, "blockSize": {"custom": {"logical": 1000, "physical": 4096}}}]),
                "spec.domain.devices.disks[0].blockSize.custom",
            ),
            (
                json!([{"name": "zz", "disk": {}}]),
                "spec.domain.devices.disks[0].name",
            ),
        ];
        for (disks, want) in cases {
            let err = build(spec(disks.clone()), Accel::Tcg, &[("a", volume(false, true))]).unwrap_err();
            let field = match &err {
                DomainError::Invalid { field, .. } | DomainError::Unsupported { field, .. } => field.clone(),
            };
            assert_eq!(field, want, "{disks}: {err}");
        }
        let d = build(
            spec(json!([{"name": "a", "disk": {}, "blockSize": {"custom": {"logical": 512, "physical": 4096}}}])),
            Accel::Tcg,
            &[("a", volume(false, true))],
        )
        .unwrap();
        assert_eq!(d.disks[0].block_size, Some((512, 4096)));
    }
}
