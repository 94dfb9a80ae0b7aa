//! Instancetypes and preferences in the VM controller, as upstream's: the objects a VM's matchers name are stored as
//! ControllerRevisions owned by the VM (so later edits of the instancetype do not change the VM), referenced from
//! `status.instancetypeRef` / `status.preferenceRef`, and expanded into each VMI the VM creates (with the
//! `kubevirt.io/[cluster-]instancetype-name` and `-preference-name` annotations). Failures are [`SyncError`]s the VM
//! reports in its `Failure` condition.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kubevirt_api::v1::{
    ControllerRevisionRef, InstancetypeStatusRef, VirtualMachine, VirtualMachineInstance,
};
use kubevirt_api::v1beta1::{VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec};
use serde_json::Value;

/// A reconcile failure the VM reports (`status.conditions[type=Failure]`), as upstream's `SyncError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyncError {
    /// The condition's reason, such as `FailedFindInstancetype`.
    pub reason: &'static str,
    /// The condition's message.
    pub message: String,
}

impl SyncError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Which of the two matchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `spec.instancetype`.
    Instancetype,
    /// `spec.preference`.
    Preference,
}

/// The object a matcher names: its resource and whether it is cluster-scoped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `virtualmachineinstancetypes`, `virtualmachineclusterpreferences`, ...
    pub plural: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// Cluster-scoped.
    pub cluster: bool,
    /// The object's name.
    pub name: String,
}

impl Target {
    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: "instancetype.kubevirt.io".into(),
            version: "v1beta1".into(),
            api_version: "instancetype.kubevirt.io/v1beta1".into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The VMI annotation naming it.
    #[must_use]
    pub fn annotation(&self) -> &'static str {
        match (self.kind, self.cluster) {
            ("VirtualMachineInstancetype", _) => "kubevirt.io/instancetype-name",
            ("VirtualMachineClusterInstancetype", _) => "kubevirt.io/cluster-instancetype-name",
            (_, false) => "kubevirt.io/preference-name",
            (_, true) => "kubevirt.io/cluster-preference-name",
        }
    }
}

/// The matcher of `flavor` as (name, kind, revisionName), if the VM has one that names something (one left with
/// only `inferFromVolume`, which admission could not resolve, is ignored, as upstream's Ignore policy drops it).
fn matcher(vm: &VirtualMachine, flavor: Flavor) -> Option<(String, String, Option<String>)> {
    let m = match flavor {
        Flavor::Instancetype => vm.spec.instancetype.as_ref().map(|m| {
            (
                m.name.clone().unwrap_or_default(),
                m.kind.clone().unwrap_or_default(),
                m.revision_name.clone().filter(|r| !r.is_empty()),
            )
        }),
        Flavor::Preference => vm.spec.preference.as_ref().map(|m| {
            (
                m.name.clone().unwrap_or_default(),
                m.kind.clone().unwrap_or_default(),
                m.revision_name.clone().filter(|r| !r.is_empty()),
            )
        }),
    };
    m.filter(|(name, _, _)| !name.is_empty())
}

/// What a matcher's `kind` names (an empty kind is the cluster-wide one, as upstream).
///
/// # Errors
/// A kind that is neither, with upstream's message.
pub fn target(flavor: Flavor, name: &str, kind: &str) -> Result<Target, SyncError> {
    let (ns, cluster) = match flavor {
        Flavor::Instancetype => (
            ("virtualmachineinstancetypes", "VirtualMachineInstancetype"),
            (
                "virtualmachineclusterinstancetypes",
                "VirtualMachineClusterInstancetype",
            ),
        ),
        Flavor::Preference => (
            ("virtualmachinepreferences", "VirtualMachinePreference"),
            (
                "virtualmachineclusterpreferences",
                "VirtualMachineClusterPreference",
            ),
        ),
    };
    let k = kind.to_lowercase();
    let (plural, kind_name, is_cluster) = if k == ns.0 || k == ns.1.to_lowercase() {
        (ns.0, ns.1, false)
    } else if k.is_empty() || k == cluster.0 || k == cluster.1.to_lowercase() {
        (cluster.0, cluster.1, true)
    } else {
        let what = match flavor {
            Flavor::Instancetype => "InstancetypeMatcher",
            Flavor::Preference => "PreferenceMatcher",
        };
        let reason = match flavor {
            Flavor::Instancetype => "FailedFindInstancetype",
            Flavor::Preference => "FailedFindPreference",
        };
        return Err(SyncError::new(
            reason,
            format!("got unexpected kind in {what}: {kind}"),
        ));
    };
    Ok(Target {
        plural,
        kind: kind_name,
        cluster: is_cluster,
        name: name.to_string(),
    })
}

