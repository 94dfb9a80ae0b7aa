//! Console and VNC: after upstream's checks the handler of the VMI's node is asked for the stream; only once it has
//! upgraded does the client get its `101 Switching Protocols`, and from then on bytes are relayed as they come in
//! both directions — websocket frames pass end to end, client ↔ handler, as upstream's relay does. The handler
//! closes a session that another one takes over and pings idle ones, so nothing here times out a quiet console.
//! The handshake with the client is answered here by hand (RFC 6455's accept key): the relay needs the raw
//! connection, which axum's websocket type does not give out.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;

use crate::app::App;
use crate::status::{Failure, Reply};
use crate::vmi::{get, handler_of, phase};

const VMI: &str = "virtualmachineinstance";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn checks(vmi: &kubevirt_api::v1::VirtualMachineInstance, kind: &str, name: &str) -> Result<(), Failure> {
    let devices = &vmi.spec.domain.devices;
    if kind == "console" {
        if devices.autoattach_serial_console == Some(false) {
            return Err(Failure::bad_request("No serial consoles are present."));
        }
        if phase(vmi) == "Failed" {
            return Err(Failure::conflict(VMI, name, "VMI is in failed status"));
        }
    } else if devices.autoattach_graphics_device == Some(false) {
        return Err(Failure::bad_request("No graphics devices are present."));
    }
    if phase(vmi) != "Running" {
        return Err(Failure::bad_request("VMI is not running"));
    }
    Ok(())
}

/// `GET …/virtualmachineinstances/{name}/{console|vnc}` as a websocket.
pub async fn open(app: &App, ns: &str, name: &str, kind: &str, mut req: Request) -> Reply {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Failure::bad_request("a websocket upgrade is required"))?;
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == handler::stream::SUBPROTOCOL);
    let vmi = get(&app.client, ns, name).await?;
    checks(&vmi, kind, name)?;
    let endpoint = handler_of(app, &vmi).await?;
    let mut path = format!("/v1/namespaces/{ns}/virtualmachineinstances/{name}/{kind}");
    if kind == "vnc" {
        let preserve = req
            .uri()
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .any(|kv| kv == "preserveSession=true");
        path.push_str(&format!("?preserveSession={preserve}"));
    }
    let handler = app.handler().await?;
    let upstream = handler.upgrade(&endpoint, &path).await.map_err(|r| {
        let mut detail = r.body.clone();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body)
            && let Some(m) = v.get("message").and_then(|m| m.as_str())
        {
            detail = m.to_string();
        }
        Failure::internal(format!(
            "Can't connect to websocket ({}): websocket: bad handshake: application info: {detail}",
            r.status
        ))
    })?;
    let client = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| Failure::bad_request("the connection cannot be upgraded"))?;
    let stream = format!("{ns}/{name} {kind}");
    tokio::spawn(async move {
        let Ok(client) = client.await else { return };
        let mut c = hyper_util::rt::TokioIo::new(client);
        let mut u = hyper_util::rt::TokioIo::new(upstream);
        tracing::info!(%stream, "relaying");
        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
        tracing::info!(%stream, "relay ended");
    });
    let accept = {
        let mut sha = sha1_smol::Sha1::new();
        sha.update(key.as_bytes());
        sha.update(GUID.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    if offered {
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(handler::stream::SUBPROTOCOL),
        );
    }
    Ok(resp)
}
