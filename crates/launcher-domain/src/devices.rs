//! Configurators for NICs and the small devices (serial console, graphics, inputs, RNG, watchdog, guest agent,
//! balloon, panic), and the list of VMI fields this launcher refuses with an error naming them.

use crate::model::{Domain, Graphics, Input as InputDev, Nic, Watchdog};
use crate::{Ctx, DomainError};

/// Fields that need host facilities this launcher does not drive yet.
pub(crate) fn refuse_unsupported(i: &Ctx<'_>, _d: &mut Domain) -> Result<(), DomainError> {
    let spec = &i.vmi.spec;
    let dom = &spec.domain;
    let dev = &dom.devices;
    let cpu = dom.cpu.as_ref();
    let mem = dom.memory.as_ref();
    let checks: &[(bool, &str, &str)] = &[
        (dev.tpm.is_some(), "spec.domain.devices.tpm", "a TPM needs swtpm"),
        (dev.sound.is_some(), "spec.domain.devices.sound", "sound devices"),
        (
            dev.gpus.as_ref().is_some_and(|g| !g.is_empty()),
            "spec.domain.devices.gpus",
            "GPU passthrough",
        ),
        (
            dev.host_devices.as_ref().is_some_and(|h| !h.is_empty()),
            "spec.domain.devices.hostDevices",
            "host device passthrough (VFIO)",
        ),
        (
            dev.filesystems.as_ref().is_some_and(|f| !f.is_empty()),
            "spec.domain.devices.filesystems",
            "virtiofs needs virtiofsd",
        ),
        (
            dev.downward_metrics.is_some(),
            "spec.domain.devices.downwardMetrics",
            "downward metrics",
        ),
        (
            dev.client_passthrough.is_some(),
            "spec.domain.devices.clientPassthrough",
            "USB redirection",
        ),
        (
            dev.autoattach_vsock == Some(true),
            "spec.domain.devices.autoattachVSOCK",
            "vhost-vsock",
        ),
        (
            dom.launch_security.is_some(),
            "spec.domain.launchSecurity",
            "SEV/SNP/TDX",
        ),
        (
            cpu.and_then(|c| c.dedicated_cpu_placement) == Some(true),
            "spec.domain.cpu.dedicatedCpuPlacement",
            "CPU pinning",
        ),
        (
            cpu.and_then(|c| c.isolate_emulator_thread) == Some(true),
            "spec.domain.cpu.isolateEmulatorThread",
            "CPU pinning",
        ),
        (
            cpu.and_then(|c| c.numa.as_ref()).is_some(),
            "spec.domain.cpu.numa",
            "NUMA passthrough",
        ),
        (
            cpu.and_then(|c| c.realtime.as_ref()).is_some(),
            "spec.domain.cpu.realtime",
            "realtime vCPUs",
        ),
        (
            mem.and_then(|m| m.hugepages.as_ref()).is_some(),
            "spec.domain.memory.hugepages",
            "hugepages",
        ),
        (dom.io_threads.is_some(), "spec.domain.ioThreads", "I/O threads"),
        (
            dom.io_threads_policy.as_deref().is_some_and(|p| p != "shared"),
            "spec.domain.ioThreadsPolicy",
            "I/O thread policies other than shared",
        ),
    ];
    if let Some((_, field, why)) = checks.iter().find(|(hit, _, _)| *hit) {
        return Err(DomainError::unsupported(*field, *why));
    }
    Ok(())
}

/// A locally administered MAC derived from the VMI and interface names: the same on every start, so a VM keeps
/// its DHCP lease (and IP) across restarts.
fn stable_mac(ns: &str, vmi: &str, iface: &str) -> String {
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{ns}/{vmi}/{iface}").as_bytes(),
    );
    let b = id.as_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// `0000:00:SS.F` (validated by admission as `dddd:bb:ss.f`) as QEMU's `addr=0xSS.0xF`; `None` off the root bus.
fn root_bus_addr(pci: &str) -> Option<String> {
    let rest = pci.strip_prefix("0000:00:")?;
    let (slot, function) = rest.split_once('.')?;
    let slot = u8::from_str_radix(slot, 16).ok().filter(|s| *s < 32)?;
    let function = function.parse::<u8>().ok().filter(|f| *f < 8)?;
    Some(format!("{slot:#x}.{function:#x}"))
}