/// The ControllerRevision name upstream gives a stored object: `<vm>-<object>-<version>-<uid>-<generation>`.
#[must_use]
pub fn revision_name(vm: &str, object: &ObjectMeta, version: &str) -> String {
    format!(
        "{vm}-{}-{version}-{}-{}",
        object.name.as_deref().unwrap_or_default(),
        object.uid.as_deref().unwrap_or_default(),
        object.generation.unwrap_or(0)
    )
}

/// The ControllerRevision storing `object` for `vm`: the object with its apiVersion and kind, without labels,
/// annotations, finalizers, owner references and managed fields; labelled as upstream labels it.
#[must_use]
pub fn revision_of(vm: &VirtualMachine, object: &DynamicObject, target: &Target) -> ControllerRevision {
    let mut meta = object.metadata.clone();
    meta.labels = None;
    meta.annotations = None;
    meta.finalizers = None;
    meta.owner_references = None;
    meta.managed_fields = None;
    let vm_name = vm.metadata.name.clone().unwrap_or_default();
    let name = revision_name(&vm_name, &meta, "v1beta1");
    let mut data = serde_json::Map::new();
    data.insert(
        "apiVersion".into(),
        Value::from("instancetype.kubevirt.io/v1beta1"),
    );
    data.insert("kind".into(), Value::from(target.kind));
    data.insert(
        "metadata".into(),
        serde_json::to_value(&meta).unwrap_or(Value::Null),
    );
    for (k, v) in object.data.as_object().into_iter().flatten() {
        data.insert(k.clone(), v.clone());
    }
    let labels = BTreeMap::from([
        (
            "instancetype.kubevirt.io/object-generation".to_string(),
            meta.generation.unwrap_or(0).to_string(),
        ),
        (
            "instancetype.kubevirt.io/object-kind".to_string(),
            target.kind.to_string(),
        ),
        (
            "instancetype.kubevirt.io/object-name".to_string(),
            meta.name.clone().unwrap_or_default(),
        ),
        (
            "instancetype.kubevirt.io/object-uid".to_string(),
            meta.uid.clone().unwrap_or_default(),
        ),
        (
            "instancetype.kubevirt.io/object-version".to_string(),
            "v1beta1".to_string(),
        ),
    ]);
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: vm.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachine".into(),
                name: vm_name,
                uid: vm.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        data: Some(RawExtension(Value::Object(data))),
        revision: 0,
    }
}

/// The status reference a matcher should have, given the one the VM has (upstream's `syncStatusWithMatcher`):
/// `None` in the result's revision means "store a new revision".
#[must_use]
pub fn wanted_ref(
    current: Option<&InstancetypeStatusRef>,
    name: &str,
    kind: &str,
    revision: Option<&str>,
) -> InstancetypeStatusRef {
    let mut r = current.cloned().unwrap_or_default();
    let mut clear = false;
    if !name.is_empty() && r.name.as_deref() != Some(name) {
        r.name = Some(name.to_string());
        clear = true;
    }
    if !kind.is_empty() && r.kind.as_deref() != Some(kind) {
        r.kind = Some(kind.to_string());
        clear = true;
    }
    if clear {
        r.controller_revision_ref = None;
    }
    if let Some(rev) = revision
        && r.controller_revision_ref.as_ref().and_then(|c| c.name.as_deref()) != Some(rev)
    {
        r.controller_revision_ref = Some(ControllerRevisionRef {
            name: Some(rev.to_string()),
        });
    }
    r
}

