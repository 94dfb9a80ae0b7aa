//! Storage in box mode, which has no kube-controller-manager and no CSI driver: the default StorageClass `local`,
//! the volume controllers kube-controller-manager runs ([`plan`]: PV binding, the default class, the protection
//! finalizers) on the server, and on every node a local provisioner ([`provisioner`]): a directory per volume under
//! the node's data dir, a PV with the node's affinity, removed again when its claim goes (reclaim `Delete`).
//! Cluster mode uses the cluster's own controllers and CSI drivers; nothing here is known to the controllers.

pub(crate) mod plan;
pub(crate) mod provisioner;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_support::resync::{mirror, settle};
use serde_json::json;

use plan::Step;

/// The provisioner of box mode's local volumes.
pub(crate) const PROVISIONER: &str = "kubevirt-rs.io/local";

/// Creates the default StorageClass `local` (`WaitForFirstConsumer`, expandable, reclaim `Delete`) at first start.
///
/// # Errors
/// The API refused.
pub(crate) async fn ensure_default_class(client: &kube::Client) -> Result<(), kube::Error> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    if classes.get_opt("local").await?.is_some() {
        return Ok(());
    }
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local", "annotations": {plan::DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true, "reclaimPolicy": "Delete",
    }))
    .map_err(kube::Error::SerdeError)?;
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The volume controllers, until `stop`.
pub(crate) async fn controllers(client: kube::Client, stop: Arc<tokio::sync::Notify>) {
    let dirty = Arc::new(tokio::sync::Notify::new());
    let (pvcs, t1) = mirror(Api::<PersistentVolumeClaim>::all(client.clone()), dirty.clone());
    let (pvs, t2) = mirror(Api::<PersistentVolume>::all(client.clone()), dirty.clone());
    let (classes, t3) = mirror(Api::<StorageClass>::all(client.clone()), dirty.clone());
    let (pods, t4) = mirror(Api::<Pod>::all(client.clone()), dirty.clone());
    let (nodes, t5) = mirror(Api::<Node>::all(client.clone()), dirty.clone());
    let events = kube_support::Events::new(client.clone(), "persistentvolume-controller");
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = settle(&dirty) => {}
        }
        let mut ready_nodes: Vec<String> = nodes
            .state()
            .iter()
            .filter(|n| ready(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        ready_nodes.sort();
        let steps = plan::plan(
            &pvcs.state(),
            &pvs.state(),
            &classes.state(),
            &pods.state(),
            &ready_nodes,
        );
        for step in steps {
            let span = tracing::info_span!("volumes", step = ?step);
            let work = apply(&client, &pvcs, &events, step);
            if let Err(e) = tracing::Instrument::instrument(work, span).await {
                tracing::warn!(error = %e, "volume controller");
            }
        }
    }
    for t in [t1, t2, t3, t4, t5] {
        t.abort();
    }
}

async fn apply(
    client: &kube::Client,
    pvcs: &kube::runtime::reflector::Store<PersistentVolumeClaim>,
    events: &kube_support::Events,
    step: Step,
) -> Result<(), kube::Error> {
    let params = PatchParams::default();
    let claims = |ns: &str| Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    match step {
        Step::SetClass(c, class) => {
            let patch = json!({"spec": {"storageClassName": class}});
            claims(&c.namespace)
                .patch(&c.name, &params, &Patch::Merge(&patch))
                .await?;
        }
        Step::BindClaim {
            claim,
            pv,
            capacity,
            access_modes,
        } => {
            let patch = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes"}}, "spec": {"volumeName": pv}});
            let api = claims(&claim.namespace);
            api.patch(&claim.name, &params, &Patch::Merge(&patch)).await?;
            let status =
                json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": access_modes}});
            api.patch_status(&claim.name, &params, &Patch::Merge(&status))
                .await?;
            tracing::info!(claim = %format!("{}/{}", claim.namespace, claim.name), %pv, "claim bound");
        }
        Step::ClaimPv(pv, c) => {
            let patch = json!({"metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
                "spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": c.namespace, "name": c.name, "uid": c.uid}}});
            volumes.patch(&pv, &params, &Patch::Merge(&patch)).await?;
        }
        Step::Provision {
            claim,
            provisioner,
            node,
        } => {
            let mut annotations = json!({plan::STORAGE_PROVISIONER: provisioner,
                plan::BETA_STORAGE_PROVISIONER: provisioner});
            if let Some(n) = &node {
                annotations[plan::SELECTED_NODE] = json!(n);
            }
            claims(&claim.namespace)
                .patch(
                    &claim.name,
                    &params,
                    &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
                )
                .await?;
            let cached =
                pvcs.get(&kube::runtime::reflector::ObjectRef::new(&claim.name).within(&claim.namespace));
            if let Some(pvc) = cached {
                if node.is_none() {
                    events.normal(
                        &*pvc,
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding".into(),
                    );
                } else {
                    events.normal(
                        &*pvc,
                        "ExternalProvisioning",
                        format!("Waiting for a volume to be created by the external provisioner '{provisioner}' or manually by the system administrator."),
                    );
                }
            }
        }
        Step::PvPhase(pv, phase) => {
            let patch = json!({"status": {"phase": phase,
                "lastPhaseTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_default().to_string()}});
            volumes.patch_status(&pv, &params, &Patch::Merge(&patch)).await?;
        }
        Step::ClaimLost(c) => {
            let status = json!({"status": {"phase": "Lost"}});
            claims(&c.namespace)
                .patch_status(&c.name, &params, &Patch::Merge(&status))
                .await?;
        }
        Step::ReleaseClaim(c) => {
            let api = claims(&c.namespace);
            if let Some(pvc) = api.get_opt(&c.name).await? {
                let rest: Vec<String> = pvc
                    .metadata
                    .finalizers
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != plan::PVC_PROTECTION)
                    .collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pvc.metadata.resource_version}});
                api.patch(&c.name, &params, &Patch::Merge(&patch)).await?;
            }
        }
        Step::ReleasePv(name) => {
            if let Some(pv) = volumes.get_opt(&name).await? {
                let rest: Vec<String> = pv
                    .metadata
                    .finalizers
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != plan::PV_PROTECTION)
                    .collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pv.metadata.resource_version}});
                volumes.patch(&name, &params, &Patch::Merge(&patch)).await?;
            }
        }
    }
    Ok(())
}
