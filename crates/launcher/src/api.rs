//! The command socket the node agent drives (`<runtime>/launcher.sock`): version 1 of a small protocol shaped like
//! upstream's cmd.proto, as JSON lines. The server greets with `{"protocol":1,...}`; each request
//! `{"id":N,"command":"Pause"}` (or `{"id":N,"command":{"Shutdown":{"gracePeriodSeconds":30}}}`) gets
//! `{"id":N,"ok":true,"result":…}` or `{"id":N,"ok":false,"error":"…"}`; domain events arrive as `{"event":…}` lines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
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
    /// Guest agent: freeze the file systems (thawed again after `unfreezeTimeoutSeconds` unless sooner).
    Freeze {
        /// Seconds until an automatic thaw (0: none).
        #[serde(rename = "unfreezeTimeoutSeconds", default)]
        unfreeze_timeout_seconds: u64,
    },
    /// Guest agent: thaw the file systems.
    Unfreeze,
    /// The display as PNG (base64 in `png`).
    GetScreenshot,
    /// Guest agent: apply the agent-propagated access credentials (`{"succeeded", "message"}`, or `{"none": true}`).
    SyncAccessCredentials,
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

/// Starts the VM of a first Sync.
pub type Start = Arc<
    dyn Fn(
            kubevirt_api::v1::VirtualMachineInstance,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Arc<Vm>, Rebuild), String>> + Send>>
        + Send
        + Sync,
>;

/// What the socket serves: the VM once it runs, and how a first Sync starts it.
pub struct Served {
    running: tokio::sync::watch::Sender<Option<(Arc<Vm>, Rebuild)>>,
    start: Option<Start>,
    starting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

impl Served {
    /// A socket for a VM that already runs.
    #[must_use]
    pub fn running(vm: Arc<Vm>, rebuild: Rebuild) -> Arc<Self> {
        Arc::new(Self {
            running: tokio::sync::watch::channel(Some((vm, rebuild))).0,
            start: None,
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// A socket waiting for the node agent's first Sync, which `start` turns into a running VM.
    #[must_use]
    pub fn waiting(start: Start) -> Arc<Self> {
        Arc::new(Self {
            running: tokio::sync::watch::channel(None).0,
            start: Some(start),
            starting: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Option<(Arc<Vm>, Rebuild)> {
        self.running.borrow().clone()
    }

    /// Waits until a VM runs.
    pub async fn vm(&self) -> Arc<Vm> {
        let mut rx = self.running.subscribe();
        loop {
            if let Some((vm, _)) = rx.borrow_and_update().clone() {
                return vm;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    async fn dispatch(&self, cmd: Command) -> Result<Value, String> {
        if let Some((vm, rebuild)) = self.current() {
            return handle(&vm, &rebuild, cmd).await;
        }
        match cmd {
            Command::Ping => Ok(json!("pong")),
            Command::Sync { vmi } => {
                let _one = self.starting.lock().await;
                if let Some((vm, rebuild)) = self.current() {
                    return handle(&vm, &rebuild, Command::Sync { vmi }).await;
                }
                let start = self.start.clone().ok_or("this launcher cannot start a VM")?;
                let (vm, rebuild) = start(*vmi).await?;
                self.running.send_replace(Some((vm, rebuild)));
                Ok(synced("started"))
            }
            _ => Err("no VM yet: send Sync first".into()),
        }
    }
}

/// A Sync's answer: what happened, and the pod's IP when the pod was given it (the downward API's `POD_IP`), so the
/// handler need not look the pod up.
fn synced(what: &str) -> Value {
    let mut v = json!({"sync": what});
    if let Ok(ip) = std::env::var("POD_IP")
        && !ip.is_empty()
    {
        v["podIP"] = json!(ip);
    }
    v
}

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
                Ok(synced("in sync"))
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
            // Through the guest agent when it can; otherwise (no agent, or the guest cannot reboot itself) over ACPI.
            if let Ok(qga) = vm.agent().await {
                // The agent does not answer a shutdown request; a timeout here is the normal case.
                match qga
                    .execute("guest-shutdown", Some(json!({"mode": "reboot"})))
                    .await
                {
                    Ok(_) | Err(qmp::QmpError::Timeout(_) | qmp::QmpError::Closed) => {
                        return Ok(json!("rebooting"));
                    }
                    Err(e) => tracing::info!(error = %e, "the guest agent could not reboot; using ACPI"),
                }
            }
            if !vm.domain.features.acpi {
                return Err("the VMI has neither a working guest agent nor ACPI".into());
            }
            vm.acpi_reboot()
                .await
                .map(|()| json!("rebooting (ACPI)"))
                .map_err(|e| e.to_string())
        }
        Command::Shutdown { grace_period_seconds } => {
            let vm = vm.clone();
            let grace = Duration::from_secs(grace_period_seconds.unwrap_or(30));
            tokio::spawn(async move { vm.shutdown(grace).await });
            Ok(json!("shutting down"))
        }
        Command::Kill => {
            // Answer first: the launcher exits with QEMU, and the reply still has two tasks to pass through (a busy
            // machine once ended the process before it was written).
            let vm = vm.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                vm.kill("killed by request").await;
            });
            Ok(json!("killing"))
        }
        Command::GetDomain => {
            let status = q.query_status().await.ok();
            Ok(json!({"domain": vm.domain, "state": vm.state(),
                "status": status.map(|s| json!({"running": s.running, "status": s.status})),
                "blocks": q.execute("query-block", None).await.ok(),
                "cpus": q.execute("query-cpus-fast", None).await.ok()}))
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
        Command::Freeze {
            unfreeze_timeout_seconds,
        } => {
            let frozen = agent_call(vm, "guest-fsfreeze-freeze").await?;
            if unfreeze_timeout_seconds > 0 {
                let vm = vm.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(unfreeze_timeout_seconds)).await;
                    let _ = agent_call(&vm, "guest-fsfreeze-thaw").await;
                });
            }
            Ok(frozen)
        }
        Command::Unfreeze => agent_call(vm, "guest-fsfreeze-thaw").await,
        Command::GetScreenshot => {
            let file = vm.paths.qmp.with_file_name("screenshot.png");
            let _ = std::fs::remove_file(&file);
            q.execute(
                "screendump",
                Some(json!({"filename": file.display().to_string(), "format": "png"})),
            )
            .await
            .map_err(|e| format!("screendump: {e}"))?;
            let png = std::fs::read(&file).map_err(|e| format!("reading the screenshot: {e}"));
            let _ = std::fs::remove_file(&file);
            Ok(json!({"png": base64::engine::general_purpose::STANDARD.encode(png?)}))
        }
        Command::GetFilesystems => agent_call(vm, "guest-get-fsinfo").await,
        Command::SyncAccessCredentials => Ok(crate::credentials::sync(vm).await),
    }
}

/// Serves the command socket at `path` until the process exits.
///
/// # Errors
/// The socket cannot be bound.
pub fn serve(path: &Path, served: Arc<Served>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
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
                let name = served.current().map(|(vm, _)| vm.domain.name.clone());
                let hello = json!({"protocol": PROTOCOL, "launcher": "kubevirt-rs", "domain": name});
                let _ = tx.send(format!("{hello}\n")).await;
                let etx = tx.clone();
                let events_of = served.clone();
                let forward = tokio::spawn(async move {
                    let mut events = events_of.vm().await.events.subscribe();
                    while let Ok(ev) = events.recv().await {
                        if etx.send(format!("{}\n", json!({"event": ev}))).await.is_err() {
                            return;
                        }
                    }
                });
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => match served.dispatch(req.command).await {
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
