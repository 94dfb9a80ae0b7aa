//! StorageProfiles, as CDI keeps them: one per StorageClass (same name, cluster-scoped), its status saying the
//! class, its provisioner, the claim properties in force (the administrator's `spec.claimPropertySets`, else CDI's
//! built-in ones for the provisioner) and the clone strategy (`copy`: host-assisted, the only one box storage has).

use std::sync::Arc;

use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kubevirt_api::cdi::{StorageProfile, StorageProfileStatus};
use serde_json::json;

type Error = kube_support::ApiError;

/// The status `profile` should have for `class`.
#[must_use]
pub(super) fn status_for(class: &StorageClass, profile: Option<&StorageProfile>) -> StorageProfileStatus {
    let spec = profile.map(|p| p.spec.clone()).unwrap_or_default();
    let sets = spec
        .claim_property_sets
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| super::claim::builtin_properties(&class.provisioner));
    StorageProfileStatus {
        storage_class: class.metadata.name.clone(),
        provisioner: Some(class.provisioner.clone()),
        claim_property_sets: Some(sets).filter(|s| !s.is_empty()),
        clone_strategy: Some(spec.clone_strategy.unwrap_or_else(|| "copy".into())),
        data_import_cron_source_format: Some(
            spec.data_import_cron_source_format
                .unwrap_or_else(|| "pvc".into()),
        ),
        snapshot_class: spec.snapshot_class,
    }
}

async fn reconcile(class: Arc<StorageClass>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let name = class.metadata.name.clone().unwrap_or_default();
    let api: Api<StorageProfile> = Api::all((*client).clone());
    let profile = match api.get_opt(&name).await? {
        Some(p) => p,
        None => {
            let fresh: StorageProfile = serde_json::from_value(json!({
                "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                "metadata": {"name": name, "labels": {"app": "containerized-data-importer"}}, "spec": {}
            }))
            .unwrap_or_default();
            match api.create(&PostParams::default(), &fresh).await {
                Ok(p) => p,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let status = status_for(&class, Some(&profile));
    if profile.status.as_ref() != Some(&status) {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}

/// Keeps a StorageProfile per StorageClass until the stream ends.
pub(super) async fn run(client: kube::Client) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let profiles: Api<StorageProfile> = Api::all(client.clone());
    let controller = kube_support::lean_controller(classes, watcher::Config::default()).watches(
        profiles,
        watcher::Config::default(),
        |p: StorageProfile| {
            Some(kube::runtime::reflector::ObjectRef::new(
                p.metadata.name.as_deref()?,
            ))
        },
    );
    kube_support::run_controller(
        "cdi-storageprofile",
        client.clone(),
        controller,
        reconcile,
        Arc::new(client),
    )
    .await;
}
