//! Which resources the server serves: the built-in kinds and every established CRD, by group/version/plural.

use std::sync::RwLock;

use serde_json::Value;

/// A printer column (CRD `additionalPrinterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Header.
    pub name: String,
    /// string, integer, number, boolean or date.
    pub type_: String,
    /// Simple JSONPath (`.status.phase`).
    pub json_path: String,
    /// 0 = default view; >0 = `-o wide`.
    pub priority: i64,
    /// Help text.
    pub description: String,
}

/// The scale subresource's paths.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    /// `.spec.replicas`.
    pub spec_replicas: String,
    /// `.status.replicas`.
    pub status_replicas: String,
    /// `.status.labelSelector`, if any.
    pub label_selector: Option<String>,
}

/// One served resource in one version.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// API group; empty for core.
    pub group: String,
    /// Version served at this entry.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (status split from spec).
    pub status: bool,
    /// The scale subresource.
    pub scale: Option<ScalePaths>,
    /// Printer columns.
    pub columns: Vec<Column>,
    /// The CRD's structural schema for this version (None for built-ins).
    pub schema: Option<Value>,
    /// Warning returned when this version is used.
    pub deprecation_warning: Option<String>,
    /// Name of the CRD that defines the resource (None for built-ins).
    pub crd: Option<String>,
}

impl ResourceType {
    /// `group/version`, or `version` for core.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for core), as Kubernetes names a resource in messages.
    #[must_use]
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Store key prefix of all objects of this resource (version-independent).
    #[must_use]
    pub fn prefix(&self) -> String {
        crate::object_store::Resource::of(&self.group, &self.plural).prefix()
    }

    /// Store key prefix within a namespace (or of everything, for `None`).
    #[must_use]
    pub fn prefix_in(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{}{ns}/", self.prefix()),
            None => self.prefix(),
        }
    }

    /// Store key of one object.
    #[must_use]
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix_in(namespace))
    }
}

/// (group, version, kind, plural, namespaced, short names)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    ("", "v1", "Namespace", "namespaces", false, &["ns"]),
    ("", "v1", "Pod", "pods", true, &["po"]),
    ("", "v1", "Node", "nodes", false, &["no"]),
    ("", "v1", "Service", "services", true, &["svc"]),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"]),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
    ("", "v1", "Secret", "secrets", true, &[]),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
    ("", "v1", "Event", "events", true, &["ev"]),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
    ),
    ("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"]),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
    ),
    ("events.k8s.io", "v1", "Event", "events", true, &["ev"]),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        false,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
    ),
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
        &[],
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
        &[],
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
        &[],
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[]),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
    ),
];

/// Built-in kinds whose strategy keeps `metadata.generation` (set to 1 on create, bumped when the spec changes);
/// the others store none. Custom resources always do.
const WITH_GENERATION: &[(&str, &str)] = &[
    ("", "Pod"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
];

impl ResourceType {
    /// Whether objects of this type carry `metadata.generation`.
    #[must_use]
    pub fn tracks_generation(&self) -> bool {
        self.crd.is_some()
            || WITH_GENERATION
                .iter()
                .any(|(g, k)| *g == self.group && *k == self.kind)
    }
}

/// Kinds with a status subresource among the built-ins.
const WITH_STATUS: &[&str] = &[
    "Namespace",
    "Pod",
    "Node",
    "Service",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "CustomResourceDefinition",
    "APIService",
];
/// Kinds in `kubectl get all`.
const IN_ALL: &[&str] = &["Pod", "Service"];

fn builtin(b: &Builtin) -> ResourceType {
    let (group, version, kind, plural, namespaced, short) = *b;
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_string()).collect(),
        categories: if IN_ALL.contains(&kind) {
            vec!["all".into()]
        } else {
            Vec::new()
        },
        status: WITH_STATUS.contains(&kind),
        scale: None,
        columns: Vec::new(),
        schema: None,
        deprecation_warning: None,
        crd: None,
    }
}

