//! The PersistentVolumeClaim a DataVolume populates, rendered as CDI renders it: same name, owned by the DataVolume,
//! `spec.pvc` copied verbatim or `spec.storage` completed (the default StorageClass, access and volume modes from
//! the class's StorageProfile, the size inflated by the file-system overhead), and the import settings carried as
//! `cdi.kubevirt.io/storage.*` annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevirt_api::cdi::{ClaimPropertySet, DataVolume, StorageProfile};

/// CDI's default file-system overhead (CDIConfig `filesystemOverhead.global`).
pub const DEFAULT_OVERHEAD: &str = "0.06";

/// Annotations CDI keeps on the claim.
pub mod ann {
    /// The importer's source kind: http, registry, none (blank), pvc, upload.
    pub const SOURCE: &str = "cdi.kubevirt.io/storage.import.source";
    /// The source's URL.
    pub const ENDPOINT: &str = "cdi.kubevirt.io/storage.import.endpoint";
    /// kubevirt or archive.
    pub const CONTENT_TYPE: &str = "cdi.kubevirt.io/storage.contentType";
    /// The importer pod's phase (Succeeded once the import is done: the claim is populated).
    pub const POD_PHASE: &str = "cdi.kubevirt.io/storage.pod.phase";
    /// The importer pod's readiness.
    pub const POD_READY: &str = "cdi.kubevirt.io/storage.pod.ready";
    /// How often the importer was restarted.
    pub const POD_RESTARTS: &str = "cdi.kubevirt.io/storage.pod.restarts";
    /// The importer pod's name.
    pub const IMPORT_POD: &str = "cdi.kubevirt.io/storage.import.importPodName";
    /// The claim takes an upload.
    pub const UPLOAD_TARGET: &str = "cdi.kubevirt.io/storage.upload.target";
    /// The DataVolume the claim was made for.
    pub const CREATED_FOR: &str = "cdi.kubevirt.io/createdForDataVolume";
    /// Ignore WaitForFirstConsumer: the importer pod is the first consumer.
    pub const IMMEDIATE: &str = "cdi.kubevirt.io/storage.bind.immediate.requested";
    /// Adopt an existing claim of the DataVolume's name.
    pub const ALLOW_ADOPTION: &str = "cdi.kubevirt.io/allowClaimAdoption";
    /// Populators are not used with the local provisioner (it has no CSIDriver).
    pub const USE_POPULATOR: &str = "cdi.kubevirt.io/storage.usePopulator";
    /// Keep the importer pod after it succeeded.
    pub const RETAIN_POD: &str = "cdi.kubevirt.io/storage.pod.retainAfterCompletion";
    /// The Running condition, as the importer pod last showed it.
    pub const RUNNING: &str = "cdi.kubevirt.io/storage.condition.running";
    /// Its reason.
    pub const RUNNING_REASON: &str = "cdi.kubevirt.io/storage.condition.running.reason";
    /// Its message.
    pub const RUNNING_MESSAGE: &str = "cdi.kubevirt.io/storage.condition.running.message";
    /// The Kubernetes default StorageClass.
    pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
    /// KubeVirt's default class for VM disks, preferred over the Kubernetes default.
    pub const DEFAULT_VIRT_CLASS: &str = "storageclass.kubevirt.io/is-default-virt-class";
}

/// Why a claim cannot be rendered (upstream's `ErrClaimNotValid` messages).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Neither pvc nor storage.
    #[error("Missing both target storage and target pvc")]
    NoTarget,
    /// No class to ask for access modes.
    #[error("PVC spec is missing accessMode and no storageClass to choose profile")]
    NoClass,
    /// The class's profile has no claim properties.
    #[error("Spec is missing accessMode and volumeMode, cannot get access mode from StorageProfile {0}")]
    NoProfile(String),
    /// No size.
    #[error("Datavolume Spec is not valid - missing storage size")]
    NoSize,
}

/// The claim properties CDI knows for a provisioner (its built-in table; ours: the box's local provisioner).
#[must_use]
pub fn builtin_properties(provisioner: &str) -> Vec<ClaimPropertySet> {
    match provisioner {
        "kubevirt-rs.io/local" | "kubevirt.io.hostpath-provisioner" | "kubevirt.io/hostpath-provisioner" => {
            vec![ClaimPropertySet {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                volume_mode: Some("Filesystem".into()),
            }]
        }
        _ => Vec::new(),
    }
}

/// The class a claim without one gets: KubeVirt's default virt class, else the Kubernetes default.
#[must_use]
pub fn default_class(classes: &[StorageClass]) -> Option<&StorageClass> {
    let marked = |key: &str| {
        classes.iter().find(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == "true")
        })
    };
    marked(ann::DEFAULT_VIRT_CLASS).or_else(|| marked(ann::DEFAULT_CLASS))
}

/// `bytes` rounded up to a MiB and inflated by `overhead`, as CDI sizes a Filesystem claim from `spec.storage`.
#[must_use]
pub fn inflate(bytes: u64, overhead: f64) -> u64 {
    const MIB: u64 = 1 << 20;
    let rounded = bytes.div_ceil(MIB) * MIB;
    (rounded as f64 * (1.0 + overhead)).ceil() as u64
}

