//! Which generated types are API kinds: their group, version and plural, as `k8s_openapi` traits so kube-rs can use them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, ListableResource, Metadata, NamespaceResourceScope, Resource};

use crate::cdi::{CdiConfig, DataVolume, StorageProfile};
use crate::{v1, v1alpha1, v1beta1};

macro_rules! kind {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal, $scope:ty) => {
        impl Resource for $ty {
            const API_VERSION: &'static str = concat!($group, "/", $version);
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }
        impl ListableResource for $ty {
            const LIST_KIND: &'static str = concat!($kind, "List");
        }
        impl Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

type Ns = NamespaceResourceScope;
type Cluster = ClusterResourceScope;

kind!(
    v1::VirtualMachineInstance,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstance",
    "virtualmachineinstances",
    Ns
);
kind!(
    v1::VirtualMachine,
    "kubevirt.io",
    "v1",
    "VirtualMachine",
    "virtualmachines",
    Ns
);
kind!(
    v1::VirtualMachineInstanceReplicaSet,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceReplicaSet",
    "virtualmachineinstancereplicasets",
    Ns
);
kind!(
    v1::VirtualMachineInstanceMigration,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceMigration",
    "virtualmachineinstancemigrations",
    Ns
);
kind!(
    v1::VirtualMachineInstancePreset,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstancePreset",
    "virtualmachineinstancepresets",
    Ns
);
kind!(v1::KubeVirt, "kubevirt.io", "v1", "KubeVirt", "kubevirts", Ns);
kind!(
    v1beta1::VirtualMachinePool,
    "pool.kubevirt.io",
    "v1beta1",
    "VirtualMachinePool",
    "virtualmachinepools",
    Ns
);
kind!(
    v1beta1::VirtualMachineInstancetype,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachineInstancetype",
    "virtualmachineinstancetypes",
    Ns
);
kind!(
    v1beta1::VirtualMachineClusterInstancetype,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachineClusterInstancetype",
    "virtualmachineclusterinstancetypes",
    Cluster
);
kind!(
    v1beta1::VirtualMachinePreference,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachinePreference",
    "virtualmachinepreferences",
    Ns
);
kind!(
    v1beta1::VirtualMachineClusterPreference,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachineClusterPreference",
    "virtualmachineclusterpreferences",
    Cluster
);
kind!(
    v1alpha1::MigrationPolicy,
    "migrations.kubevirt.io",
    "v1alpha1",
    "MigrationPolicy",
    "migrationpolicies",
    Cluster
);
kind!(
    v1beta1::VirtualMachineSnapshot,
    "snapshot.kubevirt.io",
    "v1beta1",
    "VirtualMachineSnapshot",
    "virtualmachinesnapshots",
    Ns
);
kind!(
    v1beta1::VirtualMachineSnapshotContent,
    "snapshot.kubevirt.io",
    "v1beta1",
    "VirtualMachineSnapshotContent",
    "virtualmachinesnapshotcontents",
    Ns
);
kind!(
    v1beta1::VirtualMachineRestore,
    "snapshot.kubevirt.io",
    "v1beta1",
    "VirtualMachineRestore",
    "virtualmachinerestores",
    Ns
);
kind!(
    DataVolume,
    "cdi.kubevirt.io",
    "v1beta1",
    "DataVolume",
    "datavolumes",
    Ns
);
kind!(
    StorageProfile,
    "cdi.kubevirt.io",
    "v1beta1",
    "StorageProfile",
    "storageprofiles",
    Cluster
);
kind!(
    CdiConfig,
    "cdi.kubevirt.io",
    "v1beta1",
    "CDIConfig",
    "cdiconfigs",
    Cluster
);
