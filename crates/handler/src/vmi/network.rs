//! Network phase 1 for a VMI (upstream's "netpod"): what each pod-network interface needs plumbed, applied once in
//! the launcher pod's network namespace (entered through the launcher's pid, from its socket's peer credentials),
//! with a per-VMI cache so a restarted node agent hands the launcher the same result instead of plumbing twice.

use std::path::{Path, PathBuf};

use kubevirt_api::network::{Binding as ApiBinding, PodNic};
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_protocol::Peer;
use launcher_protocol::network::PlumbedInterface;
use netplumb::nft::Forward;
use netplumb::{Binding, Request};
use serde::{Deserialize, Serialize};

/// Upstream's default `vmNetworkCIDR`.
const VM_CIDR: &str = "10.0.2.0/24";
/// Upstream's default `vmIPv6NetworkCIDR`.
const VM_CIDR6: &str = "fd10:0:2::/120";

/// The per-VMI cache (upstream's network-info cache): started, then finished with what the launcher gets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cache {
    finished: bool,
    #[serde(default)]
    interfaces: Vec<PlumbedInterface>,
}

/// What phase 1 does for one interface.
#[must_use]
pub fn request(vmi: &VirtualMachineInstance, nic: &PodNic<'_>, owner: (u32, u32)) -> Request {
    let binding = match nic.binding {
        ApiBinding::Bridge => Binding::Bridge,
        ApiBinding::Masquerade => {
            let pod = nic.network.pod.as_ref();
            Binding::Masquerade {
                vm_cidr: pod
                    .and_then(|p| p.vm_network_cidr.clone())
                    .unwrap_or_else(|| VM_CIDR.into()),
                vm_cidr6: pod
                    .and_then(|p| p.vm_ipv6_network_cidr.clone())
                    .unwrap_or_else(|| VM_CIDR6.into()),
                forward: forward(nic),
            }
        }
    };
    Request {
        name: nic.iface.name.clone(),
        index: nic.index,
        binding,
        pod_iface: nic.pod_iface.clone(),
        bridge: nic.bridge(),
        tap: nic.tap(),
        queues: kubevirt_api::network::queues(vmi, nic.iface),
        owner,
        spec_mac: nic
            .iface
            .mac_address
            .as_deref()
            .map(|m| m.to_ascii_lowercase().replace('-', ":")),
    }
}

/// The ports a masquerade interface forwards: `ports` (protocol default TCP), else `portRanges`, else all.
fn forward(nic: &PodNic<'_>) -> Forward {
    let proto = |p: Option<&str>| p.unwrap_or("TCP").to_ascii_lowercase();
    let mut list: Vec<(String, String)> = nic
        .iface
        .ports
        .iter()
        .flatten()
        .map(|p| (proto(p.protocol.as_deref()), p.port.to_string()))
        .collect();
    list.extend(
        nic.iface
            .port_ranges
            .iter()
            .flatten()
            .map(|r| (proto(Some(&r.protocol)), format!("{}-{}", r.start, r.end))),
    );
    if list.is_empty() {
        Forward::All
    } else {
        Forward::Ports(list)
    }
}

/// Plumbs `vmi`'s pod-network interfaces in the namespace of the launcher behind `peer`, once: the cache under
/// `dir` answers every later call.
///
/// # Errors
/// Why the network could not be prepared, in upstream's words where it has them.
pub async fn prepare(
    vmi: &VirtualMachineInstance,
    peer: Option<Peer>,
    dir: &Path,
) -> Result<Vec<PlumbedInterface>, String> {
    let nics = kubevirt_api::network::pod_nics(vmi);
    if nics.is_empty() {
        return Ok(Vec::new());
    }
    let cache = dir.join("network-info.json");
    if let Some(c) = read(&cache) {
        if c.finished {
            return Ok(c.interfaces);
        }
        let names: Vec<&str> = nics.iter().map(|n| n.iface.name.as_str()).collect();
        return Err(format!("preparation for networks {names:?} cannot be restarted"));
    }
    let peer = peer.ok_or("the launcher's process is not known (no peer credentials on its socket)")?;
    let pid = peer.pid.ok_or("the launcher's pid is not known")?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    write(
        &cache,
        &Cache {
            finished: false,
            interfaces: Vec::new(),
        },
    )?;
    let mut out = Vec::new();
    for nic in &nics {
        let req = request(vmi, nic, (peer.uid, peer.gid));
        let fail = |e: netplumb::PlumbError| format!("failed to configure vmi network {}: {e}", req.name);
        let link = netplumb::discover(&netns, &req.pod_iface).await.map_err(fail)?;
        let plan = netplumb::plan::plan(&req, &link).map_err(fail)?;
        netplumb::apply(&netns, &plan).await.map_err(fail)?;
        tracing::info!(iface = %req.name, tap = %req.tap, "network phase 1 done");
        out.push(plan.result);
    }
    write(
        &cache,
        &Cache {
            finished: true,
            interfaces: out.clone(),
        },
    )?;
    Ok(out)
}

/// The interfaces phase 1 made for the VMI whose launcher directory is `dir` (none until it finished).
#[must_use]
pub fn plumbed(dir: &Path) -> Vec<PlumbedInterface> {
    read(&dir.join("network-info.json"))
        .filter(|c| c.finished)
        .map(|c| c.interfaces)
        .unwrap_or_default()
}

