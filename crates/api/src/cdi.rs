//! `cdi.kubevirt.io/v1beta1` DataVolume (the kind itself and its status, which upstream's KubeVirt schema does not
//! carry), StorageProfile and CDIConfig.
//!
//! The spec reuses the generated [`crate::v1beta1::DataVolumeSpec`] (KubeVirt embeds it in `dataVolumeTemplates`);
//! the status follows CDI's API: a phase, a progress string such as `"45.20%"`, a restart count and conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::v1beta1::DataVolumeSpec;

/// A request to populate a PersistentVolumeClaim from a source (HTTP, registry, upload, blank, another PVC).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataVolume {
    /// `cdi.kubevirt.io/v1beta1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `DataVolume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to import and where to put it.
    pub spec: DataVolumeSpec,
    /// Import progress as observed by the DataVolume controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DataVolumeStatus>,
}

/// Observed state of a [`DataVolume`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataVolumeStatus {
    /// Name of the PVC this DataVolume populates.
    #[serde(rename = "claimName", skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Pending, ImportScheduled, ImportInProgress, Succeeded, Failed, WaitForFirstConsumer, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Percentage done, rendered as text (`"N/A"` or `"45.20%"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// How many times the importer pod was restarted.
    #[serde(rename = "restartCount", skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// Bound, Ready and Running conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<DataVolumeCondition>>,
}

/// One condition of a [`DataVolume`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataVolumeCondition {
    /// Bound, Ready or Running.
    #[serde(rename = "type")]
    pub r#type: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// When the condition was last checked.
    #[serde(rename = "lastProbeTime", skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// When the controller last confirmed the condition (CDI's heartbeat).
    #[serde(rename = "lastHeartbeatTime", skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// When the status last changed.
    #[serde(rename = "lastTransitionTime", skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `cdi.kubevirt.io/v1beta1` StorageProfile: per StorageClass (same name, cluster-scoped), the claim properties and
/// clone strategy CDI uses when a DataVolume's `spec.storage` leaves them out. Served so clients that read it (kcli,
/// virtctl) find the kind; the storage controller fills it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageProfile {
    /// `cdi.kubevirt.io/v1beta1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `StorageProfile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the administrator set.
    #[serde(default)]
    pub spec: StorageProfileSpec,
    /// What CDI resolved for the class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StorageProfileStatus>,
}

/// One accepted combination of access modes and volume mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimPropertySet {
    /// ReadWriteOnce, ReadWriteMany, ...
    #[serde(rename = "accessModes", skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
    /// Filesystem or Block.
    #[serde(rename = "volumeMode", skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}

/// [`StorageProfile`] settings an administrator may give.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageProfileSpec {
    /// Claim properties, first preferred (at most 8).
    #[serde(rename = "claimPropertySets", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
    /// copy, snapshot or csi-clone.
    #[serde(rename = "cloneStrategy", skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<String>,
    /// pvc or snapshot.
    #[serde(
        rename = "dataImportCronSourceFormat",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_import_cron_source_format: Option<String>,
    /// The VolumeSnapshotClass to use.
    #[serde(rename = "snapshotClass", skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
}

/// [`StorageProfile`] as resolved for its class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StorageProfileStatus {
    /// The StorageClass.
    #[serde(rename = "storageClass", skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Its provisioner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    /// Claim properties in force.
    #[serde(rename = "claimPropertySets", skip_serializing_if = "Option::is_none")]
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
    /// Clone strategy in force.
    #[serde(rename = "cloneStrategy", skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<String>,
    /// DataImportCron source format in force.
    #[serde(
        rename = "dataImportCronSourceFormat",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_import_cron_source_format: Option<String>,
    /// Snapshot class in force.
    #[serde(rename = "snapshotClass", skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
}

/// `cdi.kubevirt.io/v1beta1` CDIConfig (cluster-scoped, one named `config`): CDI's settings, and what CDI resolved
/// from them — where the upload proxy is, the file-system overhead per class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdiConfig {
    /// `cdi.kubevirt.io/v1beta1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `CDIConfig`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the administrator set.
    #[serde(default)]
    pub spec: CdiConfigSpec,
    /// What CDI resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CdiConfigStatus>,
}

/// The file-system overhead: a global fraction and per-class ones (`"0.06"`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FilesystemOverhead {
    /// For every class without its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<String>,
    /// Per StorageClass.
    #[serde(rename = "storageClass", skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<std::collections::BTreeMap<String, String>>,
}

/// [`CdiConfig`] settings (those kubevirt-rs acts on; others are kept as given).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdiConfigSpec {
    /// Where clients reach the upload proxy, overriding what CDI found.
    #[serde(rename = "uploadProxyURLOverride", skip_serializing_if = "Option::is_none")]
    pub upload_proxy_url_override: Option<String>,
    /// The class scratch space is taken from.
    #[serde(rename = "scratchSpaceStorageClass", skip_serializing_if = "Option::is_none")]
    pub scratch_space_storage_class: Option<String>,
    /// The share of a Filesystem claim the file system takes.
    #[serde(rename = "filesystemOverhead", skip_serializing_if = "Option::is_none")]
    pub filesystem_overhead: Option<FilesystemOverhead>,
    /// Preallocate disks by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// Registries reached without TLS verification.
    #[serde(rename = "insecureRegistries", skip_serializing_if = "Option::is_none")]
    pub insecure_registries: Option<Vec<String>>,
}

/// [`CdiConfig`] as resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdiConfigStatus {
    /// The upload proxy's address (host and port; clients prepend `https://`).
    #[serde(rename = "uploadProxyURL", skip_serializing_if = "Option::is_none")]
    pub upload_proxy_url: Option<String>,
    /// The CA bundle the upload proxy's certificate chains to.
    #[serde(rename = "uploadProxyCA", skip_serializing_if = "Option::is_none")]
    pub upload_proxy_ca: Option<String>,
    /// The class scratch space is taken from.
    #[serde(rename = "scratchSpaceStorageClass", skip_serializing_if = "Option::is_none")]
    pub scratch_space_storage_class: Option<String>,
    /// The overhead in force, per class.
    #[serde(rename = "filesystemOverhead", skip_serializing_if = "Option::is_none")]
    pub filesystem_overhead: Option<FilesystemOverhead>,
    /// Whether disks are preallocated by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
}
