//! CustomResourceDefinition manifests for every kind of this crate, generated from the Rust types.
//!
//! Names, short names, categories, versions, subresources and printer columns are upstream's; the schema of each
//! version is [`schema::structural_schema_for`] of our type. `kvbox crds` prints them; a test keeps the checked-in
//! copy (`crates/api/crds/crds.yaml`) in step.

mod schema;

use serde_json::{Value, json};

use crate::cdi::{CdiConfig, DataVolume, StorageProfile};
use crate::nad::NetworkAttachmentDefinition;
use crate::{v1, v1alpha1, v1beta1};

pub use schema::structural_schema_for;

/// Where the objects of a CRD live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In a namespace.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// One served version of a CRD.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    /// Version name, such as `v1`.
    pub name: &'static str,
    /// Whether the store keeps objects in this version.
    pub storage: bool,
    /// The warning returned to clients when the version is deprecated.
    pub deprecation_warning: Option<&'static str>,
}

/// An additional printer column (`kubectl get`).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Column header.
    pub name: &'static str,
    /// OpenAPI type: string, integer, boolean, date.
    pub type_: &'static str,
    /// JSONPath into the object.
    pub json_path: &'static str,
    /// 0 for the default view, 1 for `-o wide`.
    pub priority: i32,
    /// Optional description.
    pub description: Option<&'static str>,
}

/// The `scale` subresource's paths.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// `.spec.replicas`.
    pub spec_replicas: &'static str,
    /// `.status.replicas`.
    pub status_replicas: &'static str,
    /// `.status.labelSelector`.
    pub label_selector: &'static str,
}

/// Everything needed to render one CRD.
#[derive(Clone, Copy, Debug)]
pub struct CrdInfo {
    /// API group.
    pub group: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// Short names accepted by kubectl.
    pub short_names: &'static [&'static str],
    /// Categories (`kubectl get all`).
    pub categories: &'static [&'static str],
    /// Namespaced or cluster-wide.
    pub scope: Scope,
    /// Served versions (all share one schema).
    pub versions: &'static [Version],
    /// Whether `/status` is a subresource.
    pub status: bool,
    /// The `/scale` subresource, if any.
    pub scale: Option<Scale>,
    /// Printer columns.
    pub columns: &'static [Column],
    /// The structural schema of the kind.
    pub schema: fn() -> Value,
}

const fn col(name: &'static str, type_: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        type_,
        json_path,
        priority: 0,
        description: None,
    }
}

const AGE: Column = col("Age", "date", ".metadata.creationTimestamp");
const V1_AND_ALPHA3: &[Version] = &[
    Version {
        name: "v1",
        storage: true,
        deprecation_warning: None,
    },
    Version {
        name: "v1alpha3",
        storage: false,
        deprecation_warning: Some(
            "kubevirt.io/v1alpha3 is now deprecated and will be removed in a future release.",
        ),
    },
];
const V1BETA1: &[Version] = &[Version {
    name: "v1beta1",
    storage: true,
    deprecation_warning: None,
}];
const ALPHA1_AND_BETA1: &[Version] = &[
    Version {
        name: "v1alpha1",
        storage: false,
        deprecation_warning: None,
    },
    Version {
        name: "v1beta1",
        storage: true,
        deprecation_warning: None,
    },
];
const V1_ONLY: &[Version] = &[Version {
    name: "v1",
    storage: true,
    deprecation_warning: None,
}];
const V1ALPHA1: &[Version] = &[Version {
    name: "v1alpha1",
    storage: true,
    deprecation_warning: None,
}];
const ALL: &[&str] = &["all"];
const REPLICA_COLUMNS: &[Column] = &[
    Column {
        description: Some("Number of desired VirtualMachineInstances"),
        ..col("Desired", "integer", ".spec.replicas")
    },
    Column {
        description: Some("Number of managed and not final or deleted VirtualMachineInstances"),
        ..col("Current", "integer", ".status.replicas")
    },
    Column {
        description: Some("Number of managed VirtualMachineInstances which are ready to receive traffic"),
        ..col("Ready", "integer", ".status.readyReplicas")
    },
    AGE,
];
const SCALE: Scale = Scale {
    spec_replicas: ".spec.replicas",
    status_replicas: ".status.replicas",
    label_selector: ".status.labelSelector",
};