/// Network cards. The plumbing (tap, bridge, DHCP) is the caller's: a NIC is attached to the tap the node facts
/// name for it, or to nothing.
pub(crate) fn nics(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let ifaces = i
        .vmi
        .spec
        .domain
        .devices
        .interfaces
        .as_deref()
        .unwrap_or_default();
    let ns = i.vmi.metadata.namespace.as_deref().unwrap_or("default");
    let name = i.vmi.metadata.name.as_deref().unwrap_or_default();
    for (idx, iface) in ifaces.iter().enumerate() {
        let at = |f: &str| format!("spec.domain.devices.interfaces[{idx}]{f}");
        if iface.sriov.is_some() {
            return Err(DomainError::unsupported(at(".sriov"), "SR-IOV"));
        }
        if iface.binding.is_some() {
            return Err(DomainError::unsupported(
                at(".binding"),
                "network binding plugins",
            ));
        }
        let pci_addr = iface
            .pci_address
            .as_deref()
            .map(|a| {
                root_bus_addr(a).ok_or_else(|| {
                    DomainError::unsupported(at(".pciAddress"), "PCI addresses off the root bus (0000:00)")
                })
            })
            .transpose()?;
        if iface.state.as_deref() == Some("absent") {
            continue;
        }
        let model = match iface.model.as_deref().unwrap_or("virtio") {
            "virtio" => "virtio-net-pci",
            "e1000" => "e1000",
            "e1000e" => "e1000e",
            "rtl8139" => "rtl8139",
            "igb" => "igb",
            "ne2k_pci" => "ne2k_pci",
            "pcnet" => "pcnet",
            other => {
                return Err(DomainError::invalid(
                    at(".model"),
                    format!("unknown model {other:?}"),
                ));
            }
        };
        let backend = i.facts.nics.get(&iface.name);
        let mac = match iface.mac_address.as_deref() {
            Some(m) if valid_mac(m) => m.to_ascii_lowercase().replace('-', ":"),
            Some(m) => {
                return Err(DomainError::invalid(
                    at(".macAddress"),
                    format!("{m:?} is not a MAC address"),
                ));
            }
            None => backend
                .and_then(|b| b.mac.clone())
                .unwrap_or_else(|| stable_mac(ns, name, &iface.name)),
        };
        let virtio = model == "virtio-net-pci";
        d.nics.push(Nic {
            name: iface.name.clone(),
            model: model.into(),
            mac,
            boot_order: iface.boot_order.map(|b| u32::try_from(b.max(1)).unwrap_or(1)),
            tap: backend.map(|b| b.tap.clone()),
            mtu: backend.and_then(|b| b.mtu).filter(|_| virtio),
            queues: backend.map_or(1, |b| b.queues.max(1)),
            vhost: backend.is_some() && virtio && i.facts.vhost_net,
            link_up: iface.state.as_deref() != Some("down"),
            pci_addr,
        });
    }
    // Room to hot-plug interfaces: q35's root bus cannot take them, root ports can (the pc machines' bus can).
    if d.machine.contains("q35") {
        d.hotplug_ports = 4u32.saturating_sub(u32::try_from(ifaces.len()).unwrap_or(u32::MAX));
    }
    Ok(())
}