fn stored_revision(r: &InstancetypeStatusRef) -> Option<&str> {
    r.controller_revision_ref
        .as_ref()
        .and_then(|c| c.name.as_deref())
        .filter(|n| !n.is_empty())
}

fn find_reason(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Instancetype => "FailedFindInstancetype",
        Flavor::Preference => "FailedFindPreference",
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

async fn fetch(client: &kube::Client, ns: &str, t: &Target) -> Result<DynamicObject, kube::Error> {
    let ar = t.api_resource();
    let api: Api<DynamicObject> = if t.cluster {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    };
    api.get(&t.name).await
}

/// Stores `object` as a revision of `vm` (an existing one with the same name must hold the same spec).
async fn store(
    client: &kube::Client,
    vm: &VirtualMachine,
    object: &DynamicObject,
    t: &Target,
) -> Result<String, SyncError> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let rev = revision_of(vm, object, t);
    let name = rev.metadata.name.clone().unwrap_or_default();
    let fail = |m: String| SyncError::new("FailedCreate", m);
    match revisions.create(&PostParams::default(), &rev).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = revisions
                .get(&name)
                .await
                .map_err(|e| fail(format!("failed to get ControllerRevision: {}", api_message(&e))))?;
            let spec_of = |r: &ControllerRevision| r.data.as_ref().map(|d| d.0.get("spec").cloned());
            if spec_of(&existing) == spec_of(&rev) {
                Ok(name)
            } else {
                Err(fail(format!(
                    "found existing ControllerRevision with unexpected data: {name}"
                )))
            }
        }
        Err(e) => Err(fail(format!(
            "failed to create ControllerRevision: {}",
            api_message(&e)
        ))),
    }
}

/// The status references the VM's matchers need, storing revisions as needed; `None` where the VM has no matcher.
///
/// # Errors
/// A [`SyncError`] when a referenced object is missing (`FailedFindInstancetype` / `FailedFindPreference`) or a
/// revision cannot be stored.
pub async fn sync_refs(
    client: &kube::Client,
    vm: &VirtualMachine,
) -> Result<(Option<InstancetypeStatusRef>, Option<InstancetypeStatusRef>), SyncError> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut out = [None, None];
    for (i, flavor) in [Flavor::Instancetype, Flavor::Preference].into_iter().enumerate() {
        let Some((name, kind, revision)) = matcher(vm, flavor) else {
            continue;
        };
        let t = target(flavor, &name, &kind)?;
        // Upstream checks that what the matchers name exists before anything else.
        let object = fetch(client, &ns, &t)
            .await
            .map_err(|e| SyncError::new(find_reason(flavor), api_message(&e)))?;
        let current = vm.status.as_ref().and_then(|s| match flavor {
            Flavor::Instancetype => s.instancetype_ref.as_ref(),
            Flavor::Preference => s.preference_ref.as_ref(),
        });
        let mut wanted = wanted_ref(current, &name, &kind, revision.as_deref());
        if stored_revision(&wanted).is_none() {
            let rev = store(client, vm, &object, &t).await?;
            wanted.controller_revision_ref = Some(ControllerRevisionRef { name: Some(rev) });
        }
        out[i] = Some(wanted);
    }
    let [it, pref] = out;
    Ok((it, pref))
}

