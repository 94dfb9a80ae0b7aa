//! CDI's DataVolume controller: a DataVolume gets its claim (same name, owned by it), an importer pod
//! (`importer-<claim>`, owned by the claim) once the claim may be consumed, and a status that follows the import —
//! upstream's phases, `status.progress` scraped from the importer's metrics every 2 s, the restart count, the
//! Bound/Ready/Running conditions and events. A populated claim is marked (`storage.pod.phase: Succeeded`) so the
//! DataVolume stays Succeeded after its importer pod is gone. StorageProfiles are kept for every StorageClass
//! ([`profiles`]).

pub mod claim;
pub mod decide;
mod profiles;
mod progress;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kubevirt_api::cdi::{DataVolume, DataVolumeCondition, DataVolumeStatus, StorageProfile};
use serde_json::json;

use claim::ann;
use decide::{State, Step};

/// Why a reconcile failed: only API calls fail it.
type Error = kube_support::ApiError;

struct Ctx {
    client: kube::Client,
    events: kube_support::Events,
    importer_image: String,
    upload_image: String,
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Whether `pvc` is `dv`'s: controlled by it, or adoptable.
fn ours(pvc: &PersistentVolumeClaim, dv: &DataVolume) -> bool {
    let controlled = pvc
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == dv.metadata.uid.as_ref());
    let adopt = dv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ann::ALLOW_ADOPTION))
        .is_some_and(|v| v == "true");
    controlled || adopt
}

async fn reconcile(dv: Arc<DataVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if dv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = dv.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = dv.metadata.name.clone().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let classes: Vec<StorageClass> = Api::<StorageClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pvc = match pvcs.get_opt(&name).await? {
        Some(p) if ours(&p, &dv) => Some(p),
        Some(_) => {
            let msg = format!("Resource {name:?} already exists and is not managed by DataVolume");
            ctx.events.warning(&*dv, "ErrResourceExists", msg);
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        // Without a claim (it cannot be rendered: the event says why) the DataVolume stays Pending.
        None => create_claim(&ctx, &dv, &pvcs, &classes).await?,
    };
    let class_name = pvc
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.storage_class_name.clone());
    let waits = classes.iter().any(|c| {
        c.metadata.name == class_name && c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
    });
    let pod_name = decide::worker_name(&dv, &name);
    let pod = pods.get_opt(&pod_name).await?.filter(|p| {
        // An importer of an earlier claim of the same name is not this one's.
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == pvc.as_ref().and_then(|c| c.metadata.uid.as_ref()))
    });
    let (state, steps) = decide::decide(&dv, pvc.as_ref(), waits, pod.as_ref());
    if let Some(pvc) = &pvc {
        apply(&ctx, &dv, pvc, &pods, &pvcs, &steps, &state).await?;
    }
    let progress = match state.phase {
        "Succeeded" => "100.0%".to_string(),
        "ImportInProgress" if !decide::is_upload(&dv) => {
            progress::scrape(pod.as_ref(), dv.metadata.uid.as_deref().unwrap_or_default())
                .await
                .or_else(|| dv.status.as_ref().and_then(|s| s.progress.clone()))
                .unwrap_or_else(|| "N/A".into())
        }
        _ => "N/A".to_string(),
    };
    write_status(&ctx, &dv, &state, &progress, &name).await?;
    Ok(match state.phase {
        "ImportInProgress" | "UploadReady" => Action::requeue(Duration::from_secs(2)),
        "ImportScheduled" | "UploadScheduled" | "Pending" => Action::requeue(Duration::from_secs(5)),
        _ => Action::await_change(),
    })
}

