//! The VirtualMachineInstanceMigration reconciler, until live migration exists: every migration ends the way
//! upstream's migration controller ends one it cannot run — phase `Failed` (with `phaseTransitionTimestamps`, a
//! failure reason in `migrationState`, and `AbortRequested` when it was cancelled by deletion), then the
//! `kubevirt.io/migrationJobFinalize` finalizer removed — so `virtctl migrate-cancel` and `kubectl delete vmim` finish
//! and no migration hangs.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceMigration};
use serde_json::{Value, json};

/// The finalizer admission puts on every migration.
pub const FINALIZER: &str = "kubevirt.io/migrationJobFinalize";

/// Why a reconcile failed: only API calls fail it.
type Error = kube_support::ApiError;

/// What to do with a migration (pure: decided from the migration and its VMI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Final and without our finalizer: nothing.
    Nothing,
    /// Final: remove the finalizer.
    RemoveFinalizer,
    /// End it: phase Failed with this reason; `aborted` adds the AbortRequested condition.
    Fail {
        /// Upstream's event message.
        reason: String,
        /// Cancelled by deletion.
        aborted: bool,
    },
}

fn phase(m: &VirtualMachineInstanceMigration) -> &str {
    m.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn vmi_final(vmi: &VirtualMachineInstance) -> bool {
    matches!(
        vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Upstream's order: a final migration loses its finalizer; a missing or stopped VMI, or a deletion, fails it; and
/// (until live migration exists) so does everything else, with a reason that says why.
#[must_use]
pub fn decide(m: &VirtualMachineInstanceMigration, vmi: Option<&VirtualMachineInstance>) -> Decision {
    if matches!(phase(m), "Succeeded" | "Failed") {
        let has = m.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER);
        return if has {
            Decision::RemoveFinalizer
        } else {
            Decision::Nothing
        };
    }
    let (reason, aborted) = match vmi {
        None => ("Migration failed because vmi does not exist.", false),
        Some(v) if vmi_final(v) => ("Migration failed vmi shutdown during migration.", false),
        Some(_) if m.metadata.deletion_timestamp.is_some() => {
            ("Migration failed due to being canceled", true)
        }
        Some(_) => (
            "Migration failed: live migration is not supported by this kubevirt-rs version yet",
            false,
        ),
    };
    Decision::Fail {
        reason: reason.to_string(),
        aborted,
    }
}

fn now() -> Value {
    json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now()
    ))
}

