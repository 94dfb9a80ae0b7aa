//! `expand-spec` (GET, a stored VM) and `expand-vm-spec` (PUT, a VM in the body): the VM with its instancetype and
//! preference expanded into its template, as upstream's virt-api answers `virtctl expand`. The specs are found as
//! the VM controller finds them (the stored revision first); the expansion is the `api` crate's.

use axum::body::Bytes;
use axum::response::IntoResponse;
use kube::api::Api;
use kubevirt_api::v1::VirtualMachine;

use crate::app::App;
use crate::status::{Failure, Reply};

/// Expands `vm`; `failure` turns an error into the route's status (500 for a stored VM, 400 for a posted one).
async fn expanded(app: &App, vm: &VirtualMachine, failure: fn(String) -> Failure) -> Reply {
    let specs = controller::instancetype::find_specs(&app.client, vm)
        .await
        .map_err(|e| failure(e.message))?;
    let config = crate::webhooks::cluster_config(&app.client).await;
    let mut out = kubevirt_api::expand::vm(
        vm,
        specs.instancetype.as_ref(),
        specs.preference.as_ref(),
        &config,
    )
    .map_err(failure)?;
    out.metadata.managed_fields = None;
    let mut body = serde_json::to_value(&out).map_err(|e| Failure::internal(e.to_string()))?;
    body["apiVersion"] = serde_json::json!("kubevirt.io/v1");
    body["kind"] = serde_json::json!("VirtualMachine");
    Ok(axum::Json(body).into_response())
}

/// `GET …/namespaces/NS/virtualmachines/NAME/expand-spec`.
///
/// # Errors
/// 404 for a missing VM, 500 when its instancetype or preference cannot be found or conflicts.
pub async fn stored(app: &App, ns: &str, name: &str) -> Reply {
    let vms: Api<VirtualMachine> = Api::namespaced(app.client.clone(), ns);
    let vm = crate::vm::get_vm(&vms, name).await?;
    expanded(app, &vm, Failure::internal).await
}

/// `PUT …/namespaces/NS/expand-vm-spec` with a VirtualMachine.
///
/// # Errors
/// 400 for an empty or undecodable body, a namespace other than the request's, or a failed expansion.
pub async fn posted(app: &App, ns: &str, body: &Bytes) -> Reply {
    if body.is_empty() {
        return Err(Failure::bad_request("empty request body"));
    }
    let mut vm: VirtualMachine = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("Can not unmarshal Request body to struct, error: {e}")))?;
    if vm
        .metadata
        .namespace
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != ns)
    {
        return Err(Failure::bad_request(format!(
            "VM namespace must be empty or {ns}"
        )));
    }
    vm.metadata.namespace = Some(ns.to_string());
    expanded(app, &vm, Failure::bad_request).await
}
