//! virt-api: KubeVirt's `subresources.kubevirt.io` API, served as an aggregated API server behind the Kubernetes API
//! server (box mode's or a cluster's). Callers are authenticated by the front proxy ([`authn`]) and authorized with
//! SubjectAccessReviews ([`authz`]); VM lifecycle requests become patches of the VM as upstream writes them ([`vm`]);
//! VMI requests go to the handler of the VMI's node ([`vmi`], over [`handler::client`]), console and VNC as
//! websockets relayed byte for byte ([`stream`]); port-forward tunnels dial the guest
//! themselves ([`portforward`]); volume hotplug requests are recorded on
//! the VM or VMI ([`volumes`]); `virtctl expand` gets a VM with its instancetype expanded ([`expand`]). For a cluster's kube-apiserver it also serves KubeVirt's admission
//! webhooks ([`webhooks`]); CDI's UploadTokenRequests are signed here too ([`upload`]). Errors are Kubernetes `Status` objects in upstream's words
//! ([`status`]); [`server`] puts it together around the [`app`] every handler shares.

pub mod app;
pub mod authn;
pub mod authz;
pub mod expand;
pub mod portforward;
pub mod server;
pub mod status;
pub mod stream;
pub mod upload;
pub mod vm;
pub mod vmi;
pub mod volumes;
pub mod webhooks;

/// Why virt-api could not start or a call to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Configuration or certificates are missing or unusable.
    #[error("{0}")]
    Setup(String),
    /// The caller may not do this (the authorizer's words).
    #[error("{0}")]
    Forbidden(String),
}
