//! VirtualMachineInstance requests that the handler of the VMI's node carries out: `pause`, `unpause`, `softreboot`,
//! `reset`, `freeze`, `unfreeze` (200, empty body) and the guest agent's `guestosinfo`, `userlist`,
//! `filesystemlist` (the handler's JSON; every failure a plain-text 500, as upstream answers these GETs), each
//! after upstream's checks of the VMI. The handler is found from its Node's endpoint annotation.

use kube::api::Api;
use kubevirt_api::v1::{PauseOptions, UnpauseOptions, VirtualMachine, VirtualMachineInstance};

use crate::app::App;
use crate::status::{Failure, Reply, ok};

const VMI: &str = "virtualmachineinstance";

pub(crate) fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub(crate) fn condition<'a>(vmi: &'a VirtualMachineInstance, kind: &str) -> Option<&'a str> {
    vmi.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == kind))
        .map(|c| c.status.as_str())
}

/// The VMI, or upstream's 404/500.
pub(crate) async fn get(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<VirtualMachineInstance, Failure> {
    let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Failure::not_found(VMI, name)),
        Err(e) => Err(Failure::internal(format!("unable to retrieve vmi [{name}]: {e}"))),
    }
}

/// The handler endpoint of the VMI's node (upstream's gate first: the VMI must be Running or Scheduled).
pub(crate) async fn handler_of(app: &App, vmi: &VirtualMachineInstance) -> Result<String, Failure> {
    let ph = phase(vmi);
    if !matches!(ph, "Running" | "Scheduled") {
        return Err(Failure::bad_request(format!(
            "Unable to connect to VirtualMachineInstance because phase is {ph} instead of Running or Scheduled"
        )));
    }
    let node = vmi
        .status
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    handler::client::HandlerClient::endpoint_of(&app.client, &node)
        .await
        .map_err(|_| Failure::bad_request(format!("No virt-handler on node {node} found")))
}

fn path(ns: &str, name: &str, op: &str) -> String {
    format!("/v1/namespaces/{ns}/virtualmachineinstances/{name}/{op}")
}

fn dry_run(d: Option<&Vec<String>>) -> bool {
    d.is_some_and(|d| d.first().map(String::as_str) == Some("All"))
}