/// Creates `dv`'s claim; `None` when it cannot be rendered (the event says why) or the source is not imported.
async fn create_claim(
    ctx: &Ctx,
    dv: &DataVolume,
    pvcs: &Api<PersistentVolumeClaim>,
    classes: &[StorageClass],
) -> Result<Option<PersistentVolumeClaim>, Error> {
    if claim::import_source(dv).is_none() {
        let msg =
            "this DataVolume source is not supported by kubevirt-rs yet (http, upload, blank and pvc are)"
                .to_string();
        ctx.events.warning(dv, "ErrUnsupportedSource", msg);
        return Ok(None);
    }
    let profiles: Vec<StorageProfile> = Api::<StorageProfile>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let overhead: f64 = claim::DEFAULT_OVERHEAD.parse().unwrap_or(0.06);
    let spec = match claim::spec_for(dv, classes, &profiles, overhead) {
        Ok(s) => s,
        Err(e) => {
            ctx.events.warning(dv, "ErrClaimNotValid", e.to_string());
            return Ok(None);
        }
    };
    match pvcs
        .create(&PostParams::default(), &claim::render(dv, spec))
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(pvcs
            .get_opt(dv.metadata.name.as_deref().unwrap_or_default())
            .await?),
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 422) => {
            let reason = if e.code == 403 {
                "ErrExceededQuota"
            } else {
                "ErrClaimNotValid"
            };
            ctx.events.warning(dv, reason, e.message.clone());
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Carries out `steps` and keeps the claim's annotations in step with the importer.
async fn apply(
    ctx: &Ctx,
    dv: &DataVolume,
    pvc: &PersistentVolumeClaim,
    pods: &Api<Pod>,
    pvcs: &Api<PersistentVolumeClaim>,
    steps: &[Step],
    state: &State,
) -> Result<(), Error> {
    let claim_name = pvc.metadata.name.clone().unwrap_or_default();
    let mut anns = serde_json::Map::new();
    let current = |k: &str| pvc.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    if current(ann::POD_RESTARTS).as_deref() != Some(&state.restarts.to_string()) && state.restarts > 0 {
        anns.insert(ann::POD_RESTARTS.into(), json!(state.restarts.to_string()));
    }
    for step in steps {
        match step {
            Step::CreatePod => {
                let pod = if decide::is_upload(dv) {
                    decide::upload_pod(dv, pvc, &ctx.upload_image, claim::DEFAULT_OVERHEAD)
                } else {
                    decide::importer_pod(dv, pvc, &ctx.importer_image, claim::DEFAULT_OVERHEAD)
                };
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(_) if !decide::is_upload(dv) => {
                        anns.insert(ann::IMPORT_POD.into(), json!(decide::pod_name(&claim_name)));
                    }
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::DeletePod => {
                let dp = DeleteParams::default();
                match pods.delete(&decide::worker_name(dv, &claim_name), &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::MarkPopulated => {
                anns.insert(ann::POD_PHASE.into(), json!("Succeeded"));
                anns.insert(ann::POD_READY.into(), json!("false"));
                ctx.events
                    .normal(pvc, "ImportSucceeded", "Import Successful".into());
            }
        }
    }
    // The upload proxy waits for a ready upload server.
    let ready = (state.phase == "UploadReady").to_string();
    if decide::is_upload(dv)
        && state.phase != "Succeeded"
        && current(ann::POD_READY).as_deref() != Some(ready.as_str())
    {
        anns.insert(ann::POD_READY.into(), json!(ready));
    }
    let (status, reason, message) = &state.running;
    let running = [
        (ann::RUNNING, status.to_lowercase()),
        (ann::RUNNING_REASON, reason.clone()),
        (ann::RUNNING_MESSAGE, message.clone()),
    ];
    for (k, v) in running {
        if !v.is_empty() && current(k).as_deref() != Some(v.as_str()) {
            anns.insert(k.into(), json!(v));
        }
    }
    if !anns.is_empty() {
        let patch = json!({"metadata": {"annotations": anns}});
        match pvcs
            .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn condition(
    old: Option<&DataVolumeCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> DataVolumeCondition {
    let same = old.is_some_and(|o| o.status == status);
    DataVolumeCondition {
        r#type: kind.into(),
        status: status.into(),
        last_probe_time: None,
        last_heartbeat_time: Some(now()),
        last_transition_time: if same {
            old.and_then(|o| o.last_transition_time.clone())
        } else {
            Some(now())
        },
        reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
        message: Some(message.to_string()).filter(|m| !m.is_empty()),
    }
}

/// Writes the status when it changed, with the events upstream sends on the way.
async fn write_status(
    ctx: &Ctx,
    dv: &DataVolume,
    state: &State,
    progress: &str,
    claim: &str,
) -> Result<(), Error> {
    let old = dv.status.clone().unwrap_or_default();
    let find = |t: &str| old.conditions.iter().flatten().find(|c| c.r#type == t);
    let (bs, br, bm) = &state.bound;
    let (rs, rr, rm) = &state.running;
    let (ys, yr) = &state.ready;
    let conditions = vec![
        condition(find("Bound"), "Bound", bs, br, bm),
        condition(find("Ready"), "Ready", ys, yr, ""),
        condition(find("Running"), "Running", rs, rr, rm),
    ];
    let unchanged = old.phase.as_deref() == Some(state.phase)
        && old.progress.as_deref() == Some(progress)
        && old.restart_count.unwrap_or(0) == state.restarts
        && old.claim_name.as_deref() == Some(claim)
        && conditions.iter().all(|c| {
            find(&c.r#type)
                .is_some_and(|o| o.status == c.status && o.reason == c.reason && o.message == c.message)
        });
    if unchanged {
        return Ok(());
    }
    if old.phase.as_deref() != Some(state.phase) {
        let event = match state.phase {
            "ImportScheduled" => Some(("ImportScheduled", format!("Import into {claim} scheduled"))),
            "ImportInProgress" => Some(("ImportInProgress", format!("Import into {claim} in progress"))),
            "UploadScheduled" => Some(("UploadScheduled", format!("Upload into {claim} scheduled"))),
            "UploadReady" => Some(("UploadReady", format!("Upload into {claim} ready"))),
            "Succeeded" if decide::is_upload(dv) => {
                Some(("UploadSucceeded", format!("Successfully uploaded into {claim}")))
            }
            "Succeeded" => Some((
                "ImportSucceeded",
                format!("Successfully imported into PVC {claim}"),
            )),
            "Failed" => Some(("ErrClaimLost", format!("PVC {claim} lost"))),
            _ => None,
        };
        if let Some((reason, msg)) = event {
            if state.phase == "Failed" {
                ctx.events.warning(dv, reason, msg);
            } else {
                ctx.events.normal(dv, reason, msg);
            }
        }
    }
    if find("Bound").and_then(|c| c.reason.as_deref()) != Some(br.as_str()) && !br.is_empty() {
        ctx.events.normal(dv, br, bm.clone());
    }
    if *rs == "False"
        && rr == "Error"
        && find("Running").and_then(|c| c.message.as_deref()) != Some(rm.as_str())
    {
        ctx.events.warning(dv, rr, rm.clone());
    }
    let status = DataVolumeStatus {
        claim_name: Some(claim.to_string()),
        phase: Some(state.phase.to_string()),
        progress: Some(progress.to_string()),
        restart_count: Some(state.restarts),
        conditions: Some(conditions),
    };
    let api: Api<DataVolume> = Api::namespaced(
        ctx.client.clone(),
        dv.metadata.namespace.as_deref().unwrap_or("default"),
    );
    match api
        .patch_status(
            dv.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A claim CDI made that is being deleted: its importer or upload pod goes, so the claim's protection lets it go
/// (CDI's import controller does the same).
async fn release(pvc: Arc<PersistentVolumeClaim>, client: Arc<kube::Client>) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let ns = pvc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    for pod in [decide::pod_name(&name), decide::upload_pod_name(&name)] {
        match pods.delete(&pod, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(%pod, claim = %name, "the claim is being deleted: its CDI pod goes"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

/// Runs the DataVolume and StorageProfile controllers until their streams end.
pub async fn run(client: kube::Client, importer_image: String, upload_image: String) {
    let dvs: Api<DataVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let workers = watcher::Config::default().labels("app=containerized-data-importer");
    let controller = kube_support::lean_controller(dvs, watcher::Config::default())
        .owns(pvcs, watcher::Config::default())
        .watches(pods, workers, |pod: Pod| {
            let pod_name = pod.metadata.name.as_deref()?;
            let name = pod_name
                .strip_prefix("importer-")
                .or_else(|| pod_name.strip_prefix("cdi-upload-"))?
                .to_string();
            Some(ObjectRef::<DataVolume>::new(&name).within(pod.metadata.namespace.as_deref()?))
        });
    let ctx = Arc::new(Ctx {
        events: kube_support::Events::new(client.clone(), "datavolume-import-controller"),
        client: client.clone(),
        importer_image,
        upload_image,
    });
    let dv = kube_support::run_controller("cdi-datavolume", client.clone(), controller, reconcile, ctx);
    let claims = kube_support::lean_controller(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default().labels("app=containerized-data-importer"),
    );
    let release = kube_support::run_controller(
        "cdi-claims",
        client.clone(),
        claims,
        release,
        Arc::new(client.clone()),
    );
    tokio::join!(dv, release, profiles::run(client));
}