fn size_of(resources: Option<&VolumeResourceRequirements>) -> Option<u64> {
    let q = resources?.requests.as_ref()?.get("storage")?;
    u64::try_from(kubevirt_api::quantity::parse(&q.0).ok()?.value()).ok()
}

/// The claim spec for `dv`: `spec.pvc` verbatim, or `spec.storage` completed from `classes` and `profiles`.
///
/// # Errors
/// Upstream's `ErrClaimNotValid` cases.
pub fn spec_for(
    dv: &DataVolume,
    classes: &[StorageClass],
    profiles: &[StorageProfile],
    overhead: f64,
) -> Result<PersistentVolumeClaimSpec, ClaimError> {
    if let Some(pvc) = &dv.spec.pvc {
        return Ok(pvc.clone());
    }
    let Some(storage) = &dv.spec.storage else {
        return Err(ClaimError::NoTarget);
    };
    let class = match storage.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        Some(name) => classes.iter().find(|c| c.metadata.name.as_deref() == Some(name)),
        None => default_class(classes),
    };
    let class_name = storage
        .storage_class_name
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| class.and_then(|c| c.metadata.name.clone()));
    let mut access_modes = storage.access_modes.clone().filter(|m| !m.is_empty());
    let mut volume_mode = storage.volume_mode.clone();
    if access_modes.is_none() {
        let Some(name) = &class_name else {
            return Err(ClaimError::NoClass);
        };
        let sets: Vec<ClaimPropertySet> = profiles
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.claim_property_sets.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| class.map(|c| builtin_properties(&c.provisioner)))
            .unwrap_or_default();
        let chosen = sets
            .iter()
            .find(|s| volume_mode.is_none() || s.volume_mode == volume_mode)
            .ok_or_else(|| ClaimError::NoProfile(name.clone()))?;
        access_modes = chosen.access_modes.clone();
        if volume_mode.is_none() {
            volume_mode.clone_from(&chosen.volume_mode);
        }
    }
    let volume_mode = volume_mode.unwrap_or_else(|| "Filesystem".into());
    let size = size_of(storage.resources.as_ref()).ok_or(ClaimError::NoSize)?;
    let size = if volume_mode == "Filesystem" {
        inflate(size, overhead)
    } else {
        size
    };
    let mut requests = BTreeMap::new();
    requests.insert("storage".to_string(), Quantity(size.to_string()));
    Ok(PersistentVolumeClaimSpec {
        access_modes,
        volume_mode: Some(volume_mode),
        storage_class_name: class_name,
        selector: storage.selector.clone(),
        data_source: storage.data_source.clone(),
        data_source_ref: storage.data_source_ref.clone(),
        resources: Some(VolumeResourceRequirements {
            requests: Some(requests),
            limits: None,
        }),
        ..Default::default()
    })
}

/// The importer's source kind and endpoint for `dv` (`None`: a source the importer does not run, like upload).
#[must_use]
pub fn import_source(dv: &DataVolume) -> Option<(&'static str, String)> {
    let s = dv.spec.source.as_ref()?;
    if let Some(h) = &s.http {
        Some(("http", h.url.clone()))
    } else if s.blank.is_some() {
        Some(("none", String::new()))
    } else if let Some(p) = &s.pvc {
        Some(("pvc", format!("{}/{}", p.namespace, p.name)))
    } else if s.upload.is_some() {
        Some(("upload", String::new()))
    } else {
        None
    }
}

/// The claim CDI creates for `dv`.
#[must_use]
pub fn render(dv: &DataVolume, spec: PersistentVolumeClaimSpec) -> PersistentVolumeClaim {
    let mut labels = dv.metadata.labels.clone().unwrap_or_default();
    labels.insert("app".into(), "containerized-data-importer".into());
    labels.insert("app.kubernetes.io/component".into(), "storage".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "cdi-controller".into());
    let mut annotations = dv.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(
        ann::CONTENT_TYPE.into(),
        dv.spec.content_type.clone().unwrap_or_else(|| "kubevirt".into()),
    );
    if let Some((kind, endpoint)) = import_source(dv) {
        annotations.insert(ann::SOURCE.into(), kind.into());
        if !endpoint.is_empty() {
            annotations.insert(ann::ENDPOINT.into(), endpoint);
        }
    }
    annotations.insert(
        ann::CREATED_FOR.into(),
        dv.metadata.uid.clone().unwrap_or_default(),
    );
    annotations.insert(ann::USE_POPULATOR.into(), "false".into());
    if super::decide::is_upload(dv) {
        annotations.insert(ann::UPLOAD_TARGET.into(), String::new());
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: dv.metadata.name.clone(),
            namespace: dv.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner(dv)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The controller reference to `dv`.
#[must_use]
pub fn owner(dv: &DataVolume) -> OwnerReference {
    OwnerReference {
        api_version: "cdi.kubevirt.io/v1beta1".into(),
        kind: "DataVolume".into(),
        name: dv.metadata.name.clone().unwrap_or_default(),
        uid: dv.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
