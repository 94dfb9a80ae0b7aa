//! Secondary networks as Multus attaches them: the pod's `k8s.v1.cni.cncf.io/networks` annotation names
//! NetworkAttachmentDefinitions (`k8s.cni.cncf.io/v1`); each one's CNI configuration is run for the pod in order,
//! on the interface the annotation asks for (else `net1`, `net2`, …), and `k8s.v1.cni.cncf.io/network-status`
//! says what was attached (the primary network first; written only for pods that ask for networks). A running pod
//! whose annotation changes gets networks attached and detached ([`update`], Multus' dynamic networks controller).
//! What was attached is kept in the pod's directory, so it is
//! detached with the configuration it was attached with even when the definition has changed or gone since.
//! host-local IPAM without a `dataDir` keeps its leases under the node's data directory, like the primary network's.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cni::{self, Attached};

/// The annotation naming the networks.
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// The annotation saying what was attached.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// One requested network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The definition's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pod interface.
    pub interface: String,
}

/// One attached network, as kept for detaching.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The configuration it was attached with.
    pub config: Value,
    /// The pod interface.
    pub interface: String,
    /// Its network-status entry (once attached).
    #[serde(default)]
    pub status: Value,
}

/// The networks the pod asks for: the annotation's JSON list (`name`, `namespace`, `interface`) or its short form
/// (`[ns/]name[@interface]`, comma-separated).
///
/// # Errors
/// A malformed annotation, in words naming it.
pub fn requested(pod: &Pod) -> Result<Vec<Request>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let Some(text) = pod.metadata.annotations.as_ref().and_then(|a| a.get(NETWORKS)) else {
        return Ok(Vec::new());
    };
    let default_iface = |i: usize| format!("net{}", i + 1);
    let text = text.trim();
    if text.starts_with('[') {
        #[derive(Deserialize)]
        struct Element {
            name: String,
            namespace: Option<String>,
            interface: Option<String>,
        }
        let list: Vec<Element> =
            serde_json::from_str(text).map_err(|e| format!("parsing the {NETWORKS} annotation: {e}"))?;
        return Ok(list
            .into_iter()
            .enumerate()
            .map(|(i, e)| Request {
                namespace: e.namespace.unwrap_or_else(|| namespace.to_string()),
                name: e.name,
                interface: e.interface.unwrap_or_else(|| default_iface(i)),
            })
            .collect());
    }
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, item)| {
            let (net, iface) = item.split_once('@').map_or((item, None), |(n, f)| (n, Some(f)));
            let (ns, name) = net.split_once('/').unwrap_or((namespace, net));
            if name.is_empty() {
                return Err(format!("{NETWORKS}: {item:?} names no network"));
            }
            Ok(Request {
                namespace: ns.to_string(),
                name: name.to_string(),
                interface: iface.map_or_else(|| default_iface(i), str::to_string),
            })
        })
        .collect()
}

fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// The CNI configuration of `r`, with host-local leases kept under `ipam_dir` unless it says where.
async fn config(client: &kube::Client, r: &Request, ipam_dir: &Path) -> Result<Value, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &r.namespace, &nad_resource());
    let nad = api.get(&r.name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "cannot find a network-attachment-definition ({}) in namespace ({}): network-attachment-definitions.k8s.cni.cncf.io \"{}\" not found",
            r.name, r.namespace, r.name
        ),
        other => format!("getting network-attachment-definition {}/{}: {other}", r.namespace, r.name),
    })?;
    let text = nad
        .data
        .pointer("/spec/config")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut conf: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "network-attachment-definition {}/{}: spec.config is not JSON: {e}",
            r.namespace, r.name
        )
    })?;
    let mut ipams: Vec<&mut Value> = match conf.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(list) => list.iter_mut().filter_map(|p| p.get_mut("ipam")).collect(),
        None => conf.get_mut("ipam").into_iter().collect(),
    };
    for ipam in &mut ipams {
        if ipam.get("type").and_then(Value::as_str) == Some("host-local") && ipam.get("dataDir").is_none() {
            ipam["dataDir"] = json!(ipam_dir);
        }
    }
    Ok(conf)
}