/// The status patch that fails `m`.
fn failed_status(m: &VirtualMachineInstanceMigration, reason: &str, aborted: bool) -> Value {
    let at = now();
    let mut stamps: Vec<Value> = m
        .status
        .as_ref()
        .and_then(|s| s.phase_transition_timestamps.as_ref())
        .map(|ts| ts.iter().filter_map(|t| serde_json::to_value(t).ok()).collect())
        .unwrap_or_default();
    if phase(m).is_empty() {
        stamps.push(json!({"phase": "Pending", "phaseTransitionTimestamp": at}));
    }
    stamps.push(json!({"phase": "Failed", "phaseTransitionTimestamp": at}));
    let mut conditions: Vec<Value> = m
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
        .unwrap_or_default();
    if aborted && !conditions.iter().any(|c| c["type"] == "AbortRequested") {
        conditions.push(json!({"type": "AbortRequested", "status": "True", "lastProbeTime": at}));
    }
    let mut state = m
        .status
        .as_ref()
        .and_then(|s| s.migration_state.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    state["failed"] = json!(true);
    state["completed"] = json!(true);
    state["failureReason"] = json!(reason);
    state["endTimestamp"] = at;
    state["migrationUid"] = json!(m.metadata.uid);
    if aborted {
        state["abortStatus"] = json!("Succeeded");
    }
    json!({"status": {"phase": "Failed", "phaseTransitionTimestamps": stamps,
        "conditions": conditions, "migrationState": state}})
}

async fn reconcile(
    m: Arc<VirtualMachineInstanceMigration>,
    client: Arc<kube::Client>,
) -> Result<Action, Error> {
    let ns = m.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = m.metadata.name.clone().unwrap_or_default();
    let migrations: Api<VirtualMachineInstanceMigration> = Api::namespaced((*client).clone(), &ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced((*client).clone(), &ns);
    let vmi = match m.spec.vmi_name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => vmis.get_opt(n).await?,
        None => None,
    };
    match decide(&m, vmi.as_ref()) {
        Decision::Nothing => {}
        Decision::RemoveFinalizer => {
            let keep: Vec<String> = m
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            // The resourceVersion makes a concurrent finalizer change a conflict, not a lost write.
            // An emptied list is dropped, as a real API server stores it.
            let keep = if keep.is_empty() { Value::Null } else { json!(keep) };
            let patch =
                json!({"metadata": {"finalizers": keep, "resourceVersion": m.metadata.resource_version}});
            match migrations
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Decision::Fail { reason, aborted } => {
            tracing::warn!(%reason, "migration failed");
            let patch = failed_status(&m, &reason, aborted);
            match migrations
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

/// Runs the migration controller until the stream ends.
pub async fn run(client: kube::Client) {
    let migrations: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    let controller = kube_support::lean_controller(migrations, watcher::Config::default());
    kube_support::run_controller(
        "virt-controller-migration",
        client.clone(),
        controller,
        reconcile,
        Arc::new(client),
    )
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn migration(phase: &str, deleting: bool, finalizer: bool) -> VirtualMachineInstanceMigration {
        let mut m: VirtualMachineInstanceMigration = serde_json::from_value(json!({
            "metadata": {"name": "m", "namespace": "default", "uid": "u"},
            "spec": {"vmiName": "vmi"},
            "status": {"phase": phase}
        }))
        .unwrap();
        if deleting {
            m.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now(),
            ));
        }
        if finalizer {
            m.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        m
    }

    fn vmi(phase: &str) -> VirtualMachineInstance {
        serde_json::from_value(
            json!({"metadata": {"name": "vmi"}, "spec": {"domain": {"devices": {}}},
            "status": {"phase": phase}}),
        )
        .unwrap()
    }

    #[test]
    fn every_migration_ends() {
        let running = vmi("Running");
        let cases = [
            (
                migration("Failed", false, true),
                Some(&running),
                Decision::RemoveFinalizer,
            ),
            (
                migration("Succeeded", true, true),
                None,
                Decision::RemoveFinalizer,
            ),
            (
                migration("Failed", false, false),
                Some(&running),
                Decision::Nothing,
            ),
        ];
        for (m, v, want) in cases {
            assert_eq!(decide(&m, v), want);
        }
        let fail = |m, v| match decide(&m, v) {
            Decision::Fail { reason, aborted } => (reason, aborted),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fail(migration("", false, true), None).0,
            "Migration failed because vmi does not exist."
        );
        let stopped = vmi("Succeeded");
        assert_eq!(
            fail(migration("Pending", false, true), Some(&stopped)).0,
            "Migration failed vmi shutdown during migration."
        );
        let (reason, aborted) = fail(migration("Scheduling", true, true), Some(&running));
        assert!(aborted);
        assert_eq!(reason, "Migration failed due to being canceled");
        let (reason, aborted) = fail(migration("", false, true), Some(&running));
        assert!(!aborted);
        assert!(reason.contains("not supported"), "{reason}");
    }

    #[test]
    fn a_failed_status_has_upstreams_shape() {
        let m = migration("", true, true);
        let s = failed_status(&m, "Migration failed due to being canceled", true);
        assert_eq!(s["status"]["phase"], "Failed");
        let stamps = s["status"]["phaseTransitionTimestamps"].as_array().unwrap();
        assert_eq!(stamps.len(), 2);
        assert_eq!(stamps[0]["phase"], "Pending");
        assert_eq!(s["status"]["conditions"][0]["type"], "AbortRequested");
        assert_eq!(s["status"]["migrationState"]["failed"], true);
        assert_eq!(s["status"]["migrationState"]["abortStatus"], "Succeeded");
    }
}
