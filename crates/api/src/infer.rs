//! `inferFromVolume` (upstream's VM mutating webhook): a VM's instancetype or preference matcher names a volume
//! instead, and admission fills in the name and kind from the `instancetype.kubevirt.io/default-*` labels of what
//! backs it — a PVC, a DataVolume (or its template), the PVC or VolumeSnapshot a DataVolume clones, or a DataSource
//! (and what it points at). Failures the matcher's `inferFromVolumeFailurePolicy: Ignore` may ignore clear the
//! matcher; the others refuse the VM (400).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::v1::VirtualMachine;

const INSTANCETYPE_LABEL: &str = "instancetype.kubevirt.io/default-instancetype";
const INSTANCETYPE_KIND_LABEL: &str = "instancetype.kubevirt.io/default-instancetype-kind";
const PREFERENCE_LABEL: &str = "instancetype.kubevirt.io/default-preference";
const PREFERENCE_KIND_LABEL: &str = "instancetype.kubevirt.io/default-preference-kind";

/// The kinds inference reads, with the resource name upstream's not-found errors use.
const KINDS: &[(&str, &str)] = &[
    ("PersistentVolumeClaim", "persistentvolumeclaims"),
    ("DataVolume", "datavolumes.cdi.kubevirt.io"),
    ("DataSource", "datasources.cdi.kubevirt.io"),
    ("VolumeSnapshot", "volumesnapshots.snapshot.storage.k8s.io"),
];

/// PVCs, DataVolumes, DataSources and VolumeSnapshots by (kind, namespace, name).
#[derive(Debug, Default, Clone)]
pub struct Volumes {
    objects: BTreeMap<(String, String, String), Value>,
}

impl Volumes {
    /// Records `obj` when it is of a kind inference reads.
    pub fn record(&mut self, obj: &Value) {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !KINDS.iter().any(|(k, _)| *k == kind) {
            return;
        }
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        self.objects
            .insert((kind.to_string(), meta("namespace"), meta("name")), obj.clone());
    }

    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<&Value, Failure> {
        self.objects
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .ok_or_else(|| {
                let resource = KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, r)| r);
                Failure::Fatal(format!("{resource} {name:?} not found"))
            })
    }
}

/// Why inference failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// `inferFromVolumeFailurePolicy: Ignore` clears the matcher instead.
    Ignorable(String),
    /// Refuses the VM whatever the policy.
    Fatal(String),
}

/// Which matcher: the labels it reads.
#[derive(Clone, Copy)]
struct Labels {
    name: &'static str,
    kind: &'static str,
}

const INSTANCETYPE: Labels = Labels {
    name: INSTANCETYPE_LABEL,
    kind: INSTANCETYPE_KIND_LABEL,
};
const PREFERENCE: Labels = Labels {
    name: PREFERENCE_LABEL,
    kind: PREFERENCE_KIND_LABEL,
};

/// Fills in both matchers of `vm` that ask for inference; the error is the 400's message.
///
/// # Errors
/// What could not be inferred and may not be ignored.
pub fn infer(vm: &mut VirtualMachine, volumes: &Volumes) -> Result<(), String> {
    let asks = |volume: &Option<String>, policy: &Option<String>| {
        volume
            .clone()
            .filter(|v| !v.is_empty())
            .map(|v| (v, policy.clone()))
    };
    let instancetype = vm
        .spec
        .instancetype
        .as_ref()
        .and_then(|m| asks(&m.infer_from_volume, &m.infer_from_volume_failure_policy));
    if let Some((volume, policy)) = instancetype {
        vm.spec.instancetype = match resolve(vm, &volume, policy.as_deref(), volumes, INSTANCETYPE)? {
            Some((name, kind)) => {
                // Upstream drops the template's memory when the policy is Ignore: the instancetype sets it.
                if policy.as_deref() == Some("Ignore")
                    && let Some(s) = vm.spec.template.spec.as_mut()
                {
                    s.domain.memory = None;
                }
                Some(crate::v1::InstancetypeMatcher {
                    name: Some(name),
                    kind,
                    ..Default::default()
                })
            }
            None => None,
        };
    }
    let preference = vm
        .spec
        .preference
        .as_ref()
        .and_then(|m| asks(&m.infer_from_volume, &m.infer_from_volume_failure_policy));
    if let Some((volume, policy)) = preference {
        vm.spec.preference =
            resolve(vm, &volume, policy.as_deref(), volumes, PREFERENCE)?.map(|(name, kind)| {
                crate::v1::PreferenceMatcher {
                    name: Some(name),
                    kind,
                    ..Default::default()
                }
            });
    }
    Ok(())
}

