//! Box mode's local provisioner on one node (rancher's local-path-provisioner, in process): a claim of a class
//! with [`super::PROVISIONER`] that the volume controllers or the scheduler placed on this node gets a directory
//! `<data dir>/volumes/pvc-<claim uid>` and a PV `pvc-<claim uid>` (`local` path, the node's hostname affinity,
//! the claim's size and access modes, the class's reclaim policy, pre-bound to the claim); a claim bigger than the
//! node's free space, or asking for a block device, is refused with the provisioner's event. A Released PV of this
//! node with reclaim `Delete` loses its directory, then its object.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube_support::resync::{mirror, settle};
use serde_json::json;

use super::PROVISIONER;
use super::plan::{self, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER};

/// Bytes free for unprivileged use on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The node a PV is pinned to by its `kubernetes.io/hostname` affinity.
fn pinned_node(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first().map(String::as_str))
}

/// The PV of a claim provisioned at `path` on `node`.
fn volume_for(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    path: &Path,
) -> serde_json::Value {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "0".to_string(), |q| q.0.clone());
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"), "annotations": {PROVISIONED_BY: PROVISIONER,
            "local.path.provisioner/selected-node": node}},
        "spec": {"capacity": {"storage": size}, "accessModes": spec.access_modes.unwrap_or_default(),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.metadata.name, "volumeMode": "Filesystem",
            "local": {"path": path},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": pvc.metadata.namespace, "name": pvc.metadata.name, "uid": uid}}})
}

/// Provisions and removes this node's volumes until `stop`.
pub(crate) async fn run(
    client: kube::Client,
    node: String,
    data_dir: PathBuf,
    stop: Arc<tokio::sync::Notify>,
) {
    let dir = data_dir.join("volumes");
    let dirty = Arc::new(tokio::sync::Notify::new());
    let (pvcs, t1) = mirror(Api::<PersistentVolumeClaim>::all(client.clone()), dirty.clone());
    let (pvs, t2) = mirror(Api::<PersistentVolume>::all(client.clone()), dirty.clone());
    let (classes, t3) = mirror(Api::<StorageClass>::all(client.clone()), dirty.clone());
    let events = kube_support::Events::new(client.clone(), PROVISIONER);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut refused: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = settle(&dirty) => {}
        }
        let all_pvs = pvs.state();
        for pvc in pvcs.state() {
            let ann = |k: &str| pvc.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            let unbound = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_none_or(str::is_empty);
            if ann(STORAGE_PROVISIONER).as_deref() != Some(PROVISIONER)
                || ann(SELECTED_NODE).as_deref() != Some(node.as_str())
                || !unbound
                || pvc.metadata.deletion_timestamp.is_some()
                || all_pvs
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(format!("pvc-{uid}").as_str()))
            {
                continue;
            }
            let Some(class) = classes.state().into_iter().find(|c| {
                c.metadata.name.as_deref() == pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref())
            }) else {
                continue;
            };
            let path = dir.join(format!("pvc-{uid}"));
            let why = if pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
                Some(format!(
                    "{PROVISIONER} does not support block volume provisioning"
                ))
            } else {
                let want = plan::requested(&pvc);
                let _ = std::fs::create_dir_all(&dir);
                match free_bytes(&dir) {
                    Some(free) if free < want => Some(format!(
                        "not enough space on node {node}: the claim asks for {want} bytes, {free} are free"
                    )),
                    _ => None,
                }
            };
            if let Some(why) = why {
                if refused.insert(uid.clone()) {
                    tracing::warn!(claim = ?pvc.metadata.name, %why, "not provisioned");
                }
                events.warning(
                    &*pvc,
                    "ProvisioningFailed",
                    format!(
                        "failed to provision volume with StorageClass \"{}\": {why}",
                        class.metadata.name.clone().unwrap_or_default()
                    ),
                );
                continue;
            }
            events.normal(
                &*pvc,
                "Provisioning",
                format!(
                    "External provisioner is provisioning volume for claim \"{}/{}\"",
                    pvc.metadata.namespace.clone().unwrap_or_default(),
                    pvc.metadata.name.clone().unwrap_or_default()
                ),
            );
            let made = std::fs::create_dir_all(&path)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    serde_json::from_value::<PersistentVolume>(volume_for(&pvc, &class, &node, &path))
                        .map_err(|e| e.to_string())
                });
            let created = match made {
                Ok(pv) => volumes
                    .create(&PostParams::default(), &pv)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match created {
                Ok(pv) => {
                    let name = pv.metadata.name.unwrap_or_default();
                    tracing::info!(claim = ?pvc.metadata.name, pv = %name, path = %path.display(), "volume provisioned");
                    events.normal(
                        &*pvc,
                        "ProvisioningSucceeded",
                        format!("Successfully provisioned volume {name}"),
                    );
                }
                Err(e) => {
                    let _ = std::fs::remove_dir(&path);
                    events.warning(
                        &*pvc,
                        "ProvisioningFailed",
                        format!("failed to provision volume: {e}"),
                    );
                }
            }
        }
        for pv in all_pvs {
            let spec = pv.spec.as_ref();
            let ours = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PROVISIONED_BY))
                .map(String::as_str)
                == Some(PROVISIONER);
            let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
            let delete = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
            if !(ours && released && delete && pinned_node(&pv) == Some(node.as_str()))
                || pv.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let name = pv.metadata.name.clone().unwrap_or_default();
            // Only what this provisioner made, where it makes it.
            if let Some(path) = spec
                .and_then(|s| s.local.as_ref())
                .map(|l| PathBuf::from(&l.path))
                && path.parent() == Some(dir.as_path())
                && let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(pv = %name, error = %e, "removing a volume's directory");
                continue;
            }
            match volumes.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(pv = %name, "volume deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!(pv = %name, error = %e, "deleting a volume"),
            }
        }
    }
    for t in [t1, t2, t3] {
        t.abort();
    }
}