fn saved(dir: &Path) -> PathBuf {
    dir.join("networks.json")
}

/// Attaches the pod's secondary networks in a new sandbox `netns` and returns their network-status entries; on
/// failure what was attached is detached again.
///
/// # Errors
/// Why a network could not be attached (the definition is missing or its plugin failed).
pub async fn attach(
    client: &kube::Client,
    bin_dir: &Path,
    ipam_dir: &Path,
    pod: &Pod,
    dir: &Path,
    netns: &Path,
    id: &str,
) -> Result<Vec<Value>, String> {
    // A new sandbox has nothing attached, whatever an earlier one left on record.
    let _ = std::fs::remove_file(saved(dir));
    match update(client, bin_dir, ipam_dir, pod, dir, netns, id).await {
        Ok(entries) => Ok(entries.unwrap_or_default()),
        Err(e) => {
            detach(bin_dir, dir, netns, id).await;
            Err(e)
        }
    }
}

fn write(dir: &Path, list: &[Attachment]) -> Result<(), String> {
    let text = serde_json::to_vec(list).map_err(|e| e.to_string())?;
    std::fs::write(saved(dir), text).map_err(|e| format!("recording the pod's networks: {e}"))
}

fn load(dir: &Path) -> Vec<Attachment> {
    std::fs::read(saved(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Brings a running pod's secondary networks in line with its annotation, as Multus' dynamic networks controller
/// does: detaches those no longer asked for, attaches those newly asked for; the network-status entries of all
/// when something changed.
///
/// # Errors
/// Why a new network could not be attached (it is detached again; the others stay).
pub async fn update(
    client: &kube::Client,
    bin_dir: &Path,
    ipam_dir: &Path,
    pod: &Pod,
    dir: &Path,
    netns: &Path,
    id: &str,
) -> Result<Option<Vec<Value>>, String> {
    let wanted = requested(pod)?;
    let mut list = load(dir);
    let before = list.len();
    let mut changed = false;
    for a in list
        .iter()
        .rev()
        .filter(|a| !wanted.iter().any(|r| r.interface == a.interface))
    {
        if let Err(e) = cni::run(bin_dir, "DEL", &a.config, id, netns, &a.interface).await {
            tracing::warn!(interface = %a.interface, error = %e, "detaching a secondary network");
        }
        tracing::info!(interface = %a.interface, "secondary network detached");
    }
    list.retain(|a| wanted.iter().any(|r| r.interface == a.interface));
    changed |= list.len() != before;
    let new: Vec<&Request> = wanted
        .iter()
        .filter(|r| !list.iter().any(|a| a.interface == r.interface))
        .collect();
    for r in new {
        let conf = config(client, r, ipam_dir).await?;
        list.push(Attachment {
            config: conf.clone(),
            interface: r.interface.clone(),
            status: Value::Null,
        });
        write(dir, &list)?;
        match cni::run(bin_dir, "ADD", &conf, id, netns, &r.interface).await {
            Ok(result) => {
                let name = format!("{}/{}", r.namespace, r.name);
                if let Some(last) = list.last_mut() {
                    last.status = entry(&name, &r.interface, &result, false);
                }
                tracing::info!(interface = %r.interface, network = %name, "secondary network attached");
                changed = true;
            }
            Err(e) => {
                let _ = cni::run(bin_dir, "DEL", &conf, id, netns, &r.interface).await;
                list.pop();
                write(dir, &list)?;
                return Err(format!("network {}/{}: {e}", r.namespace, r.name));
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    write(dir, &list)?;
    Ok(Some(list.into_iter().map(|a| a.status).collect()))
}

/// Rewrites a pod's network-status with `others` after its primary network's entry (kept as it was; `primary`
/// when there was none).
///
/// # Errors
/// The API refused the write.
pub async fn republish(
    pods: &Api<Pod>,
    pod: &Pod,
    primary: Value,
    others: Vec<Value>,
) -> Result<(), kube::Error> {
    let current: Vec<Value> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_STATUS))
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let mut all: Vec<Value> = current
        .into_iter()
        .filter(|e| e["default"] == json!(true))
        .take(1)
        .collect();
    if all.is_empty() {
        all.push(primary);
    }
    all.extend(others);
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {NETWORK_STATUS: text}}});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Detaches what [`attach`] attached (last first) and forgets it.
pub async fn detach(bin_dir: &Path, dir: &Path, netns: &Path, id: &str) {
    let list = load(dir);
    for a in list.iter().rev() {
        if let Err(e) = cni::run(bin_dir, "DEL", &a.config, id, netns, &a.interface).await {
            tracing::warn!(interface = %a.interface, error = %e, "detaching a secondary network");
        }
    }
    let _ = std::fs::remove_file(saved(dir));
}

/// A network-status entry from an ADD result.
#[must_use]
pub fn entry(name: &str, interface: &str, result: &Value, default: bool) -> Value {
    let ips: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("address").and_then(Value::as_str))
        .filter_map(|a| a.split('/').next().map(str::to_string))
        .collect();
    let mut e = json!({"name": name, "interface": interface, "dns": {}});
    if !ips.is_empty() {
        e["ips"] = json!(ips);
    }
    if let Some(mac) = cni::sandbox_mac(result, interface) {
        e["mac"] = json!(mac);
    }
    if default {
        e["default"] = json!(true);
    }
    e
}

/// Writes the pod's network-status annotation: the primary network (`primary`, attached as `eth0`), then `others`.
///
/// # Errors
/// The API refused the write.
pub async fn publish(
    pods: &Api<Pod>,
    name: &str,
    network: &str,
    primary: &Attached,
    others: Vec<Value>,
) -> Result<(), kube::Error> {
    let mut first =
        json!({"name": network, "interface": "eth0", "ips": primary.ips, "default": true, "dns": {}});
    if let Some(mac) = &primary.mac {
        first["mac"] = json!(mac);
    }
    let mut all = vec![first];
    all.extend(others);
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {NETWORK_STATUS: text}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotation: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns",
            "annotations": {NETWORKS: annotation}}}))
        .unwrap()
    }

    #[test]
    fn the_annotation_reads_in_both_forms() {
        let json_form =
            pod(r#"[{"name": "a", "namespace": "other", "interface": "pod16477688c0e"}, {"name": "b"}]"#);
        assert_eq!(
            requested(&json_form).unwrap(),
            [
                Request {
                    namespace: "other".into(),
                    name: "a".into(),
                    interface: "pod16477688c0e".into()
                },
                Request {
                    namespace: "ns".into(),
                    name: "b".into(),
                    interface: "net2".into()
                },
            ]
        );
        let short = pod("a, other/b@eth9");
        assert_eq!(
            requested(&short).unwrap(),
            [
                Request {
                    namespace: "ns".into(),
                    name: "a".into(),
                    interface: "net1".into()
                },
                Request {
                    namespace: "other".into(),
                    name: "b".into(),
                    interface: "eth9".into()
                },
            ]
        );
        assert!(requested(&pod("[{")).unwrap_err().contains(NETWORKS));
        assert!(requested(&Pod::default()).unwrap().is_empty());
    }

    #[test]
    fn status_entries_carry_ips_and_the_sandbox_mac() {
        let result = json!({"cniVersion": "1.0.0", "interfaces": [
            {"name": "kvbm0", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "pod16477688c0e", "mac": "7e:00:00:00:00:01", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "192.168.41.5/24", "interface": 1}]});
        assert_eq!(
            entry("ns/a", "pod16477688c0e", &result, false),
            json!({"name": "ns/a", "interface": "pod16477688c0e", "ips": ["192.168.41.5"], "mac": "7e:00:00:00:00:01", "dns": {}})
        );
    }
}
