//! The `expand` and `expandAll` instancetype reference policies (KubeVirt CR `instancetype.referencePolicy`): instead
//! of keeping revisions, the VM controller writes the instancetype and preference into the VM itself (matchers and
//! refs removed, revisions it had deleted), as upstream's `handleExpand`. Under `expand` a VM that already references
//! revisions is left as it is; `expandAll` expands it too.

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubevirt_api::v1::{InstancetypeStatusRef, VirtualMachine};
use serde_json::json;

use crate::instancetype::SyncError;

fn revision(r: Option<&InstancetypeStatusRef>) -> Option<String> {
    r.and_then(|r| r.controller_revision_ref.as_ref())
        .and_then(|c| c.name.clone())
}

/// What the policy asks of `vm`: `None` to keep references, `Some(true)` to expand it, `Some(false)` to leave it.
#[must_use]
pub fn decide(policy: &str, vm: &VirtualMachine) -> Option<bool> {
    match policy {
        "expand" => {
            let status = vm.status.as_ref();
            let referenced = revision(status.and_then(|s| s.instancetype_ref.as_ref())).is_some()
                || revision(status.and_then(|s| s.preference_ref.as_ref())).is_some();
            Some(!referenced)
        }
        "expandAll" => Some(true),
        _ => None,
    }
}

/// Expands `vm` in place. Returns whether the VM was rewritten (its next reconcile sees the new spec).
///
/// # Errors
/// A [`SyncError`] when the specs cannot be found, the VM conflicts, or a write fails.
pub async fn expand(
    client: &kube::Client,
    vm: &VirtualMachine,
    config: &kubevirt_api::config::ClusterConfig,
) -> Result<bool, SyncError> {
    let failed = |m: String| SyncError {
        reason: "FailedCreate",
        message: m,
    };
    let specs = crate::instancetype::find_specs(client, vm).await?;
    let expanded =
        kubevirt_api::expand::vm(vm, specs.instancetype.as_ref(), specs.preference.as_ref(), config)
            .map_err(|e| {
                failed(format!(
                    "error encountered while expanding into VirtualMachine: {e}"
                ))
            })?;
    if expanded.spec == vm.spec {
        return Ok(false);
    }
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vm.metadata.name.clone().unwrap_or_default();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns);
    let mut body = expanded.clone();
    body.status = None;
    vms.replace(&name, &PostParams::default(), &body)
        .await
        .map_err(|e| {
            failed(format!(
                "error encountered when trying to update expanded VirtualMachine: {e}"
            ))
        })?;
    let refs = json!({"status": {"instancetypeRef": null, "preferenceRef": null}});
    vms.patch_status(&name, &PatchParams::default(), &Patch::Merge(&refs))
        .await
        .map_err(|e| {
            failed(format!(
                "error encountered when trying to update expanded VirtualMachine Status: {e}"
            ))
        })?;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let status = vm.status.as_ref();
    for rev in [
        revision(status.and_then(|s| s.instancetype_ref.as_ref())),
        revision(status.and_then(|s| s.preference_ref.as_ref())),
    ]
    .into_iter()
    .flatten()
    {
        if let Err(e) = revisions.delete(&rev, &Default::default()).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            return Err(failed(format!(
                "error encountered cleaning controllerRevision {rev} after successfully expanding VirtualMachine {name}: {e}"
            )));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policies() {
        let plain: VirtualMachine = serde_json::from_value(json!({"metadata": {"name": "v"},
            "spec": {"instancetype": {"name": "x"}, "template": {}}}))
        .unwrap();
        let referenced: VirtualMachine = serde_json::from_value(json!({"metadata": {"name": "v"},
            "spec": {"instancetype": {"name": "x"}, "template": {}},
            "status": {"instancetypeRef": {"name": "x", "controllerRevisionRef": {"name": "v-x-v1beta1-u-1"}}}}))
        .unwrap();
        assert_eq!(decide("reference", &plain), None);
        assert_eq!(decide("expand", &plain), Some(true));
        assert_eq!(decide("expand", &referenced), Some(false));
        assert_eq!(decide("expandAll", &referenced), Some(true));
    }
}
