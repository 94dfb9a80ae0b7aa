//! Network interfaces plugged into and out of a running guest, as libvirt's AttachDevice/DetachDevice do it over
//! QMP: `netdev_add` (the tap) then `device_add` into a free `hotplug.N` root port (q35's root bus takes no
//! hot-plugged device), and `device_del`, waiting until the guest has let the device go, then `netdev_del`.

use std::time::{Duration, Instant};

use launcher_domain::Nic;
use serde_json::{Value, json};

use crate::vm::Vm;

/// How long a guest gets to release an unplugged device.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);

/// The QMP `device_add` arguments of `nic` on `bus`.
#[must_use]
pub fn device(nic: &Nic, bus: Option<&str>) -> Value {
    let mut d = json!({"driver": nic.model, "id": format!("ua-{}", nic.name), "mac": nic.mac, "romfile": ""});
    if nic.tap.is_some() {
        d["netdev"] = json!(format!("hostua-{}", nic.name));
        if let Some(mtu) = nic.mtu {
            d["host_mtu"] = json!(mtu);
        }
        if nic.queues > 1 {
            d["mq"] = json!(true);
            d["vectors"] = json!(2 * nic.queues + 2);
        }
    }
    if let Some(b) = bus {
        d["bus"] = json!(b);
    }
    d
}

/// The QMP `netdev_add` arguments of `nic`'s tap, if it has one.
#[must_use]
pub fn netdev(nic: &Nic) -> Option<Value> {
    let tap = nic.tap.as_ref()?;
    let mut n = json!({"type": "tap", "id": format!("hostua-{}", nic.name), "ifname": tap,
        "script": "no", "downscript": "no"});
    if nic.vhost {
        n["vhost"] = json!(true);
    }
    if nic.queues > 1 {
        n["queues"] = json!(nic.queues);
    }
    Some(n)
}

impl Vm {
    /// Plugs `nic` into the running guest.
    ///
    /// # Errors
    /// No free port, or QEMU refused (what was added is removed again).
    pub async fn plug(&self, nic: &Nic) -> Result<(), String> {
        let q35 = self.domain.machine.contains("q35");
        let port = if q35 {
            Some(self.take_port(&nic.name).ok_or_else(|| {
                format!(
                    "no free hot-plug port for interface {} (q35 takes {} hot-plugged NICs)",
                    nic.name, self.domain.hotplug_ports
                )
            })?)
        } else {
            None
        };
        let bus = port.map(|p| format!("hotplug.{p}"));
        let added = async {
            if let Some(n) = netdev(nic) {
                self.qmp
                    .execute("netdev_add", Some(n))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Err(e) = self
                .qmp
                .execute("device_add", Some(device(nic, bus.as_deref())))
                .await
            {
                if nic.tap.is_some() {
                    let _ = self
                        .qmp
                        .execute("netdev_del", Some(json!({"id": format!("hostua-{}", nic.name)})))
                        .await;
                }
                return Err(e.to_string());
            }
            Ok(())
        }
        .await;
        match added {
            Ok(()) => {
                self.add_nic(nic.clone());
                tracing::info!(nic = %nic.name, bus = ?bus, "interface plugged");
                Ok(())
            }
            Err(e) => {
                self.free_port(&nic.name);
                Err(format!("plugging interface {}: {e}", nic.name))
            }
        }
    }

    /// Unplugs NIC `name` from the running guest, once the guest has released it.
    ///
    /// # Errors
    /// QEMU refused, or the guest kept the device past the timeout.
    pub async fn unplug(&self, name: &str) -> Result<(), String> {
        let id = format!("ua-{name}");
        match self.qmp.execute("device_del", Some(json!({"id": id}))).await {
            Ok(_) => {}
            // Already gone (an earlier attempt got this far).
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(format!("unplugging interface {name}: {e}")),
        }
        let deadline = Instant::now() + UNPLUG_TIMEOUT;
        while self.has_device(&id).await {
            if Instant::now() > deadline {
                return Err(format!(
                    "the guest did not release interface {name} within {UNPLUG_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = self
            .qmp
            .execute("netdev_del", Some(json!({"id": format!("hostua-{name}")})))
            .await;
        self.free_port(name);
        self.remove_nic(name);
        tracing::info!(nic = %name, "interface unplugged");
        Ok(())
    }

    async fn has_device(&self, id: &str) -> bool {
        let Ok(list) = self
            .qmp
            .execute("qom-list", Some(json!({"path": "/machine/peripheral"})))
            .await
        else {
            return true;
        };
        list.as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"].as_str() == Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic() -> Nic {
        Nic {
            name: "sec".into(),
            model: "virtio-net-pci".into(),
            mac: "02:00:00:00:00:09".into(),
            boot_order: None,
            tap: Some("tap5e31d7ce".into()),
            mtu: Some(1400),
            queues: 2,
            vhost: true,
            link_up: true,
            pci_addr: None,
        }
    }

    #[test]
    fn qmp_arguments_are_the_boot_command_lines() {
        assert_eq!(
            netdev(&nic()).unwrap(),
            json!({"type": "tap", "id": "hostua-sec", "ifname": "tap5e31d7ce", "script": "no", "downscript": "no",
                "vhost": true, "queues": 2})
        );
        assert_eq!(
            device(&nic(), Some("hotplug.1")),
            json!({"driver": "virtio-net-pci", "id": "ua-sec", "mac": "02:00:00:00:00:09", "romfile": "",
                "netdev": "hostua-sec", "host_mtu": 1400, "mq": true, "vectors": 6, "bus": "hotplug.1"})
        );
        let mut bare = nic();
        bare.tap = None;
        assert_eq!(netdev(&bare), None);
        assert!(device(&bare, None).get("netdev").is_none());
    }
}
