//! `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition (the Kubernetes Network Plumbing WG's kind that Multus reads):
//! a namespaced CNI configuration that pods, and VMIs' `multus` networks, attach to as secondary networks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A secondary network: its CNI configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkAttachmentDefinition {
    /// `k8s.cni.cncf.io/v1`.
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `NetworkAttachmentDefinition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The configuration.
    #[serde(default)]
    pub spec: NetworkAttachmentDefinitionSpec,
}

/// What the network is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkAttachmentDefinitionSpec {
    /// The CNI configuration (a network configuration or configuration list, as JSON text); empty means the
    /// configuration file named like the object on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// The pod annotation naming the secondary networks to attach (Multus' `k8s.v1.cni.cncf.io/networks`).
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The pod annotation the network runtime writes with what it attached (`k8s.v1.cni.cncf.io/network-status`).
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
