//! A decoded API object of any kind this crate knows, or the raw JSON of one it does not.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cdi::DataVolume;
use crate::error::DecodeError;
use crate::{v1, v1alpha1, v1beta1};

/// One object, typed when its `apiVersion`/`kind` is one of ours.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// `kubevirt.io/v1` VirtualMachineInstance.
    Vmi(Box<v1::VirtualMachineInstance>),
    /// `kubevirt.io/v1` VirtualMachine.
    Vm(Box<v1::VirtualMachine>),
    /// `kubevirt.io/v1` VirtualMachineInstanceReplicaSet.
    ReplicaSet(Box<v1::VirtualMachineInstanceReplicaSet>),
    /// `kubevirt.io/v1` VirtualMachineInstanceMigration.
    Migration(Box<v1::VirtualMachineInstanceMigration>),
    /// `kubevirt.io/v1` VirtualMachineInstancePreset.
    Preset(Box<v1::VirtualMachineInstancePreset>),
    /// `kubevirt.io/v1` KubeVirt.
    KubeVirt(Box<v1::KubeVirt>),
    /// `pool.kubevirt.io/v1beta1` VirtualMachinePool.
    Pool(Box<v1beta1::VirtualMachinePool>),
    /// `instancetype.kubevirt.io/v1beta1` VirtualMachineInstancetype.
    Instancetype(Box<v1beta1::VirtualMachineInstancetype>),
    /// `instancetype.kubevirt.io/v1beta1` VirtualMachineClusterInstancetype.
    ClusterInstancetype(Box<v1beta1::VirtualMachineClusterInstancetype>),
    /// `instancetype.kubevirt.io/v1beta1` VirtualMachinePreference.
    Preference(Box<v1beta1::VirtualMachinePreference>),
    /// `instancetype.kubevirt.io/v1beta1` VirtualMachineClusterPreference.
    ClusterPreference(Box<v1beta1::VirtualMachineClusterPreference>),
    /// `migrations.kubevirt.io/v1alpha1` MigrationPolicy.
    MigrationPolicy(Box<v1alpha1::MigrationPolicy>),
    /// `snapshot.kubevirt.io/v1beta1` VirtualMachineSnapshot.
    Snapshot(Box<v1beta1::VirtualMachineSnapshot>),
    /// `snapshot.kubevirt.io/v1beta1` VirtualMachineSnapshotContent.
    SnapshotContent(Box<v1beta1::VirtualMachineSnapshotContent>),
    /// `snapshot.kubevirt.io/v1beta1` VirtualMachineRestore.
    Restore(Box<v1beta1::VirtualMachineRestore>),
    /// `cdi.kubevirt.io/v1beta1` DataVolume.
    DataVolume(Box<DataVolume>),
    /// Anything else: passed through untouched.
    Other(Value),
}

fn typed<T: DeserializeOwned>(value: Value, kind: &str) -> Result<Box<T>, DecodeError> {
    serde_path_to_error::deserialize(value)
        .map(Box::new)
        .map_err(|e| DecodeError::Field {
            kind: kind.to_string(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
}

fn untyped<T: Serialize>(obj: &T) -> Result<Value, DecodeError> {
    serde_json::to_value(obj).map_err(|e| DecodeError::Encode(e.to_string()))
}

impl Object {
    /// Decodes `value` by its `apiVersion` and `kind`.
    ///
    /// # Errors
    /// [`DecodeError::Field`] names the JSON path of the first field whose value has the wrong shape.
    pub fn from_value(value: Value) -> Result<Self, DecodeError> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        let k = kind.as_str();
        Ok(match (group, version, k) {
            ("kubevirt.io", "v1" | "v1alpha3", "VirtualMachineInstance") => Self::Vmi(typed(value, k)?),
            ("kubevirt.io", "v1" | "v1alpha3", "VirtualMachine") => Self::Vm(typed(value, k)?),
            ("kubevirt.io", "v1" | "v1alpha3", "VirtualMachineInstanceReplicaSet") => {
                Self::ReplicaSet(typed(value, k)?)
            }
            ("kubevirt.io", "v1" | "v1alpha3", "VirtualMachineInstanceMigration") => {
                Self::Migration(typed(value, k)?)
            }
            ("kubevirt.io", "v1" | "v1alpha3", "VirtualMachineInstancePreset") => {
                Self::Preset(typed(value, k)?)
            }
            ("kubevirt.io", "v1" | "v1alpha3", "KubeVirt") => Self::KubeVirt(typed(value, k)?),
            ("pool.kubevirt.io", "v1beta1" | "v1alpha1", "VirtualMachinePool") => {
                Self::Pool(typed(value, k)?)
            }
            ("instancetype.kubevirt.io", "v1beta1", "VirtualMachineInstancetype") => {
                Self::Instancetype(typed(value, k)?)
            }
            ("instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterInstancetype") => {
                Self::ClusterInstancetype(typed(value, k)?)
            }
            ("instancetype.kubevirt.io", "v1beta1", "VirtualMachinePreference") => {
                Self::Preference(typed(value, k)?)
            }
            ("instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterPreference") => {
                Self::ClusterPreference(typed(value, k)?)
            }
            ("migrations.kubevirt.io", "v1alpha1", "MigrationPolicy") => {
                Self::MigrationPolicy(typed(value, k)?)
            }
            ("snapshot.kubevirt.io", "v1beta1", "VirtualMachineSnapshot") => Self::Snapshot(typed(value, k)?),
            ("snapshot.kubevirt.io", "v1beta1", "VirtualMachineSnapshotContent") => {
                Self::SnapshotContent(typed(value, k)?)
            }
            ("snapshot.kubevirt.io", "v1beta1", "VirtualMachineRestore") => Self::Restore(typed(value, k)?),
            ("cdi.kubevirt.io", "v1beta1", "DataVolume") => Self::DataVolume(typed(value, k)?),
            _ => Self::Other(value),
        })
    }

    /// Encodes the object back to JSON.
    ///
    /// # Errors
    /// [`DecodeError::Encode`] if a value cannot be represented as JSON (not expected for well-formed objects).
    pub fn to_value(&self) -> Result<Value, DecodeError> {
        match self {
            Self::Vmi(o) => untyped(o),
            Self::Vm(o) => untyped(o),
            Self::ReplicaSet(o) => untyped(o),
            Self::Migration(o) => untyped(o),
            Self::Preset(o) => untyped(o),
            Self::KubeVirt(o) => untyped(o),
            Self::Pool(o) => untyped(o),
            Self::Instancetype(o) => untyped(o),
            Self::ClusterInstancetype(o) => untyped(o),
            Self::Preference(o) => untyped(o),
            Self::ClusterPreference(o) => untyped(o),
            Self::MigrationPolicy(o) => untyped(o),
            Self::Snapshot(o) => untyped(o),
            Self::SnapshotContent(o) => untyped(o),
            Self::Restore(o) => untyped(o),
            Self::DataVolume(o) => untyped(o),
            Self::Other(v) => Ok(v.clone()),
        }
    }
}

/// `kind` and `metadata.name` of a raw object, for messages (`VirtualMachine/testvm`).
#[must_use]
pub fn display_name(value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("<no kind>");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| meta.and_then(|m| m.get("generateName")).and_then(Value::as_str))
        .unwrap_or("<no name>");
    format!("{kind}/{name}")
}
