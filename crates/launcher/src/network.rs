//! Network phase 2 (the launcher's half): the node agent's plumbing turned into NIC backends for the Domain, the
//! vhost-net probe, and the DHCP servers started on the in-pod bridges before QEMU.

use std::collections::BTreeMap;
use std::path::Path;

use kubevirt_api::v1::VirtualMachineInstance;
use launcher_domain::NicBackend;
use launcher_protocol::network::PlumbedInterface;

use crate::dhcp;

/// The NIC backends phase 1 made, by interface name.
#[must_use]
pub fn backends(network: &[PlumbedInterface]) -> BTreeMap<String, NicBackend> {
    network
        .iter()
        .map(|n| {
            let backend = NicBackend {
                tap: n.tap.clone(),
                mtu: Some(n.mtu),
                queues: n.queues.max(1),
                mac: n.mac.clone(),
            };
            (n.name.clone(), backend)
        })
        .collect()
}

/// Whether `/dev/vhost-net` opens (QEMU 7.2 aborts when asked for vhost without it).
#[must_use]
pub fn vhost_net_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vhost-net")
        .is_ok()
}

/// The pod's resolver configuration: the container's `/etc/resolv.conf` under `mount_root` if there is one, else
/// this process's.
#[must_use]
pub fn resolv_conf(mount_root: Option<&Path>) -> String {
    mount_root
        .map(|r| r.join("etc/resolv.conf"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::fs::read_to_string("/etc/resolv.conf").ok())
        .unwrap_or_default()
}

/// DHCP servers that run until dropped.
#[derive(Debug, Default)]
pub struct Servers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Starts a DHCPv4 server on the bridge of every interface that hands out an address (and a DHCPv6 server where
/// it hands out an IPv6 one).
///
/// # Errors
/// A server could not listen (naming the interface and bridge).
pub fn start_dhcp(
    vmi: &VirtualMachineInstance,
    network: &[PlumbedInterface],
    resolv: &str,
) -> Result<Servers, String> {
    let mut servers = Servers::default();
    for nic in network {
        if let Some(service) = crate::dhcp6::service(nic, resolv) {
            let task = crate::dhcp6::serve(&nic.bridge, service).map_err(|e| {
                format!(
                    "starting the DHCPv6 server of interface {} on {}: {e}",
                    nic.name, nic.bridge
                )
            })?;
            servers.0.push(task);
        }
        let Some(service) = dhcp::service(vmi, nic, resolv) else {
            continue;
        };
        let task = dhcp::serve(&nic.bridge, service).map_err(|e| {
            format!(
                "starting the DHCP server of interface {} on {}: {e}",
                nic.name, nic.bridge
            )
        })?;
        servers.0.push(task);
    }
    Ok(servers)
}
