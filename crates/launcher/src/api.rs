//! The command socket the node agent drives (`<runtime>/launcher.sock`): version 1 of a small protocol shaped like
//! upstream's cmd.proto, as JSON lines. The server greets with `{"protocol":1,...}`; each request
//! `{"id":N,"command":"Pause"}` (or `{"id":N,"command":{"Shutdown":{"gracePeriodSeconds":30}}}`) gets
//! `{"id":N,"ok":true,"result":…}` or `{"id":N,"ok":false,"error":"…"}`; domain events arrive as `{"event":…}` lines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::vm::Vm;

/// Protocol version.
pub const PROTOCOL: u32 = 1;

/// A command from the node agent.
#[derive(Clone, Debug, Deserialize)]
pub enum Command {
    /// Liveness.
    Ping,
    /// Converge on this VMI (the launcher started from it; a changed spec is reported, not applied).
    Sync {
        /// The VMI.
        vmi: Box<kubevirt_api::v1::VirtualMachineInstance>,
    },
    /// Pause the vCPUs.
    Pause,
    /// Resume the vCPUs.
    Unpause,
    /// ACPI shutdown, then kill after the grace period.
    Shutdown {
        /// Seconds to wait for the guest.
        #[serde(rename = "gracePeriodSeconds")]
        grace_period_seconds: Option<u64>,
    },
    /// Stop QEMU now.
    Kill,
    /// Hard reset.
    Reset,
    /// Reboot through the guest agent.
    SoftReboot,
    /// The Domain, its state and QEMU's status.
    GetDomain,
    /// Guest agent: hostname, OS, agent version, timezone.
    GetGuestInfo,
    /// Guest agent: logged-in users.
    GetUsers,
    /// Guest agent: file systems.
    GetFilesystems,
}

#[derive(Deserialize)]
struct Request {
    id: u64,
    command: Command,
}

/// What a Sync compares against: the Domain a VMI would build.
pub type Rebuild = Arc<
    dyn Fn(&kubevirt_api::v1::VirtualMachineInstance) -> Result<launcher_domain::Domain, String>
        + Send
        + Sync,
>;

async fn agent_call(vm: &Vm, cmd: &str) -> Result<Value, String> {
    let qga = vm
        .agent()
        .await
        .map_err(|e| format!("guest agent not connected: {e}"))?;
    qga.execute(cmd, None).await.map_err(|e| e.to_string())
}

async fn handle(vm: &Arc<Vm>, rebuild: &Rebuild, cmd: Command) -> Result<Value, String> {
    let q = &vm.qmp;
    match cmd {
        Command::Ping => Ok(json!("pong")),
        Command::Sync { vmi } => {
            let want = rebuild(&vmi)?;
            if want == vm.domain {
                Ok(json!("in sync"))
            } else {
                let (a, b) = (
                    serde_json::to_value(&vm.domain).unwrap_or_default(),
                    serde_json::to_value(&want).unwrap_or_default(),
                );
                let changed: Vec<String> = a
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| b.get(k.as_str()) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                Err(format!(
                    "cannot be changed while running (restart the VM): {}",
                    changed.join(", ")
                ))
            }
        }
        Command::Pause => q
            .stop()
            .await
            .map(|()| json!("paused"))
            .map_err(|e| e.to_string()),
        Command::Unpause => q
            .cont()
            .await
            .map(|()| json!("running"))
            .map_err(|e| e.to_string()),
        Command::Reset => q
            .system_reset()
            .await
            .map(|()| json!("reset"))
            .map_err(|e| e.to_string()),
        Command::SoftReboot => {
            let qga = vm
                .agent()
                .await
                .map_err(|e| format!("soft reboot needs the guest agent: {e}"))?;
            // The agent does not answer a shutdown request; a timeout here is the normal case.
            match qga
                .execute("guest-shutdown", Some(json!({"mode": "reboot"})))
                .await
            {
                Ok(_) | Err(qmp::QmpError::Timeout(_) | qmp::QmpError::Closed) => Ok(json!("rebooting")),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Shutdown { grace_period_seconds } => {
            let vm = vm.clone();
            let grace = Duration::from_secs(grace_period_seconds.unwrap_or(30));
            tokio::spawn(async move { vm.shutdown(grace).await });
            Ok(json!("shutting down"))
        }
        Command::Kill => {
            vm.kill("killed by request").await;
            Ok(json!("killed"))
        }
        Command::GetDomain => {
            let status = q.query_status().await.ok();
            Ok(json!({"domain": vm.domain, "state": vm.state(),
                "status": status.map(|s| json!({"running": s.running, "status": s.status}))}))
        }
        Command::GetGuestInfo => {
            let qga = vm
                .agent()
                .await
                .map_err(|e| format!("guest agent not connected: {e}"))?;
            let mut out = json!({});
            for (key, cmd) in [
                ("hostname", "guest-get-host-name"),
                ("os", "guest-get-osinfo"),
                ("agent", "guest-info"),
                ("timezone", "guest-get-timezone"),
            ] {
                out[key] = qga.execute(cmd, None).await.unwrap_or(Value::Null);
            }
            Ok(out)
        }
        Command::GetUsers => agent_call(vm, "guest-get-users").await,
        Command::GetFilesystems => agent_call(vm, "guest-get-fsinfo").await,
    }
}

/// Serves the command socket at `path` until the process exits.
///
/// # Errors
/// The socket cannot be bound.
pub fn serve(path: &Path, vm: Arc<Vm>, rebuild: Rebuild) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (vm, rebuild) = (vm.clone(), rebuild.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let (tx, mut rx) = mpsc::channel::<String>(64);
                let writer = tokio::spawn(async move {
                    while let Some(line) = rx.recv().await {
                        if w.write_all(line.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
                let hello =
                    json!({"protocol": PROTOCOL, "launcher": "kubevirt-rs", "domain": vm.domain.name});
                let _ = tx.send(format!("{hello}\n")).await;
                let mut events = vm.events.subscribe();
                let etx = tx.clone();
                let forward = tokio::spawn(async move {
                    while let Ok(ev) = events.recv().await {
                        if etx.send(format!("{}\n", json!({"event": ev}))).await.is_err() {
                            return;
                        }
                    }
                });
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => match handle(&vm, &rebuild, req.command).await {
                            Ok(result) => json!({"id": req.id, "ok": true, "result": result}),
                            Err(error) => json!({"id": req.id, "ok": false, "error": error}),
                        },
                        Err(e) => json!({"id": null, "ok": false, "error": format!("bad request: {e}")}),
                    };
                    if tx.send(format!("{reply}\n")).await.is_err() {
                        break;
                    }
                }
                forward.abort();
                drop(tx);
                let _ = writer.await;
            });
        }
    });
    Ok(())
}