/// Phase 1 for interfaces plugged into a running VMI (their pod interfaces must be there: the pod's secondary
/// networks are attached first); the cache lists them too. Returns what the VMI's interfaces now have.
///
/// # Errors
/// An interface could not be plumbed yet (its pod interface missing) or at all.
pub async fn plumb_added(
    vmi: &VirtualMachineInstance,
    peer: Option<Peer>,
    dir: &Path,
) -> Result<Vec<PlumbedInterface>, String> {
    let cache = dir.join("network-info.json");
    let nics = kubevirt_api::network::pod_nics(vmi);
    let mut have = plumbed(dir);
    let added: Vec<&PodNic<'_>> = nics
        .iter()
        .filter(|n| !have.iter().any(|p| p.name == n.iface.name))
        .collect();
    if !added.is_empty() {
        let peer = peer.ok_or("the launcher's process is not known")?;
        let pid = peer.pid.ok_or("the launcher's pid is not known")?;
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        for nic in added {
            let req = request(vmi, nic, (peer.uid, peer.gid));
            let fail = |e: netplumb::PlumbError| format!("failed to configure vmi network {}: {e}", req.name);
            let link = netplumb::discover(&netns, &req.pod_iface).await.map_err(|e| {
                format!(
                    "interface {}: pod interface {} not attached yet: {e}",
                    req.name, req.pod_iface
                )
            })?;
            let plan = netplumb::plan::plan(&req, &link).map_err(fail)?;
            netplumb::apply(&netns, &plan).await.map_err(fail)?;
            tracing::info!(iface = %req.name, tap = %req.tap, "network phase 1 done (plugged)");
            have.push(plan.result);
            write(
                &cache,
                &Cache {
                    finished: true,
                    interfaces: have.clone(),
                },
            )?;
        }
    }
    Ok(have
        .into_iter()
        .filter(|p| nics.iter().any(|n| n.iface.name == p.name))
        .collect())
}

/// Undoes phase 1 of the interfaces no longer on the VMI (unplugged) and drops them from the cache.
pub async fn unplumb_removed(vmi: &VirtualMachineInstance, peer: Option<Peer>, dir: &Path) {
    let nics = kubevirt_api::network::pod_nics(vmi);
    let (keep, gone): (Vec<_>, Vec<_>) = plumbed(dir)
        .into_iter()
        .partition(|p| nics.iter().any(|n| n.iface.name == p.name));
    if gone.is_empty() {
        return;
    }
    if let Some(pid) = peer.and_then(|p| p.pid) {
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        for g in &gone {
            match netplumb::unplumb(&netns, g).await {
                Ok(()) => tracing::info!(iface = %g.name, "network phase 1 undone (unplugged)"),
                Err(e) => tracing::warn!(iface = %g.name, error = %e, "undoing network phase 1"),
            }
        }
    }
    let cache = dir.join("network-info.json");
    if let Err(e) = write(
        &cache,
        &Cache {
            finished: true,
            interfaces: keep,
        },
    ) {
        tracing::warn!(error = %e, "updating the network cache");
    }
}

fn read(path: &Path) -> Option<Cache> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write(path: &Path, cache: &Cache) -> Result<(), String> {
    let text = serde_json::to_vec(cache).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing the network cache {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi(iface: serde_json::Value, network: serde_json::Value) -> VirtualMachineInstance {
        serde_json::from_value(json!({"metadata": {"name": "v", "namespace": "ns"}, "spec": {
            "domain": {"cpu": {"cores": 2}, "devices": {"networkInterfaceMultiqueue": true, "interfaces": [iface]}},
            "networks": [network]}}))
        .unwrap()
    }

    #[test]
    fn masquerade_requests_carry_cidrs_ports_queues_and_owner() {
        let v = vmi(
            json!({"name": "default", "masquerade": {}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}),
            json!({"name": "default", "pod": {"vmNetworkCIDR": "10.11.0.0/24"}}),
        );
        let nics = kubevirt_api::network::pod_nics(&v);
        let r = request(&v, &nics[0], (107, 108));
        assert_eq!(
            r.binding,
            Binding::Masquerade {
                vm_cidr: "10.11.0.0/24".into(),
                vm_cidr6: VM_CIDR6.into(),
                forward: Forward::Ports(vec![("tcp".into(), "80".into()), ("udp".into(), "53".into())]),
            }
        );
        assert_eq!(
            (r.queues, r.owner, r.tap.as_str(), r.bridge.as_str()),
            (2, (107, 108), "tap0", "k6t-eth0")
        );
    }

    #[test]
    fn bridge_requests_carry_the_spec_mac() {
        let v = vmi(
            json!({"name": "default", "bridge": {}, "macAddress": "DE-AD-00-00-BE-EF"}),
            json!({"name": "default", "pod": {}}),
        );
        let nics = kubevirt_api::network::pod_nics(&v);
        let r = request(&v, &nics[0], (0, 0));
        assert_eq!(
            (r.binding, r.spec_mac.as_deref()),
            (Binding::Bridge, Some("de:ad:00:00:be:ef"))
        );
    }

    #[tokio::test]
    async fn a_finished_cache_answers_and_a_started_one_refuses() {
        let dir = std::env::temp_dir().join(format!("handler-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = vmi(
            json!({"name": "default", "masquerade": {}}),
            json!({"name": "default", "pod": {}}),
        );
        write(
            &dir.join("network-info.json"),
            &Cache {
                finished: false,
                interfaces: Vec::new(),
            },
        )
        .unwrap();
        let e = prepare(&v, None, &dir).await.unwrap_err();
        assert!(e.contains("cannot be restarted"), "{e}");
        write(
            &dir.join("network-info.json"),
            &Cache {
                finished: true,
                interfaces: Vec::new(),
            },
        )
        .unwrap();
        assert_eq!(prepare(&v, None, &dir).await, Ok(Vec::new()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