/// Every CRD this crate defines, in install order.
pub const CRDS: &[CrdInfo] = &[
    CrdInfo {
        group: "kubevirt.io",
        kind: "VirtualMachineInstance",
        plural: "virtualmachineinstances",
        singular: "virtualmachineinstance",
        short_names: &["vmi", "vmis"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1_AND_ALPHA3,
        status: false,
        scale: None,
        columns: &[
            AGE,
            col("Phase", "string", ".status.phase"),
            col("IP", "string", ".status.interfaces[0].ipAddress"),
            col("NodeName", "string", ".status.nodeName"),
            col("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
            Column {
                priority: 1,
                ..col(
                    "Live-Migratable",
                    "string",
                    ".status.conditions[?(@.type=='LiveMigratable')].status",
                )
            },
            Column {
                priority: 1,
                ..col(
                    "Paused",
                    "string",
                    ".status.conditions[?(@.type=='Paused')].status",
                )
            },
        ],
        schema: structural_schema_for::<v1::VirtualMachineInstance>,
    },
    CrdInfo {
        group: "kubevirt.io",
        kind: "VirtualMachine",
        plural: "virtualmachines",
        singular: "virtualmachine",
        short_names: &["vm", "vms"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1_AND_ALPHA3,
        status: true,
        scale: None,
        columns: &[
            AGE,
            Column {
                description: Some("Human Readable Status"),
                ..col("Status", "string", ".status.printableStatus")
            },
            col("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
        ],
        schema: structural_schema_for::<v1::VirtualMachine>,
    },
    CrdInfo {
        group: "kubevirt.io",
        kind: "VirtualMachineInstanceReplicaSet",
        plural: "virtualmachineinstancereplicasets",
        singular: "virtualmachineinstancereplicaset",
        short_names: &["vmirs", "vmirss"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1_AND_ALPHA3,
        status: true,
        scale: Some(SCALE),
        columns: REPLICA_COLUMNS,
        schema: structural_schema_for::<v1::VirtualMachineInstanceReplicaSet>,
    },
    CrdInfo {
        group: "kubevirt.io",
        kind: "VirtualMachineInstanceMigration",
        plural: "virtualmachineinstancemigrations",
        singular: "virtualmachineinstancemigration",
        short_names: &["vmim", "vmims"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1_AND_ALPHA3,
        status: true,
        scale: None,
        columns: &[
            Column {
                description: Some("The current phase of VM instance migration"),
                ..col("Phase", "string", ".status.phase")
            },
            Column {
                description: Some("The name of the VMI to perform the migration on"),
                ..col("VMI", "string", ".spec.vmiName")
            },
        ],
        schema: structural_schema_for::<v1::VirtualMachineInstanceMigration>,
    },
    CrdInfo {
        group: "kubevirt.io",
        kind: "VirtualMachineInstancePreset",
        plural: "virtualmachineinstancepresets",
        singular: "virtualmachineinstancepreset",
        short_names: &["vmipreset", "vmipresets"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: &[
            Version {
                name: "v1",
                storage: false,
                deprecation_warning: Some(
                    "kubevirt.io/v1 VirtualMachineInstancePresets is now deprecated and will be removed in v2.",
                ),
            },
            Version {
                name: "v1alpha3",
                storage: true,
                deprecation_warning: Some(
                    "kubevirt.io/v1alpha3 VirtualMachineInstancePresets is now deprecated and will be removed in v2.",
                ),
            },
        ],
        status: false,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1::VirtualMachineInstancePreset>,
    },
    CrdInfo {
        group: "kubevirt.io",
        kind: "KubeVirt",
        plural: "kubevirts",
        singular: "kubevirt",
        short_names: &["kv", "kvs"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1_AND_ALPHA3,
        status: true,
        scale: None,
        columns: &[AGE, col("Phase", "string", ".status.phase")],
        schema: structural_schema_for::<v1::KubeVirt>,
    },
    CrdInfo {
        group: "pool.kubevirt.io",
        kind: "VirtualMachinePool",
        plural: "virtualmachinepools",
        singular: "virtualmachinepool",
        short_names: &["vmpool", "vmpools"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: ALPHA1_AND_BETA1,
        status: true,
        scale: Some(SCALE),
        columns: &[
            Column {
                description: Some("Number of desired VirtualMachines"),
                ..col("Desired", "integer", ".spec.replicas")
            },
            Column {
                description: Some("Number of managed and not final or deleted VirtualMachines"),
                ..col("Current", "integer", ".status.replicas")
            },
            Column {
                description: Some("Number of managed VirtualMachines which are ready to receive traffic"),
                ..col("Ready", "integer", ".status.readyReplicas")
            },
            AGE,
        ],
        schema: structural_schema_for::<v1beta1::VirtualMachinePool>,
    },
    CrdInfo {
        group: "instancetype.kubevirt.io",
        kind: "VirtualMachineInstancetype",
        plural: "virtualmachineinstancetypes",
        singular: "virtualmachineinstancetype",
        short_names: &["vminstancetype", "vminstancetypes", "vmf", "vmfs"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1BETA1,
        status: false,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1beta1::VirtualMachineInstancetype>,
    },
    CrdInfo {
        group: "instancetype.kubevirt.io",
        kind: "VirtualMachineClusterInstancetype",
        plural: "virtualmachineclusterinstancetypes",
        singular: "virtualmachineclusterinstancetype",
        short_names: &["vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"],
        categories: &[],
        scope: Scope::Cluster,
        versions: V1BETA1,
        status: false,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1beta1::VirtualMachineClusterInstancetype>,
    },
    CrdInfo {
        group: "instancetype.kubevirt.io",
        kind: "VirtualMachinePreference",
        plural: "virtualmachinepreferences",
        singular: "virtualmachinepreference",
        short_names: &["vmpref", "vmprefs", "vmp", "vmps"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1BETA1,
        status: false,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1beta1::VirtualMachinePreference>,
    },
    CrdInfo {
        group: "instancetype.kubevirt.io",
        kind: "VirtualMachineClusterPreference",
        plural: "virtualmachineclusterpreferences",
        singular: "virtualmachineclusterpreference",
        short_names: &["vmcp", "vmcps"],
        categories: &[],
        scope: Scope::Cluster,
        versions: V1BETA1,
        status: false,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1beta1::VirtualMachineClusterPreference>,
    },
    CrdInfo {
        group: "migrations.kubevirt.io",
        kind: "MigrationPolicy",
        plural: "migrationpolicies",
        singular: "migrationpolicy",
        short_names: &[],
        categories: ALL,
        scope: Scope::Cluster,
        versions: V1ALPHA1,
        status: true,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<v1alpha1::MigrationPolicy>,
    },
    CrdInfo {
        group: "snapshot.kubevirt.io",
        kind: "VirtualMachineSnapshot",
        plural: "virtualmachinesnapshots",
        singular: "virtualmachinesnapshot",
        short_names: &["vmsnapshot", "vmsnapshots"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: ALPHA1_AND_BETA1,
        status: true,
        scale: None,
        columns: &[
            col("SourceKind", "string", ".spec.source.kind"),
            col("SourceName", "string", ".spec.source.name"),
            col("Phase", "string", ".status.phase"),
            col("ReadyToUse", "boolean", ".status.readyToUse"),
            col("CreationTime", "date", ".status.creationTime"),
            col("Error", "string", ".status.error.message"),
        ],
        schema: structural_schema_for::<v1beta1::VirtualMachineSnapshot>,
    },
    CrdInfo {
        group: "snapshot.kubevirt.io",
        kind: "VirtualMachineSnapshotContent",
        plural: "virtualmachinesnapshotcontents",
        singular: "virtualmachinesnapshotcontent",
        short_names: &["vmsnapshotcontent", "vmsnapshotcontents"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: ALPHA1_AND_BETA1,
        status: true,
        scale: None,
        columns: &[
            col("ReadyToUse", "boolean", ".status.readyToUse"),
            col("CreationTime", "date", ".status.creationTime"),
            col("Error", "string", ".status.error.message"),
        ],
        schema: structural_schema_for::<v1beta1::VirtualMachineSnapshotContent>,
    },
    CrdInfo {
        group: "snapshot.kubevirt.io",
        kind: "VirtualMachineRestore",
        plural: "virtualmachinerestores",
        singular: "virtualmachinerestore",
        short_names: &["vmrestore", "vmrestores"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: ALPHA1_AND_BETA1,
        status: true,
        scale: None,
        columns: &[
            col("TargetKind", "string", ".spec.target.kind"),
            col("TargetName", "string", ".spec.target.name"),
            col("Complete", "boolean", ".status.complete"),
            col("RestoreTime", "date", ".status.restoreTime"),
        ],
        schema: structural_schema_for::<v1beta1::VirtualMachineRestore>,
    },
    CrdInfo {
        group: "cdi.kubevirt.io",
        kind: "DataVolume",
        plural: "datavolumes",
        singular: "datavolume",
        short_names: &["dv", "dvs"],
        categories: ALL,
        scope: Scope::Namespaced,
        versions: V1BETA1,
        status: true,
        scale: None,
        columns: &[
            Column {
                description: Some("The phase the data volume is in"),
                ..col("Phase", "string", ".status.phase")
            },
            Column {
                description: Some("Transfer progress in percentage if known, N/A otherwise"),
                ..col("Progress", "string", ".status.progress")
            },
            Column {
                description: Some("The number of times the transfer has been restarted."),
                ..col("Restarts", "integer", ".status.restartCount")
            },
            AGE,
        ],
        schema: structural_schema_for::<DataVolume>,
    },
    CrdInfo {
        group: "cdi.kubevirt.io",
        kind: "StorageProfile",
        plural: "storageprofiles",
        singular: "storageprofile",
        short_names: &[],
        categories: &[],
        scope: Scope::Cluster,
        versions: V1BETA1,
        status: true,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<StorageProfile>,
    },
    CrdInfo {
        group: "cdi.kubevirt.io",
        kind: "CDIConfig",
        plural: "cdiconfigs",
        singular: "cdiconfig",
        short_names: &[],
        categories: &[],
        scope: Scope::Cluster,
        versions: V1BETA1,
        status: true,
        scale: None,
        columns: &[],
        schema: structural_schema_for::<CdiConfig>,
    },
];

/// The Network Plumbing WG's NetworkAttachmentDefinition CRD, which box mode serves in Multus' place (on a cluster
/// Multus installs its own, so it is not among [`all`]).
pub const MULTUS: CrdInfo = CrdInfo {
    group: "k8s.cni.cncf.io",
    kind: "NetworkAttachmentDefinition",
    plural: "network-attachment-definitions",
    singular: "network-attachment-definition",
    short_names: &["net-attach-def"],
    categories: &[],
    scope: Scope::Namespaced,
    versions: V1_ONLY,
    status: false,
    scale: None,
    columns: &[],
    schema: structural_schema_for::<NetworkAttachmentDefinition>,
};

/// Upstream bounds these VMI spec lists in its CRD schema (`maxItems`), so the API server refuses longer ones.
const BOUNDED_LISTS: &[&[&str]] = &[
    &["volumes"],
    &["networks"],
    &["accessCredentials"],
    &["utilityVolumes"],
    &["domain", "devices", "disks"],
    &["domain", "devices", "interfaces"],
];

/// Adds `maxItems` to the bounded lists of every VMI spec inside `schema` (a VMI spec is recognised by having both
/// `domain` and `volumes`).
fn bound_lists(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    let is_vmi_spec = obj.get("properties").is_some_and(|p| {
        p.get("domain").is_some() && p.get("volumes").is_some() && p.get("networks").is_some()
    });
    if is_vmi_spec {
        for path in BOUNDED_LISTS {
            let mut node = &mut *schema;
            for seg in *path {
                node = &mut node["properties"][*seg];
            }
            if node.get("type").and_then(Value::as_str) == Some("array") {
                node["maxItems"] = json!(crate::validate::MAX_LIST);
            }
        }
    }
    if let Some(obj) = schema.as_object_mut() {
        for key in ["properties", "additionalProperties", "items"] {
            match obj.get_mut(key) {
                Some(Value::Object(m)) if key == "properties" => m.values_mut().for_each(bound_lists),
                Some(v) if key != "properties" => bound_lists(v),
                _ => {}
            }
        }
    }
}

/// The CRD manifest for `info`, as apiextensions.k8s.io/v1 JSON.
#[must_use]
pub fn render(info: &CrdInfo) -> Value {
    let mut schema = (info.schema)();
    bound_lists(&mut schema);
    let versions: Vec<Value> = info
        .versions
        .iter()
        .map(|v| {
            let mut ver = json!({
                "name": v.name,
                "served": true,
                "storage": v.storage,
                "schema": {"openAPIV3Schema": schema},
            });
            if let Some(w) = v.deprecation_warning {
                ver["deprecated"] = json!(true);
                ver["deprecationWarning"] = json!(w);
            }
            if !info.columns.is_empty() {
                ver["additionalPrinterColumns"] = info
                    .columns
                    .iter()
                    .map(|c| {
                        let mut col = json!({"name": c.name, "type": c.type_, "jsonPath": c.json_path});
                        if c.priority != 0 {
                            col["priority"] = json!(c.priority);
                        }
                        if let Some(d) = c.description {
                            col["description"] = json!(d);
                        }
                        col
                    })
                    .collect();
            }
            let mut sub = serde_json::Map::new();
            if info.status {
                sub.insert("status".into(), json!({}));
            }
            if let Some(s) = info.scale {
                sub.insert(
                    "scale".into(),
                    json!({
                        "specReplicasPath": s.spec_replicas,
                        "statusReplicasPath": s.status_replicas,
                        "labelSelectorPath": s.label_selector,
                    }),
                );
            }
            if !sub.is_empty() {
                ver["subresources"] = Value::Object(sub);
            }
            ver
        })
        .collect();
    let mut names = json!({
        "plural": info.plural,
        "singular": info.singular,
        "kind": info.kind,
        "listKind": format!("{}List", info.kind),
    });
    if !info.short_names.is_empty() {
        names["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        names["categories"] = json!(info.categories);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", info.plural, info.group),
            "labels": if info.kind == "KubeVirt" { json!({"operator.kubevirt.io": ""}) } else { json!({"kubevirt.io": ""}) },
        },
        "spec": {
            "group": info.group,
            "names": names,
            "scope": match info.scope { Scope::Namespaced => "Namespaced", Scope::Cluster => "Cluster" },
            "versions": versions,
        },
    })
}

/// All CRD manifests, in [`CRDS`] order.
#[must_use]
pub fn all() -> Vec<Value> {
    CRDS.iter().map(render).collect()
}

/// Every CRD box mode's API server serves: [`all`], then [`MULTUS`].
#[must_use]
pub fn served_in_box() -> Vec<Value> {
    let mut out = all();
    out.push(render(&MULTUS));
    out
}
