//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]), the VMI, VM, replica-set and migration reconcilers ([`vmi`], [`vm`], [`replicaset`], [`migration`]), instancetype expansion ([`instancetype`]) and the expand reference policies ([`expandpolicy`]), the node heartbeat watch ([`node`]), CDI's DataVolume and StorageProfile controllers ([`cdi`]), crash-loop backoff ([`backoff`]), and the lease its replicas elect their leader on ([`leader_config`]).

pub mod backoff;
pub mod cdi;
pub mod expandpolicy;
pub mod instancetype;
pub mod manager;
pub mod migration;
pub mod node;
pub mod overhead;
pub mod pod;
pub mod podvolumes;
pub mod replicaset;
pub mod vm;
pub mod vmi;

/// The cluster configuration, read from the KubeVirt CR (upstream's defaults without one).
pub async fn cluster_config(client: &kube::Client) -> kubevirt_api::config::ClusterConfig {
    let kvs: kube::Api<kubevirt_api::v1::KubeVirt> = kube::Api::all(client.clone());
    let list = kvs
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    kubevirt_api::config::ClusterConfig::from_kubevirt(list.first())
}

/// The election virt-controller replicas hold (Lease `kubevirt/virt-controller`, as upstream's) for `identity`.
#[must_use]
pub fn leader_config(
    identity: &str,
    lease_duration: std::time::Duration,
) -> kube_support::leader::LeaderConfig {
    kube_support::leader::LeaderConfig::new("kubevirt", "virt-controller", identity, lease_duration)
}
