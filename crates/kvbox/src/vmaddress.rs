//! Stable VM addresses on a box node: the identity of a launcher pod is its VM (found through the VMI that owns the
//! pod and the VM that controls that VMI), so a VM keeps its pod IP and MAC across stop/start, restarts and node
//! agent restarts ([`podruntime::identity`] holds the address between runs); a VM's reservation goes when the VM is
//! deleted. Standalone VMIs get an address like any pod.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use podruntime::identity::{IdentityOf, Reservations};

/// How often reservations of deleted VMs are released.
const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// The identity key of a VM.
fn key(vm_uid: &str) -> String {
    format!("vm/{vm_uid}")
}

/// A launcher pod's identity: its VM's, when its VMI belongs to one.
pub(crate) fn identity_of(client: kube::Client) -> IdentityOf {
    Arc::new(move |pod: &Pod| {
        let client = client.clone();
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let vmi = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "VirtualMachineInstance" && o.controller == Some(true))
            .map(|o| o.name.clone());
        async move {
            let vmis: Api<VirtualMachineInstance> = Api::namespaced(client, &ns);
            let vmi = vmis.get_opt(&vmi?).await.ok()??;
            let vm = vmi
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "VirtualMachine" && o.controller == Some(true))?;
            Some(key(&vm.uid))
        }
        .boxed()
    })
}

/// Releases, every few seconds, the reservations whose VM no longer exists (stops with the task).
pub(crate) async fn release_deleted(client: kube::Client, reservations: Arc<Reservations>) {
    let vms: Api<VirtualMachine> = Api::all(client);
    loop {
        if !reservations.keys().is_empty() {
            match vms.list_metadata(&ListParams::default()).await {
                Ok(list) => {
                    let keep: HashSet<String> = list
                        .items
                        .iter()
                        .filter_map(|vm| vm.metadata.uid.as_deref())
                        .map(key)
                        .collect();
                    reservations.retain(&keep);
                }
                Err(e) => tracing::debug!(error = %e, "listing VMs for address reservations"),
            }
        }
        tokio::time::sleep(RELEASE_EVERY).await;
    }
}