/// Sends `op` to the VMI's handler (after `check`), unless `dry`.
async fn to_handler(
    app: &App,
    vmi: &VirtualMachineInstance,
    op: &str,
    body: Option<Vec<u8>>,
    dry: bool,
) -> Reply {
    let ns = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    let endpoint = handler_of(app, vmi).await?;
    if dry {
        return Ok(ok());
    }
    let handler = app.handler().await?;
    let answer = handler
        .request(&endpoint, http::Method::PUT, &path(ns, name, op), body)
        .await
        .map_err(|e| Failure::internal(e.to_string()))?;
    if !(200..300).contains(&answer.status) {
        let reason = http::StatusCode::from_u16(answer.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        return Err(Failure::internal(format!(
            "unexpected return code {} ({reason}), message: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    Ok(ok())
}

/// `PUT …/virtualmachineinstances/{name}/{op}` for the handler-run operations.
pub async fn command(app: &App, ns: &str, name: &str, op: &str, body: &[u8]) -> Reply {
    match op {
        "pause" => {
            let opts: PauseOptions = crate::vm::decode(body)?;
            let vmi = get(&app.client, ns, name).await?;
            if phase(&vmi) != "Running" {
                return Err(Failure::conflict(VMI, name, "VM is not running"));
            }
            if vmi
                .spec
                .liveness_probe
                .as_ref()
                .is_some_and(|p| p.guest_agent_ping.is_none())
            {
                return Err(Failure::forbidden(
                    VMI,
                    name,
                    "Pausing VMIs with a non-GuestAgentPing LivenessProbe is not supported",
                ));
            }
            if condition(&vmi, "Paused").is_some() {
                return Err(Failure::conflict(VMI, name, "VMI is already paused"));
            }
            to_handler(app, &vmi, op, None, dry_run(opts.dry_run.as_ref())).await
        }
        "unpause" => {
            let vms: Api<VirtualMachine> = Api::namespaced(app.client.clone(), ns);
            let vm = vms
                .get_opt(name)
                .await
                .map_err(|e| Failure::internal(e.to_string()))?;
            if vm
                .and_then(|v| v.status)
                .is_some_and(|s| s.snapshot_in_progress.is_some())
            {
                return Err(Failure::conflict(
                    "virtualmachine",
                    name,
                    "VM snapshot is in progress",
                ));
            }
            let opts: UnpauseOptions = crate::vm::decode(body)?;
            let vmi = get(&app.client, ns, name).await?;
            if phase(&vmi) != "Running" {
                return Err(Failure::conflict(VMI, name, "VMI is not running"));
            }
            if condition(&vmi, "Paused").is_none() {
                return Err(Failure::conflict(VMI, name, "VMI is not paused"));
            }
            to_handler(app, &vmi, op, None, dry_run(opts.dry_run.as_ref())).await
        }
        "softreboot" => {
            let vmi = get(&app.client, ns, name).await?;
            if phase(&vmi) != "Running" {
                return Err(Failure::conflict(VMI, name, "VM is not running"));
            }
            if condition(&vmi, "Paused") == Some("True") {
                return Err(Failure::conflict(VMI, name, "VMI is paused"));
            }
            let acpi_off = vmi
                .spec
                .domain
                .features
                .as_ref()
                .and_then(|f| f.acpi.as_ref())
                .and_then(|a| a.enabled)
                == Some(false);
            if condition(&vmi, "AgentConnected").is_none() && acpi_off {
                return Err(Failure::conflict(
                    VMI,
                    name,
                    "VMI neither have the agent connected nor the ACPI feature enabled",
                ));
            }
            to_handler(app, &vmi, op, None, false).await
        }
        "reset" => {
            let vmi = get(&app.client, ns, name).await?;
            let ph = phase(&vmi).to_string();
            to_handler(app, &vmi, op, None, false).await.map_err(|mut f| {
                if ph != "Running" {
                    f.message = format!("Failed to reset non-running VMI with phase {ph}: {}", f.message);
                }
                f
            })
        }
        "freeze" | "unfreeze" => {
            let vmi = get(&app.client, ns, name).await?;
            if phase(&vmi) != "Running" {
                let msg = if op == "freeze" {
                    "VM is not running"
                } else {
                    "VMI is not running"
                };
                return Err(Failure::conflict(VMI, name, msg));
            }
            let body = (op == "freeze").then(|| body.to_vec());
            to_handler(app, &vmi, op, body, false).await
        }
        _ => Err(Failure::bad_request(format!("unknown api endpoint: {op}"))),
    }
}

/// `GET …/virtualmachineinstances/{name}/vnc/screenshot`: the display as PNG (failures as plain-text 500s).
pub async fn screenshot(app: &App, ns: &str, name: &str) -> Reply {
    let fetch = async {
        let vmi = get(&app.client, ns, name).await?;
        if vmi.spec.domain.devices.autoattach_graphics_device == Some(false) {
            return Err(Failure::bad_request("No graphics devices are present."));
        }
        if phase(&vmi) != "Running" {
            return Err(Failure::bad_request("VMI is not running"));
        }
        let endpoint = handler_of(app, &vmi).await?;
        let handler = app.handler().await?;
        let answer = handler
            .request(
                &endpoint,
                http::Method::GET,
                &path(ns, name, "vnc/screenshot"),
                None,
            )
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        if answer.status != 200 {
            return Err(Failure::internal(
                String::from_utf8_lossy(&answer.body).into_owned(),
            ));
        }
        Ok(axum::response::IntoResponse::into_response((
            [(http::header::CONTENT_TYPE, "image/png")],
            answer.body,
        )))
    };
    fetch.await.map_err(Failure::as_plain_500)
}

/// `GET …/virtualmachineinstances/{name}/{guestosinfo|userlist|filesystemlist}`: the handler's answer.
pub async fn guest(app: &App, ns: &str, name: &str, op: &str) -> Reply {
    let fetch = async {
        let vmi = get(&app.client, ns, name).await?;
        if phase(&vmi) != "Running" {
            return Err(Failure::conflict(VMI, name, "VMI is not running"));
        }
        if condition(&vmi, "AgentConnected").is_none() {
            return Err(Failure::conflict(
                VMI,
                name,
                "VMI does not have guest agent connected",
            ));
        }
        let endpoint = handler_of(app, &vmi).await?;
        let handler = app.handler().await?;
        let answer = handler
            .request(&endpoint, http::Method::GET, &path(ns, name, op), None)
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        if answer.status != 200 {
            return Err(Failure::internal(
                String::from_utf8_lossy(&answer.body).into_owned(),
            ));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| Failure::internal(e.to_string()))?;
        Ok(axum::response::IntoResponse::into_response(axum::Json(doc)))
    };
    fetch.await.map_err(Failure::as_plain_500)
}