/// The spec of what a matcher names: from its stored revision when there is one, else from the object itself.
async fn spec_of(
    client: &kube::Client,
    ns: &str,
    t: &Target,
    stored: Option<&str>,
    flavor: Flavor,
) -> Result<Value, SyncError> {
    let data = match stored {
        Some(rev) => {
            let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
            let r = revisions
                .get(rev)
                .await
                .map_err(|e| SyncError::new(find_reason(flavor), api_message(&e)))?;
            r.data.map(|d| d.0).unwrap_or(Value::Null)
        }
        None => {
            fetch(client, ns, t)
                .await
                .map_err(|e| SyncError::new(find_reason(flavor), api_message(&e)))?
                .data
        }
    };
    Ok(data.get("spec").cloned().unwrap_or(Value::Null))
}

/// What a VM's matchers name, read as upstream's spec finders read them (the stored revision first).
#[derive(Debug, Default, Clone)]
pub struct Specs {
    /// The instancetype's spec.
    pub instancetype: Option<VirtualMachineInstancetypeSpec>,
    /// The preference's spec.
    pub preference: Option<VirtualMachinePreferenceSpec>,
    /// `kubevirt.io/[cluster-]instancetype-name`/`…-preference-name` → the names, for the VMI's annotations.
    pub annotations: Vec<(&'static str, String)>,
}

/// Finds the specs `vm`'s matchers name: from the revision its status (or a matcher's `revisionName`) records,
/// else from the object itself.
///
/// # Errors
/// A [`SyncError`] with upstream's reason when an object cannot be read or decoded.
pub async fn find_specs(client: &kube::Client, vm: &VirtualMachine) -> Result<Specs, SyncError> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let status = vm.status.as_ref();
    let mut specs = [Value::Null, Value::Null];
    let mut annotations = Vec::new();
    for (i, flavor) in [Flavor::Instancetype, Flavor::Preference].into_iter().enumerate() {
        let Some((name, kind, revision)) = matcher(vm, flavor) else {
            continue;
        };
        let t = target(flavor, &name, &kind)?;
        let stored = status
            .and_then(|s| match flavor {
                Flavor::Instancetype => s.instancetype_ref.as_ref(),
                Flavor::Preference => s.preference_ref.as_ref(),
            })
            .filter(|r| r.name.as_deref() == Some(name.as_str()))
            .and_then(stored_revision)
            .map(str::to_string)
            .or(revision);
        specs[i] = spec_of(client, &ns, &t, stored.as_deref(), flavor).await?;
        annotations.push((t.annotation(), name));
    }
    let [it, pref] = specs;
    let bad = |what: &str, e: serde_json::Error| {
        SyncError::new("FailedCreate", format!("Failure while starting VMI: {what}: {e}"))
    };
    Ok(Specs {
        instancetype: (!it.is_null())
            .then(|| serde_json::from_value(it))
            .transpose()
            .map_err(|e| bad("instancetype spec", e))?,
        preference: (!pref.is_null())
            .then(|| serde_json::from_value(pref))
            .transpose()
            .map_err(|e| bad("preference spec", e))?,
        annotations,
    })
}

