//! `cdi.kubevirt.io/v1beta1` DataVolume: the kind itself and its status, which upstream's KubeVirt schema does not carry.
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
