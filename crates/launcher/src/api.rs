//! The command socket the node agent drives (`<runtime>/launcher.sock`), serving the protocol the
//! `launcher-protocol` crate defines (shaped like upstream's cmd.proto, as JSON lines): the greeting, one response per
//! request, and the VM's domain events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use launcher_protocol::{
    DomainInfo, EventLine, GuestInfo, Hello, QemuStatus, Request, Response, Screenshot, Synced,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::vm::Vm;

pub use launcher_protocol::{Command, PROTOCOL};

/// What a Sync compares against: the Domain a VMI would build on the network the node plumbed for it.
pub type Rebuild = Arc<
    dyn Fn(
            &kubevirt_api::v1::VirtualMachineInstance,
            &[launcher_protocol::network::PlumbedInterface],
        ) -> Result<launcher_domain::Domain, String>
        + Send
        + Sync,
>;

/// A VM the socket serves: the VM, what a Sync compares against, the VMI's termination grace period, and the DHCP
/// servers of its interfaces.
#[derive(Clone)]
pub struct Running {
    /// The VM.
    pub vm: Arc<Vm>,
    /// What a Sync compares against.
    pub rebuild: Rebuild,
    /// How long a graceful stop waits for the guest.
    pub grace: Duration,
    /// The DHCP servers of its interfaces (they stop with the last clone).
    pub dhcp: Arc<crate::network::Servers>,
    /// The DHCP servers of interfaces plugged since, by interface.
    pub plugged_dhcp: Arc<std::sync::Mutex<std::collections::BTreeMap<String, crate::network::Servers>>>,
    /// The pod's resolver configuration (what DHCP hands out).
    pub resolv: Arc<String>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("vm", &self.vm)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// Starts the VM of a first Sync.
pub type Start = Arc<
    dyn Fn(
            kubevirt_api::v1::VirtualMachineInstance,
            Vec<launcher_protocol::network::PlumbedInterface>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Running, String>> + Send>>
        + Send
        + Sync,
>;

/// Where the socket's VM is.
#[derive(Clone, Debug)]
enum Serving {
    /// Waiting for the first Sync.
    Waiting,
    /// It runs.
    Running(Running),
    /// The first Sync could not start it: why.
    Failed(String),
}

/// What the socket serves: the VM once it runs, and how a first Sync starts it.
pub struct Served {
    state: tokio::sync::watch::Sender<Serving>,
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
    pub fn running(running: Running) -> Arc<Self> {
        Arc::new(Self {
            state: tokio::sync::watch::channel(Serving::Running(running)).0,
            start: None,
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// A socket waiting for the node agent's first Sync, which `start` turns into a running VM.
    #[must_use]
    pub fn waiting(start: Start) -> Arc<Self> {
        Arc::new(Self {
            state: tokio::sync::watch::channel(Serving::Waiting).0,
            start: Some(start),
            starting: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Option<Running> {
        match &*self.state.borrow() {
            Serving::Running(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Waits until the VM runs, or its start failed (why).
    ///
    /// # Errors
    /// The first Sync could not start the VMI.
    pub async fn started(&self) -> Result<Running, String> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, Serving::Waiting))
            .await
            .map(|s| s.clone());
        match state {
            Ok(Serving::Running(r)) => Ok(r),
            Ok(Serving::Failed(why)) => Err(why),
            _ => Err("the launcher is stopping".into()),
        }
    }

    /// Waits until a VM runs (forever if none will).
    async fn vm(&self) -> Arc<Vm> {
        match self.started().await {
            Ok(r) => r.vm,
            Err(_) => std::future::pending().await,
        }
    }

    async fn dispatch(&self, cmd: Command) -> Result<Value, String> {
        if let Some(r) = self.current() {
            return match cmd {
                Command::Sync { vmi, network } => sync(&r, &vmi, &network).await,
                other => handle(&r.vm, other).await,
            };
        }
        match cmd {
            Command::Ping => Ok(json!("pong")),
            Command::Sync { vmi, network } => {
                let _one = self.starting.lock().await;
                if let Some(r) = self.current() {
                    return sync(&r, &vmi, &network).await;
                }
                let start = self.start.clone().ok_or("this launcher cannot start a VM")?;
                match start(*vmi, network).await {
                    Ok(running) => {
                        let reply = synced("started", &running.vm);
                        self.state.send_replace(Serving::Running(running));
                        Ok(reply)
                    }
                    Err(why) => {
                        self.state.send_replace(Serving::Failed(why.clone()));
                        Err(why)
                    }
                }
            }
            _ => Err("no VM yet: send Sync first".into()),
        }
    }
}

/// A Sync's answer: what happened, the pod's IP when the pod was given it (the downward API's `POD_IP`), so the
/// handler need not look the pod up, and the domain's network cards.
fn synced(what: &str, vm: &Vm) -> Value {
    let interfaces = vm
        .current_nics()
        .iter()
        .map(|n| launcher_protocol::DomainInterface {
            name: n.name.clone(),
            mac: n.mac.clone(),
            queue_count: n.queues,
            link_state: if vm.link_up(&n.name) { "up" } else { "down" }.into(),
        })
        .collect();
    let reply = Synced {
        sync: what.to_string(),
        pod_ip: std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()),
        interfaces,
    };
    reply_value(&reply)
}

/// A typed reply as the JSON a response carries.
fn reply_value<T: serde::Serialize>(reply: &T) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

async fn agent_call(vm: &Vm, cmd: &str) -> Result<Value, String> {
    let qga = vm
        .agent()
        .await
        .map_err(|e| format!("guest agent not connected: {e}"))?;
    qga.execute(cmd, None).await.map_err(|e| e.to_string())
}

/// Runs one command against the running VM.
async fn handle(vm: &Arc<Vm>, cmd: Command) -> Result<Value, String> {
    let q = &vm.qmp;
    let ack = |r: Result<(), qmp::QmpError>, said: &str| r.map(|()| json!(said)).map_err(|e| e.to_string());
    match cmd {
        Command::Ping => Ok(json!("pong")),
        Command::Sync { .. } => Err("Sync needs the VM's rebuild (dispatch answers it)".into()),
        Command::Pause => ack(q.stop().await, "paused"),
        Command::Unpause => ack(q.cont().await, "running"),
        Command::Reset => ack(q.system_reset().await, "reset"),
        Command::SoftReboot => soft_reboot(vm).await,
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
        Command::GetDomain => Ok(reply_value(&domain_info(vm).await)),
        Command::GetGuestInfo => guest_info(vm).await,
        Command::GetUsers => agent_call(vm, "guest-get-users").await,
        Command::Freeze {
            unfreeze_timeout_seconds,
        } => freeze(vm, unfreeze_timeout_seconds).await,
        Command::Unfreeze => agent_call(vm, "guest-fsfreeze-thaw").await,
        Command::GetScreenshot => screenshot(vm).await,
        Command::GetFilesystems => agent_call(vm, "guest-get-fsinfo").await,
        Command::SyncAccessCredentials => Ok(reply_value(&crate::credentials::sync(vm).await)),
    }
}

/// A later Sync: the VMI must still build the Domain that runs but for its NICs — interfaces added are plugged
/// into the guest (their DHCP servers started), those gone unplugged, link states applied; any other change is
/// reported, not applied.
async fn sync(
    r: &Running,
    vmi: &kubevirt_api::v1::VirtualMachineInstance,
    network: &[launcher_protocol::network::PlumbedInterface],
) -> Result<Value, String> {
    let vm = &r.vm;
    let want = (r.rebuild)(vmi, network)?;
    let rest = |d: &launcher_domain::Domain| {
        let mut d = d.clone();
        d.nics.clear();
        d.hotplug_ports = 0;
        d
    };
    if rest(&want) != rest(&vm.domain) {
        let (a, b) = (reply_value(&vm.domain), reply_value(&want));
        let changed: Vec<String> = a
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| !matches!(k.as_str(), "nics" | "hotplugPorts") && b.get(k.as_str()) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        return Err(format!(
            "cannot be changed while running (restart the VM): {}",
            changed.join(", ")
        ));
    }
    let same = |a: &launcher_domain::Nic, b: &launcher_domain::Nic| {
        let (mut a, mut b) = (a.clone(), b.clone());
        a.link_up = true;
        b.link_up = true;
        a == b
    };
    let current = vm.current_nics();
    if let Some(n) = want
        .nics
        .iter()
        .find(|n| current.iter().any(|c| c.name == n.name && !same(c, n)))
    {
        return Err(format!(
            "cannot be changed while running (restart the VM): interface {}",
            n.name
        ));
    }
    let mut what = "in sync";
    for gone in current
        .iter()
        .filter(|c| !want.nics.iter().any(|n| n.name == c.name))
    {
        vm.unplug(&gone.name).await?;
        lock(&r.plugged_dhcp).remove(&gone.name);
        what = "interfaces changed";
    }
    for new in want
        .nics
        .iter()
        .filter(|n| !current.iter().any(|c| c.name == n.name))
    {
        let plumbed: Vec<_> = network.iter().filter(|p| p.name == new.name).cloned().collect();
        let servers = crate::network::start_dhcp(vmi, &plumbed, &r.resolv)?;
        vm.plug(new).await?;
        lock(&r.plugged_dhcp).insert(new.name.clone(), servers);
        what = "interfaces changed";
    }
    for n in &want.nics {
        if vm.link_up(&n.name) != n.link_up {
            vm.set_link(&n.name, n.link_up).await?;
            tracing::info!(nic = %n.name, up = n.link_up, "link state");
            what = "links updated";
        }
    }
    Ok(synced(what, vm))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Through the guest agent when it can; otherwise (no agent, or the guest cannot reboot itself) over ACPI.
async fn soft_reboot(vm: &Vm) -> Result<Value, String> {
    if let Ok(qga) = vm.agent().await {
        // The agent does not answer a shutdown request; a timeout here is the normal case.
        match qga
            .execute("guest-shutdown", Some(json!({"mode": "reboot"})))
            .await
        {
            Ok(_) | Err(qmp::QmpError::Timeout(_) | qmp::QmpError::Closed) => return Ok(json!("rebooting")),
            Err(e) => tracing::info!(error = %e, "the guest agent could not reboot; using ACPI"),
        }
    }
    if !vm.domain.features.acpi {
        return Err("the VMI has neither a working guest agent nor ACPI".into());
    }
    vm.acpi_reboot().await.map(|()| json!("rebooting (ACPI)"))
}

async fn domain_info(vm: &Vm) -> DomainInfo {
    let q = &vm.qmp;
    let status = q.query_status().await.ok();
    DomainInfo {
        domain: reply_value(&vm.domain),
        state: vm.state(),
        status: status.map(|s| QemuStatus {
            running: s.running,
            status: s.status,
        }),
        blocks: q.execute("query-block", None).await.ok(),
        cpus: q.execute("query-cpus-fast", None).await.ok(),
    }
}

async fn guest_info(vm: &Vm) -> Result<Value, String> {
    let qga = vm
        .agent()
        .await
        .map_err(|e| format!("guest agent not connected: {e}"))?;
    let info = GuestInfo {
        hostname: qga.execute("guest-get-host-name", None).await.ok(),
        os: qga.execute("guest-get-osinfo", None).await.ok(),
        agent: qga.execute("guest-info", None).await.ok(),
        timezone: qga.execute("guest-get-timezone", None).await.ok(),
        interfaces: qga.execute("guest-network-get-interfaces", None).await.ok(),
    };
    Ok(reply_value(&info))
}

/// Freezes the guest's file systems, thawing them again after `unfreeze_timeout_seconds` (0: only on request).
async fn freeze(vm: &Arc<Vm>, unfreeze_timeout_seconds: u64) -> Result<Value, String> {
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

async fn screenshot(vm: &Vm) -> Result<Value, String> {
    let file = vm.paths.qmp.with_file_name("screenshot.png");
    let _ = std::fs::remove_file(&file);
    vm.qmp
        .execute(
            "screendump",
            Some(json!({"filename": file.display().to_string(), "format": "png"})),
        )
        .await
        .map_err(|e| format!("screendump: {e}"))?;
    let png = std::fs::read(&file).map_err(|e| format!("reading the screenshot: {e}"));
    let _ = std::fs::remove_file(&file);
    Ok(reply_value(&Screenshot {
        png: base64::engine::general_purpose::STANDARD.encode(png?),
    }))
}

/// One line of the protocol.
fn frame<T: serde::Serialize>(msg: &T) -> String {
    format!("{}\n", serde_json::to_string(msg).unwrap_or_default())
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
                let hello = Hello {
                    protocol: PROTOCOL,
                    launcher: "kubevirt-rs".into(),
                    domain: served.current().map(|r| r.vm.domain.name.clone()),
                };
                let _ = tx.send(frame(&hello)).await;
                let etx = tx.clone();
                let events_of = served.clone();
                let forward = tokio::spawn(async move {
                    let mut events = events_of.vm().await.events.subscribe();
                    while let Ok(event) = events.recv().await {
                        if etx.send(frame(&EventLine { event })).await.is_err() {
                            return;
                        }
                    }
                });
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => Response::to(Some(req.id), served.dispatch(req.command).await),
                        Err(e) => Response::to(None, Err(format!("bad request: {e}"))),
                    };
                    if tx.send(frame(&response)).await.is_err() {
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