/// A CRD could not be turned into served resources.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CrdError {
    /// Offending field of the CRD.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn crd_err(field: &str, message: impl Into<String>) -> CrdError {
    CrdError {
        field: field.into(),
        message: message.into(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// A CRD version's `additionalPrinterColumns`.
fn printer_columns(version: &Value) -> Vec<Column> {
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: text(c, "name"),
                    type_: c.get("type").and_then(Value::as_str).unwrap_or("string").into(),
                    json_path: text(c, "jsonPath"),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    description: text(c, "description"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A CRD version's `subresources.scale` paths, with their defaults.
fn scale_paths(scale: &Value) -> ScalePaths {
    let path = |k: &str, default: &str| {
        scale
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    ScalePaths {
        spec_replicas: path("specReplicasPath", ".spec.replicas"),
        status_replicas: path("statusReplicasPath", ".status.replicas"),
        label_selector: scale
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .map(String::from),
    }
}

/// The resources a CRD object defines (one per served version).
///
/// # Errors
/// [`CrdError`] naming the field for a malformed CRD.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, CrdError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = crd.get("spec").ok_or_else(|| crd_err("spec", "Required value"))?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty());
    let group = group.ok_or_else(|| crd_err("spec.group", "Required value"))?;
    let names = spec
        .get("names")
        .ok_or_else(|| crd_err("spec.names", "Required value"))?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let plural = plural.ok_or_else(|| crd_err("spec.names.plural", "Required value"))?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty());
    let kind = kind.ok_or_else(|| crd_err("spec.names.kind", "Required value"))?;
    if name != format!("{plural}.{group}") {
        return Err(crd_err(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = spec.get("scope").and_then(Value::as_str).unwrap_or_default();
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(crd_err(
                "spec.scope",
                format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
            ));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty());
    let versions =
        versions.ok_or_else(|| crd_err("spec.versions", "Required value: must have at least one version"))?;
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        return Err(crd_err(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        let vname = vname.ok_or_else(|| crd_err(&format!("spec.versions[{i}].name"), "Required value"))?;
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let columns = printer_columns(v);
        let sub = v.get("subresources");
        let scale = sub.and_then(|s| s.get("scale")).map(scale_paths);
        out.push(ResourceType {
            group: group.into(),
            version: vname.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names
                .get("singular")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(|| kind.to_ascii_lowercase(), String::from),
            namespaced,
            short_names: strings(names.get("shortNames").unwrap_or(&Value::Null)),
            categories: strings(names.get("categories").unwrap_or(&Value::Null)),
            status: sub.and_then(|s| s.get("status")).is_some(),
            scale,
            columns,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            deprecation_warning: v
                .get("deprecationWarning")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| {
                    (v.get("deprecated").and_then(Value::as_bool) == Some(true))
                        .then(|| format!("{group}/{vname} {kind} is deprecated"))
                }),
            crd: Some(name.into()),
        });
    }
    Ok(out)
}

/// Kubernetes' version priority: GA > beta > alpha, higher numbers first, non-kube-like names last.
#[must_use]
pub fn version_priority(v: &str) -> (u8, u32, u32, String) {
    let parse = |s: &str| -> Option<(u8, u32, u32)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u32 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, u32::MAX));
        }
        for (label, rank) in [("beta", 2), ("alpha", 1)] {
            if let Some(n) = tail.strip_prefix(label) {
                return Some((rank, major, n.parse().ok()?));
            }
        }
        None
    };
    match parse(v) {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (0, 0, 0, v.to_string()),
    }
}

/// The served resources.
#[derive(Debug)]
pub struct Registry {
    types: RwLock<Vec<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            types: RwLock::new(BUILTINS.iter().map(builtin).collect()),
        }
    }
}

impl Registry {
    /// Everything served, built-ins first.
    #[must_use]
    pub fn all(&self) -> Vec<ResourceType> {
        self.types.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Visits every served type under the lock, without copying them (for hot paths: request routing, GC).
    pub fn for_each(&self, mut f: impl FnMut(&ResourceType)) {
        if let Ok(types) = self.types.read() {
            types.iter().for_each(&mut f);
        }
    }

    /// Whether any resource of `group` is served here (without copying the types).
    #[must_use]
    pub fn has_group(&self, group: &str) -> bool {
        let mut found = false;
        self.for_each(|t| found |= t.group == group);
        found
    }

    /// The resource at `group`/`version`/`plural`.
    #[must_use]
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .read()
            .ok()?
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Any version of `group`/`plural` (for storage-level operations).
    #[must_use]
    pub fn any_version(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .read()
            .ok()?
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    /// Serves (or re-serves) the resources of a CRD.
    ///
    /// # Errors
    /// [`CrdError`] for a malformed CRD or a name another CRD already serves.
    pub fn install_crd(&self, crd: &Value) -> Result<Vec<ResourceType>, CrdError> {
        let new = from_crd(crd)?;
        let Ok(mut types) = self.types.write() else {
            return Err(crd_err("", "registry lock poisoned"));
        };
        let name = new.first().and_then(|t| t.crd.clone());
        if let Some(first) = new.first() {
            let clash = types
                .iter()
                .any(|t| t.group == first.group && t.plural == first.plural && t.crd != name);
            if clash {
                return Err(crd_err(
                    "spec.names.plural",
                    format!("{:?} is already in use", first.plural),
                ));
            }
        }
        types.retain(|t| t.crd.is_none() || t.crd != name);
        types.extend(new.iter().cloned());
        Ok(new)
    }

    /// Stops serving a CRD's resources.
    pub fn remove_crd(&self, name: &str) {
        if let Ok(mut types) = self.types.write() {
            types.retain(|t| t.crd.as_deref() != Some(name));
        }
    }

    /// Groups with their versions, preferred first (core group as "").
    #[must_use]
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.all() {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    if !vs.contains(&t.version) {
                        vs.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, vs) in &mut out {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_aware_version_order() {
        let mut v = vec!["v1alpha3", "v1", "v1beta1", "v2", "v1alpha1", "foo"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, ["v2", "v1", "v1beta1", "v1alpha3", "v1alpha1", "foo"]);
    }

    #[test]
    fn our_crds_install() {
        let reg = Registry::default();
        for crd in kubevirt_api::crd::all() {
            reg.install_crd(&crd).unwrap();
        }
        let vmi = reg
            .lookup("kubevirt.io", "v1", "virtualmachineinstances")
            .unwrap();
        assert!(vmi.namespaced && !vmi.status && vmi.columns.len() == 7);
        assert_eq!(
            reg.lookup("kubevirt.io", "v1alpha3", "virtualmachines")
                .unwrap()
                .deprecation_warning
                .as_deref(),
            Some("kubevirt.io/v1alpha3 is now deprecated and will be removed in a future release.")
        );
        let groups = reg.groups();
        let kv = groups.iter().find(|(g, _)| g == "kubevirt.io").unwrap();
        assert_eq!(kv.1, ["v1", "v1alpha3"]);
        assert!(
            reg.lookup("kubevirt.io", "v1", "virtualmachineinstancereplicasets")
                .unwrap()
                .scale
                .is_some()
        );
    }

    #[test]
    fn malformed_crds_name_the_field() {
        let reg = Registry::default();
        let bad = serde_json::json!({"metadata": {"name": "x.example.com"}, "spec": {"group": "example.com",
            "names": {"plural": "ys", "kind": "Y"}, "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        assert_eq!(reg.install_crd(&bad).unwrap_err().field, "metadata.name");
    }
}
