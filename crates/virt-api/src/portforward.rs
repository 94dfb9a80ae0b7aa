//! `portforward/{port}[/{protocol}]` on VMIs and VMs: as upstream, virt-api itself dials the VMI's first interface
//! address (`status.interfaces[0].ip`) over TCP or UDP and terminates the websocket (`plain.kubevirt.io`): client
//! binary messages go to the socket, socket bytes come back as binary messages (one message per UDP datagram).
//! A ping every second keeps proxies from seeing the tunnel idle; a client silent (not even a pong) for a minute
//! ends it.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt as _, StreamExt as _};
use kube::api::Api;
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::app::App;
use crate::status::{Failure, Reply};
use crate::vmi::{condition, get};

const VM: &str = "virtualmachine";
const PING_EVERY: Duration = Duration::from_secs(1);
const SILENCE: Duration = Duration::from_secs(60);
const BUFFER: usize = 10240;

/// The VMI behind VM `name` (upstream's `FetchVirtualMachineInstanceForVM`): the VM must have created one, owned
/// by it.
async fn vmi_of_vm(client: &kube::Client, ns: &str, name: &str) -> Result<VirtualMachineInstance, Failure> {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vm = match vms.get_opt(name).await {
        Ok(Some(vm)) => vm,
        Ok(None) => return Err(Failure::not_found(VM, name)),
        Err(e) => return Err(Failure::internal(format!("unable to retrieve vm [{name}]: {e}"))),
    };
    if !vm.status.as_ref().and_then(|s| s.created).unwrap_or(false) {
        return Err(Failure::conflict(VM, name, "VMI is not started"));
    }
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vmi = vmis
        .get_opt(name)
        .await
        .map_err(|e| Failure::internal(format!("unable to retrieve vmi [{name}] for vm: {e}")))?;
    let uid = vm.metadata.uid.as_deref().unwrap_or_default();
    match vmi {
        Some(vmi)
            if vmi
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid) =>
        {
            Ok(vmi)
        }
        _ => Err(Failure::internal(format!(
            "unable to retrieve vmi [{name}] for vm: <nil>"
        ))),
    }
}

/// Where to dial: `IP:PORT` (IPv6 bracketed) after upstream's checks.
fn target(vmi: &VirtualMachineInstance, port: &str) -> Result<String, Failure> {
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    if condition(vmi, "Paused") == Some("True") {
        return Err(Failure::conflict("virtualmachineinstance", name, "VMI is paused"));
    }
    let ip = vmi
        .status
        .as_ref()
        .and_then(|s| s.interfaces.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| Failure::bad_request("no network interfaces are present"))?;
    if port.is_empty() {
        return Err(Failure::bad_request("port must not be empty"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| Failure::bad_request(format!("invalid port {port:?}")))?;
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

enum Socket {
    Tcp(tokio::net::TcpStream),
    Udp(tokio::net::UdpSocket),
}

async fn dial(addr: &str, protocol: &str) -> Result<Socket, Failure> {
    let fail =
        |e: &dyn std::fmt::Display| Failure::internal(format!("dialing VM: dial {protocol} {addr}: {e}"));
    match protocol {
        "tcp" => tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|e| fail(&e))?
            .map(Socket::Tcp)
            .map_err(|e| fail(&e)),
        "udp" => {
            let bind = if addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = tokio::net::UdpSocket::bind(bind).await.map_err(|e| fail(&e))?;
            s.connect(addr).await.map_err(|e| fail(&e))?;
            Ok(Socket::Udp(s))
        }
        other => Err(Failure::internal(format!(
            "dialing VM: dial {other}: unknown network {other}"
        ))),
    }
}

/// `GET …/{virtualmachineinstances|virtualmachines}/{name}/portforward/{port}[/{protocol}]`.
pub async fn open(
    app: &App,
    ns: &str,
    resource: &str,
    name: &str,
    port: &str,
    protocol: Option<&str>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Reply {
    let vmi = if resource == "virtualmachines" {
        vmi_of_vm(&app.client, ns, name).await?
    } else {
        get(&app.client, ns, name).await?
    };
    let addr = target(&vmi, port)?;
    let protocol = protocol.unwrap_or("tcp").to_string();
    let ws = ws.map_err(|e| Failure::bad_request(e.body_text()))?;
    let socket = dial(&addr, &protocol).await?;
    let tunnel = format!("{ns}/{name} {protocol}/{port}");
    Ok(ws
        .protocols([handler::stream::SUBPROTOCOL])
        .on_upgrade(move |ws| async move {
            tracing::info!(%tunnel, "port-forward tunnel open");
            relay(ws, socket).await;
            tracing::info!(%tunnel, "port-forward tunnel closed");
        }))
}

/// Copies both ways until either side ends or the client falls silent.
async fn relay(ws: WebSocket, socket: Socket) {
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = tokio::time::Instant::now();
    let mut buf = vec![0u8; BUFFER];
    let (mut tcp_r, mut tcp_w, udp) = match socket {
        Socket::Tcp(s) => {
            let (r, w) = s.into_split();
            (Some(r), Some(w), None)
        }
        Socket::Udp(u) => (None, None, Some(u)),
    };
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE {
                    break;
                }
                if tx.send(Message::Ping("keep alive".into())).await.is_err() {
                    break;
                }
            }
            msg = rx.next() => {
                heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Binary(b))) => {
                        let sent = match (&mut tcp_w, &udp) {
                            (Some(w), _) => w.write_all(&b).await.is_ok(),
                            (None, Some(u)) => u.send(&b).await.is_ok(),
                            (None, None) => false,
                        };
                        if !sent {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
            n = async {
                // `None`: the socket ended (a TCP EOF; an empty UDP datagram is still a datagram).
                match (&mut tcp_r, &udp) {
                    (Some(r), _) => r.read(&mut buf).await.map(|n| (n > 0).then_some(n)),
                    (None, Some(u)) => u.recv(&mut buf).await.map(Some),
                    (None, None) => Ok(None),
                }
            } => match n {
                Ok(None) | Err(_) => break,
                Ok(Some(n)) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    if let Some(mut w) = tcp_w {
        let _ = w.shutdown().await;
    }
}