/// One matcher's inference: `Some((name, kind))` to set it, `None` to clear it (a failure its policy ignores).
fn resolve(
    vm: &VirtualMachine,
    volume: &str,
    policy: Option<&str>,
    volumes: &Volumes,
    labels: Labels,
) -> Result<Option<(String, Option<String>)>, String> {
    match from_volumes(vm, volume, volumes, labels) {
        Ok((name, kind)) => Ok(Some((name, kind.filter(|k| !k.is_empty())))),
        Err(Failure::Ignorable(_)) if policy == Some("Ignore") => Ok(None),
        Err(Failure::Ignorable(e) | Failure::Fatal(e)) => Err(e),
    }
}

type Found = Result<(String, Option<String>), Failure>;

fn vm_namespace(vm: &VirtualMachine) -> String {
    vm.metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn from_volumes(vm: &VirtualMachine, volume: &str, volumes: &Volumes, labels: Labels) -> Found {
    let ns = vm_namespace(vm);
    let spec_volumes = vm.spec.template.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let Some(v) = spec_volumes.into_iter().flatten().find(|v| v.name == volume) else {
        return Err(Failure::Fatal(format!(
            "unable to find volume {volume} to infer defaults"
        )));
    };
    if let Some(pvc) = &v.persistent_volume_claim {
        return from_object(volumes, "PersistentVolumeClaim", &ns, &pvc.claim_name, labels);
    }
    if let Some(dv) = &v.data_volume {
        return from_data_volume(vm, &dv.name, volumes, labels);
    }
    Err(Failure::Ignorable(format!(
        "unable to infer defaults from volume {volume} as type is not supported"
    )))
}

fn from_labels(obj: &Value, labels: Labels) -> Found {
    let label = |k: &str| {
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match label(labels.name) {
        Some(name) => Ok((name, label(labels.kind))),
        None => Err(Failure::Ignorable(format!(
            "unable to find required {} label on the volume",
            labels.name
        ))),
    }
}

fn from_object(volumes: &Volumes, kind: &str, ns: &str, name: &str, labels: Labels) -> Found {
    from_labels(volumes.get(kind, ns, name)?, labels)
}

fn from_data_volume(vm: &VirtualMachine, name: &str, volumes: &Volumes, labels: Labels) -> Found {
    let ns = vm_namespace(vm);
    if let Some(t) = vm
        .spec
        .data_volume_templates
        .iter()
        .flatten()
        .find(|t| t.metadata.name.as_deref() == Some(name))
    {
        let spec = serde_json::to_value(&t.spec).unwrap_or_default();
        return from_data_volume_spec(&spec, &ns, volumes, labels);
    }
    // A garbage-collected DataVolume leaves its PVC, under the same name.
    let Ok(dv) = volumes.get("DataVolume", &ns, name) else {
        return from_object(volumes, "PersistentVolumeClaim", &ns, name, labels);
    };
    from_labels(dv, labels)
        .or_else(|_| from_data_volume_spec(dv.get("spec").unwrap_or(&Value::Null), &ns, volumes, labels))
}

/// The namespace a source names, or the VM's.
fn source_ns(source: &Value, vm_ns: &str) -> String {
    source
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(vm_ns)
        .to_string()
}

fn name_of(source: &Value) -> &str {
    source.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// A `source` holding a `pvc` or a `snapshot` (of a DataVolume spec or a DataSource spec): what its labels say.
fn from_pvc_or_snapshot(
    source: Option<&Value>,
    ns: &str,
    volumes: &Volumes,
    labels: Labels,
) -> Option<Found> {
    let source = source?;
    [("pvc", "PersistentVolumeClaim"), ("snapshot", "VolumeSnapshot")]
        .into_iter()
        .find_map(|(key, kind)| {
            let r = source.get(key)?;
            Some(from_object(volumes, kind, &source_ns(r, ns), name_of(r), labels))
        })
}

fn from_data_volume_spec(spec: &Value, ns: &str, volumes: &Volumes, labels: Labels) -> Found {
    if let Some(found) = from_pvc_or_snapshot(spec.get("source"), ns, volumes, labels) {
        return found;
    }
    if let Some(r) = spec.get("sourceRef") {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "DataSource" {
            return Err(Failure::Ignorable(format!(
                "unable to infer defaults from DataVolumeSourceRef as Kind {kind} is not supported"
            )));
        }
        return from_data_source(volumes, &source_ns(r, ns), name_of(r), labels);
    }
    Err(Failure::Ignorable(
        "unable to infer defaults from DataVolumeSpec as DataVolumeSource is not supported".into(),
    ))
}

fn from_data_source(volumes: &Volumes, ns: &str, name: &str, labels: Labels) -> Found {
    let ds = volumes.get("DataSource", ns, name)?;
    if let Ok(found) = from_labels(ds, labels) {
        return Ok(found);
    }
    from_pvc_or_snapshot(ds.pointer("/spec/source"), ns, volumes, labels).unwrap_or_else(|| {
        Err(Failure::Ignorable(
            "unable to infer defaults from DataSource that doesn't provide DataVolumeSourcePVC or DataVolumeSourceSnapshot"
                .into(),
        ))
    })
}

/// The mutating webhook's checks of the matchers (before inference): a name or a volume, not both, and a known
/// failure policy.
#[must_use]
pub fn validate_matchers(
    vm: &VirtualMachine,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause> {
    use crate::validate::{Causes, INVALID, NOT_FOUND, NOT_SUPPORTED};
    let mut c = Causes::default();
    let matchers = [
        (
            "instancetype",
            "InstancetypeMatcher",
            vm.spec.instancetype.as_ref().map(|m| {
                (
                    m.name.as_deref(),
                    m.kind.as_deref(),
                    m.infer_from_volume.as_deref(),
                    m.infer_from_volume_failure_policy.as_deref(),
                )
            }),
        ),
        (
            "preference",
            "PreferenceMatcher",
            vm.spec.preference.as_ref().map(|m| {
                (
                    m.name.as_deref(),
                    m.kind.as_deref(),
                    m.infer_from_volume.as_deref(),
                    m.infer_from_volume_failure_policy.as_deref(),
                )
            }),
        ),
    ];
    for (field, type_name, matcher) in matchers {
        let Some((name, kind, volume, policy)) = matcher else {
            continue;
        };
        let set = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
        if !set(name) && !set(volume) {
            c.push(
                NOT_FOUND,
                format!("spec.{field}"),
                format!("Either Name or InferFromVolume should be provided within the {type_name}"),
            );
        }
        if set(volume) {
            if set(name) {
                c.push(
                    NOT_SUPPORTED,
                    format!("spec.{field}.name"),
                    "Name already set, should be cleared before setting inferFromVolume",
                );
            }
            if set(kind) {
                c.push(
                    NOT_SUPPORTED,
                    format!("spec.{field}.kind"),
                    "Kind already set, should be cleared before setting inferFromVolume",
                );
            }
        }
        if let Some(p) = policy
            && p != "Ignore"
            && p != "Reject"
        {
            c.push(
                INVALID,
                format!("spec.{field}.inferFromVolumeFailurePolicy"),
                format!("Invalid value '{p}' for InferFromVolumeFailurePolicy"),
            );
        }
    }
    c.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn vm(spec: Value) -> VirtualMachine {
        let mut v = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm", "namespace": "ns"},
            "spec": {"template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "disk"}},
                            {"name": "dv", "dataVolume": {"name": "imported"}},
                            {"name": "tmpl", "dataVolume": {"name": "from-template"}},
                            {"name": "cd", "containerDisk": {"image": "x"}}]}}}});
        merge(&mut v, &spec);
        serde_json::from_value(v).unwrap()
    }

    fn merge(base: &mut Value, patch: &Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p.clone(),
        }
    }

    fn labelled(kind: &str, name: &str, labels: Value, spec: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": "ns", "labels": labels}, "spec": spec})
    }

    fn volumes() -> Volumes {
        let mut v = Volumes::default();
        let both = json!({INSTANCETYPE_LABEL: "u1.small", PREFERENCE_LABEL: "fedora",
            PREFERENCE_KIND_LABEL: "VirtualMachinePreference"});
        v.record(&labelled(
            "PersistentVolumeClaim",
            "disk",
            both.clone(),
            json!({}),
        ));
        v.record(&labelled("PersistentVolumeClaim", "bare", json!({}), json!({})));
        v.record(&labelled(
            "DataVolume",
            "imported",
            json!({}),
            json!({"sourceRef": {"kind": "DataSource", "name": "golden"}}),
        ));
        v.record(&labelled(
            "DataSource",
            "golden",
            json!({}),
            json!({"source": {"pvc": {"name": "disk", "namespace": "ns"}}}),
        ));
        v.record(&labelled("Other", "x", both, json!({})));
        v
    }

    fn refs(vm: &VirtualMachine) -> (Option<String>, Option<String>, Option<String>) {
        (
            vm.spec.instancetype.as_ref().and_then(|m| m.name.clone()),
            vm.spec.preference.as_ref().and_then(|m| m.name.clone()),
            vm.spec.preference.as_ref().and_then(|m| m.kind.clone()),
        )
    }

    #[test]
    fn names_come_from_the_volume_chain() {
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "root"},
            "preference": {"inferFromVolume": "root"}}}));
        infer(&mut v, &volumes()).unwrap();
        assert_eq!(
            refs(&v),
            (
                Some("u1.small".into()),
                Some("fedora".into()),
                Some("VirtualMachinePreference".into())
            )
        );
        // DataVolume → DataSource → PVC.
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "dv"}}}));
        infer(&mut v, &volumes()).unwrap();
        assert_eq!(refs(&v).0.as_deref(), Some("u1.small"));
        // A DataVolume template cloning the PVC.
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "tmpl"},
            "dataVolumeTemplates": [{"metadata": {"name": "from-template"},
                "spec": {"source": {"pvc": {"name": "disk", "namespace": "ns"}}, "storage": {}}}]}}));
        infer(&mut v, &volumes()).unwrap();
        assert_eq!(refs(&v).0.as_deref(), Some("u1.small"));
    }

    #[test]
    fn failures_refuse_or_clear_by_policy() {
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "nope"}}}));
        assert_eq!(
            infer(&mut v, &volumes()).unwrap_err(),
            "unable to find volume nope to infer defaults"
        );
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "cd"}}}));
        assert_eq!(
            infer(&mut v, &volumes()).unwrap_err(),
            "unable to infer defaults from volume cd as type is not supported"
        );
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "cd",
            "inferFromVolumeFailurePolicy": "Ignore"}}}));
        infer(&mut v, &volumes()).unwrap();
        assert!(v.spec.instancetype.is_none());
        let mut v = vm(json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "root", "persistentVolumeClaim": {"claimName": "bare"}}]}},
            "preference": {"inferFromVolume": "root"}}}));
        assert_eq!(
            infer(&mut v, &volumes()).unwrap_err(),
            "unable to find required instancetype.kubevirt.io/default-preference label on the volume"
        );
        let mut v = vm(json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "root", "persistentVolumeClaim": {"claimName": "gone"}}]}},
            "instancetype": {"inferFromVolume": "root", "inferFromVolumeFailurePolicy": "Ignore"}}}));
        assert_eq!(
            infer(&mut v, &volumes()).unwrap_err(),
            "persistentvolumeclaims \"gone\" not found"
        );
        // Ignore with success drops the template's memory (the instancetype provides it).
        let mut v = vm(json!({"spec": {"instancetype": {"inferFromVolume": "root",
            "inferFromVolumeFailurePolicy": "Ignore"}}}));
        infer(&mut v, &volumes()).unwrap();
        assert!(v.spec.template.spec.as_ref().unwrap().domain.memory.is_none());
    }

    #[test]
    fn matchers_name_one_source() {
        let v = vm(json!({"spec": {"instancetype": {"kind": "x"},
            "preference": {"name": "p", "kind": "k", "inferFromVolume": "root",
                "inferFromVolumeFailurePolicy": "Maybe"}}}));
        let got: Vec<(String, String)> = validate_matchers(&v)
            .into_iter()
            .map(|c| (c.field.unwrap_or_default(), c.message.unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "spec.instancetype".into(),
                    "Either Name or InferFromVolume should be provided within the InstancetypeMatcher".into()
                ),
                (
                    "spec.preference.name".into(),
                    "Name already set, should be cleared before setting inferFromVolume".into()
                ),
                (
                    "spec.preference.kind".into(),
                    "Kind already set, should be cleared before setting inferFromVolume".into()
                ),
                (
                    "spec.preference.inferFromVolumeFailurePolicy".into(),
                    "Invalid value 'Maybe' for InferFromVolumeFailurePolicy".into()
                ),
            ]
        );
    }
}