/// Expands the VM's instancetype and preference into `vmi` (spec and annotations), as upstream's `ApplyToVMI`.
///
/// # Errors
/// A [`SyncError`] when an object cannot be read or the VMI conflicts with the instancetype.
pub async fn apply_to_vmi(
    client: &kube::Client,
    vm: &VirtualMachine,
    vmi: &mut VirtualMachineInstance,
) -> Result<(), SyncError> {
    let specs = find_specs(client, vm).await?;
    if specs.instancetype.is_none() && specs.preference.is_none() {
        return Ok(());
    }
    let mut annotations = vmi.metadata.annotations.clone().unwrap_or_default();
    for (k, v) in &specs.annotations {
        annotations.insert((*k).to_string(), v.clone());
    }
    kubevirt_api::defaults::instancetype::apply(
        "spec",
        &mut vmi.spec,
        &mut annotations,
        specs.instancetype.as_ref(),
        specs.preference.as_ref(),
    )
    .map_err(|conflicts| {
        let fields: Vec<String> = conflicts.iter().map(|c| c.path.clone()).collect();
        SyncError::new(
            "FailedCreate",
            format!(
                "Failure while starting VMI: VMI conflicts with instancetype spec in fields: [{}]",
                fields.join(", ")
            ),
        )
    })?;
    vmi.metadata.annotations = Some(annotations);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_resolve_as_upstream() {
        let t = target(Flavor::Instancetype, "u1", "").unwrap();
        assert!(t.cluster);
        assert_eq!(t.annotation(), "kubevirt.io/cluster-instancetype-name");
        let t = target(Flavor::Instancetype, "u1", "VirtualMachineInstancetype").unwrap();
        assert!(!t.cluster);
        assert_eq!(t.plural, "virtualmachineinstancetypes");
        let t = target(Flavor::Preference, "p", "virtualmachinepreferences").unwrap();
        assert_eq!(t.annotation(), "kubevirt.io/preference-name");
        let t = target(Flavor::Preference, "p", "VirtualMachineClusterPreference").unwrap();
        assert_eq!(t.annotation(), "kubevirt.io/cluster-preference-name");
        let e = target(Flavor::Instancetype, "x", "Pod").unwrap_err();
        assert_eq!(e.message, "got unexpected kind in InstancetypeMatcher: Pod");
        assert_eq!(e.reason, "FailedFindInstancetype");
    }

    #[test]
    fn references_follow_the_matcher() {
        let stored = InstancetypeStatusRef {
            name: Some("a".into()),
            kind: Some("VirtualMachineClusterInstancetype".into()),
            controller_revision_ref: Some(ControllerRevisionRef {
                name: Some("vm-a-v1beta1-u-1".into()),
            }),
            ..Default::default()
        };
        // Unchanged matcher: the stored revision stays.
        let r = wanted_ref(Some(&stored), "a", "VirtualMachineClusterInstancetype", None);
        assert_eq!(stored_revision(&r), Some("vm-a-v1beta1-u-1"));
        // Another name: a new revision is needed.
        let r = wanted_ref(Some(&stored), "b", "VirtualMachineClusterInstancetype", None);
        assert_eq!(r.name.as_deref(), Some("b"));
        assert_eq!(stored_revision(&r), None);
        // A revisionName on the matcher wins.
        let r = wanted_ref(None, "a", "", Some("given"));
        assert_eq!(stored_revision(&r), Some("given"));
        assert_eq!(r.kind, None);
    }

    #[test]
    fn revisions_are_named_and_labelled_as_upstream() {
        let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "vm1", "namespace": "ns", "uid": "vm-uid"},
            "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}}
        }))
        .unwrap();
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
            "metadata": {"name": "u1.small", "uid": "it-uid", "generation": 2, "labels": {"a": "b"},
                "annotations": {"x": "y"}},
            "spec": {"cpu": {"guest": 1}, "memory": {"guest": "256Mi"}}
        }))
        .unwrap();
        let t = target(Flavor::Instancetype, "u1.small", "").unwrap();
        let rev = revision_of(&vm, &obj, &t);
        assert_eq!(
            rev.metadata.name.as_deref(),
            Some("vm1-u1.small-v1beta1-it-uid-2")
        );
        let labels = rev.metadata.labels.unwrap();
        assert_eq!(
            labels["instancetype.kubevirt.io/object-kind"],
            "VirtualMachineClusterInstancetype"
        );
        assert_eq!(labels["instancetype.kubevirt.io/object-generation"], "2");
        let data = rev.data.unwrap().0;
        assert_eq!(data["spec"]["memory"]["guest"], "256Mi");
        assert_eq!(data["kind"], "VirtualMachineClusterInstancetype");
        assert!(data["metadata"].get("labels").is_none());
        assert!(data["metadata"].get("annotations").is_none());
        assert_eq!(rev.metadata.owner_references.unwrap()[0].uid, "vm-uid");
    }
}