/// Serial console, graphics, inputs, RNG, watchdog, guest agent, balloon, panic device, start strategy.
pub(crate) fn devices(i: &Ctx<'_>, d: &mut Domain) -> Result<(), DomainError> {
    let dev = &i.vmi.spec.domain.devices;
    d.serial_console = dev.autoattach_serial_console.unwrap_or(true);
    let efi = matches!(d.firmware.kind, crate::model::FirmwareKind::Efi { .. });
    if dev.autoattach_graphics_device.unwrap_or(true) || dev.video.is_some() {
        let video = match dev.video.as_ref().and_then(|v| v.r#type.as_deref()) {
            None if efi => "bochs-display",
            None | Some("vga") => "VGA",
            Some("bochs") => "bochs-display",
            Some("virtio") => "virtio-vga",
            Some("ramfb") => "ramfb",
            Some("cirrus") => "cirrus-vga",
            Some(other) => {
                return Err(DomainError::invalid(
                    "spec.domain.devices.video.type",
                    format!("unknown {other:?}"),
                ));
            }
        };
        d.graphics = Some(Graphics { video: video.into() });
    }
    for (idx, input) in dev.inputs.as_deref().unwrap_or_default().iter().enumerate() {
        if input.r#type != "tablet" {
            return Err(DomainError::invalid(
                format!("spec.domain.devices.inputs[{idx}].type"),
                format!("{:?}: only tablet is supported", input.r#type),
            ));
        }
        let usb = match input.bus.as_deref().unwrap_or("usb") {
            "usb" => true,
            "virtio" => false,
            other => {
                return Err(DomainError::invalid(
                    format!("spec.domain.devices.inputs[{idx}].bus"),
                    format!("{other:?}: only usb and virtio"),
                ));
            }
        };
        d.inputs.push(InputDev {
            name: input.name.clone(),
            usb,
        });
    }
    d.rng = dev.rng.is_some();
    if let Some(w) = dev.watchdog.as_ref() {
        if w.diag288.is_some() {
            return Err(DomainError::unsupported(
                "spec.domain.devices.watchdog.diag288",
                "s390x only",
            ));
        }
        let action = match w
            .i6300esb
            .as_ref()
            .and_then(|e| e.action.as_deref())
            .unwrap_or("reset")
        {
            "reset" => "reset",
            "poweroff" => "poweroff",
            "shutdown" => "shutdown",
            other => {
                return Err(DomainError::invalid(
                    "spec.domain.devices.watchdog.i6300esb.action",
                    format!("{other:?} is not poweroff, reset or shutdown"),
                ));
            }
        };
        d.watchdog = Some(Watchdog {
            name: w.name.clone(),
            action: action.into(),
        });
    }
    for (idx, p) in dev
        .panic_devices
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match p.model.as_deref().unwrap_or("isa") {
            "isa" | "pvpanic" => d.panic_device = true,
            other => {
                return Err(DomainError::unsupported(
                    format!("spec.domain.devices.panicDevices[{idx}].model"),
                    format!("{other:?}"),
                ));
            }
        }
    }
    d.balloon = dev.autoattach_mem_balloon.unwrap_or(true);
    d.start_paused = i.vmi.spec.start_strategy.as_deref() == Some("Paused");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::stable_mac;
    use crate::testing::{base, build};
    use crate::{Accel, DomainError};

    #[test]
    fn unsupported_fields_are_named() {
        for (path, value, field) in [
            ("/domain/devices/tpm", json!({}), "spec.domain.devices.tpm"),
            (
                "/domain/devices/gpus",
                json!([{"name": "g", "deviceName": "x"}]),
                "spec.domain.devices.gpus",
            ),
            (
                "/domain/cpu",
                json!({"dedicatedCpuPlacement": true}),
                "spec.domain.cpu.dedicatedCpuPlacement",
            ),
            (
                "/domain/memory",
                json!({"guest": "1Gi", "hugepages": {"pageSize": "2Mi"}}),
                "spec.domain.memory.hugepages",
            ),
        ] {
            let mut spec = base();
            let (parent, key) = path.rsplit_once('/').unwrap();
            spec.pointer_mut(parent).unwrap()[key] = value;
            let err = build(spec, Accel::Tcg, &[]).unwrap_err();
            assert!(
                matches!(&err, DomainError::Unsupported { field: f, .. } if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn a_backend_gives_the_nic_its_tap_mtu_queues_mac_and_vhost() {
        let mut spec = base();
        spec["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "bridge": {}}, {"name": "e", "bridge": {}, "model": "e1000"}]);
        let vmi = crate::testing::vmi(spec);
        let mut facts = crate::testing::facts(Accel::Tcg);
        let backend = crate::NicBackend {
            tap: "tap0".into(),
            mtu: Some(1450),
            queues: 4,
            mac: Some("7e:1b:2c:3d:4e:5f".into()),
        };
        facts.nics = std::collections::BTreeMap::from([
            ("default".to_string(), backend.clone()),
            ("e".to_string(), backend),
        ]);
        facts.vhost_net = true;
        let d = crate::build(&vmi, &facts, &std::collections::BTreeMap::new()).unwrap();
        let n = &d.nics[0];
        assert_eq!(
            (n.tap.as_deref(), n.mtu, n.queues, n.mac.as_str(), n.vhost),
            (Some("tap0"), Some(1450), 4, "7e:1b:2c:3d:4e:5f", true)
        );
        assert_eq!(
            (d.nics[1].mtu, d.nics[1].vhost),
            (None, false),
            "host_mtu and vhost are virtio's"
        );
    }

    #[test]
    fn nics_get_stable_macs_and_their_taps() {
        let mut spec = base();
        spec["domain"]["devices"]["interfaces"] = json!([
            {"name": "default", "masquerade": {}},
            {"name": "second", "bridge": {}, "model": "e1000e", "macAddress": "DE-AD-00-00-BE-EF", "bootOrder": 2},
            {"name": "gone", "bridge": {}, "state": "absent"},
        ]);
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert_eq!(d.nics.len(), 2);
        assert_eq!(
            (d.nics[0].model.as_str(), d.nics[0].tap.as_deref()),
            ("virtio-net-pci", Some("tap7"))
        );
        assert_eq!(d.nics[0].mac, stable_mac("ns", "t", "default"));
        assert!(d.nics[0].mac.starts_with("02:"));
        assert_eq!(
            build(spec.clone(), Accel::Tcg, &[]).unwrap().nics[0].mac,
            d.nics[0].mac,
            "same on every start"
        );
        assert_eq!(
            (
                d.nics[1].mac.as_str(),
                d.nics[1].boot_order,
                d.nics[1].tap.as_deref()
            ),
            ("de:ad:00:00:be:ef", Some(2), None)
        );
        assert!(
            d.nics
                .iter()
                .all(|n| n.link_up && n.queues == 1 && n.mtu.is_none() && !n.vhost)
        );
        spec["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "masquerade": {}, "state": "down"}]);
        assert!(!build(spec.clone(), Accel::Tcg, &[]).unwrap().nics[0].link_up);
        spec["domain"]["devices"]["interfaces"] = json!([{"name": "x", "macAddress": "nope"}]);
        assert!(build(spec.clone(), Accel::Tcg, &[]).is_err());
        spec["domain"]["devices"]["interfaces"] = json!([{"name": "x", "sriov": {}}]);
        assert!(matches!(
            build(spec.clone(), Accel::Tcg, &[]),
            Err(DomainError::Unsupported { .. })
        ));
        // pciAddress: a slot on the root bus; other buses are named as unsupported.
        spec["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "masquerade": {}, "pciAddress": "0000:00:1a.3"}]);
        assert_eq!(
            build(spec.clone(), Accel::Tcg, &[]).unwrap().nics[0]
                .pci_addr
                .as_deref(),
            Some("0x1a.0x3")
        );
        spec["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "masquerade": {}, "pciAddress": "0000:81:01.0"}]);
        assert!(matches!(
            build(spec, Accel::Tcg, &[]),
            Err(DomainError::Unsupported { field, .. }) if field == "spec.domain.devices.interfaces[0].pciAddress"
        ));
    }

    #[test]
    fn small_devices() {
        let d = build(base(), Accel::Tcg, &[]).unwrap();
        assert!(d.serial_console && d.guest_agent && d.balloon && !d.rng);
        assert_eq!(d.graphics.unwrap().video, "VGA");
        let mut spec = base();
        spec["domain"]["devices"] = json!({"autoattachGraphicsDevice": false, "autoattachSerialConsole": false,
            "autoattachMemBalloon": false, "rng": {}, "watchdog": {"name": "w", "i6300esb": {"action": "poweroff"}},
            "inputs": [{"name": "tablet", "type": "tablet", "bus": "virtio"}]});
        spec["startStrategy"] = json!("Paused");
        let d = build(spec.clone(), Accel::Tcg, &[]).unwrap();
        assert!(d.graphics.is_none() && !d.serial_console && !d.balloon && d.rng && d.start_paused);
        assert_eq!(d.watchdog.unwrap().action, "poweroff");
        assert!(!d.inputs[0].usb);
        spec["domain"]["devices"]["inputs"] = json!([{"name": "k", "type": "keyboard"}]);
        assert!(build(spec, Accel::Tcg, &[]).is_err());
    }
}
