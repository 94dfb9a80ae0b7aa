//! The handler's VMI loop: for each VMI scheduled to this node it connects to the launcher's command socket
//! (`<launchers>/<vmi uid>/launcher.sock`), sends the first Sync (the launcher then starts QEMU), and turns the
//! domain's state and events into VMI status — Running with the pod's IP on its interfaces, Paused condition,
//! AgentConnected and guestOSInfo, Succeeded or Failed when the domain ends. A VMI being deleted gets an ACPI
//! shutdown with its grace period. After a restart the handler simply reconnects: running launchers keep their VMs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::{self, ConditionType, VmiPhase};
use kubevirt_api::v1::VirtualMachineInstanceStatus;
use launcher_protocol::{Command, DomainState, Launcher, LauncherError};

pub mod claims;
pub mod interfaces;
pub mod network;
pub mod status;
#[cfg(test)]
mod tests;

use status::Agent;

/// Why a reconcile failed: only API calls fail it (a launcher that does not answer is waited for).
pub type Error = kube_support::ApiError;

/// One launcher connection and the last domain state it reported.
#[derive(Debug)]
struct Conn {
    launcher: Arc<Launcher>,
    last: Arc<std::sync::Mutex<Option<DomainState>>>,
    shutdown_sent: std::sync::atomic::AtomicBool,
    /// This handler already wrote phase Running (a cache still showing Scheduled is just behind).
    running_reported: std::sync::atomic::AtomicBool,
}

/// Shared state of the handler's VMI loop.
pub struct Ctx {
    /// The API client.
    pub client: kube::Client,
    /// This node.
    pub node_name: String,
    /// Where launchers keep their runtime directories, one per VMI uid.
    pub launchers_dir: PathBuf,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    kick: mpsc::UnboundedSender<ObjectRef<VirtualMachineInstance>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node_name", &self.node_name)
            .field("launchers_dir", &self.launchers_dir)
            .finish_non_exhaustive()
    }
}

fn now() -> Time {
    state::now_seconds()
}

impl Ctx {
    /// A handler loop for `node_name` whose launchers live under `launchers_dir`, and the stream of its kicks
    /// (launcher events) to hand to [`run`].
    #[must_use]
    pub fn new(
        client: kube::Client,
        node_name: String,
        launchers_dir: PathBuf,
    ) -> (
        Arc<Self>,
        mpsc::UnboundedReceiver<ObjectRef<VirtualMachineInstance>>,
    ) {
        let (kick, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                client,
                node_name,
                launchers_dir,
                conns: Mutex::default(),
                kick,
            }),
            rx,
        )
    }

    async fn forget(&self, uid: &str) {
        self.conns.lock().await.remove(uid);
    }

    /// The open connection to the VMI's launcher, connecting if its socket exists.
    async fn conn(&self, vmi: &VirtualMachineInstance, uid: &str) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(uid) {
            if !c.launcher.is_closed() {
                return Some(c.clone());
            }
            conns.remove(uid);
        }
        let sock = launcher_protocol::socket(&self.launchers_dir.join(uid));
        if !sock.exists() {
            return None;
        }
        let launcher = match Launcher::connect(&sock).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "launcher not reachable yet");
                return None;
            }
        };
        let last = Arc::new(std::sync::Mutex::new(None));
        let mut events = launcher.events();
        let (kick, obj, last_w, l) = (
            self.kick.clone(),
            ObjectRef::from_obj(vmi),
            last.clone(),
            launcher.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => {
                            if let Ok(mut g) = last_w.lock() {
                                *g = Some(ev.domain);
                            }
                            let _ = kick.send(obj.clone());
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    () = l.wait_closed() => break,
                }
            }
            let _ = kick.send(obj);
        });
        let conn = Arc::new(Conn {
            launcher,
            last,
            shutdown_sent: std::sync::atomic::AtomicBool::new(false),
            running_reported: std::sync::atomic::AtomicBool::new(false),
        });
        conns.insert(uid.to_string(), conn.clone());
        Some(conn)
    }

    /// The launcher of `vmi` (which runs on this node), connecting to its socket if need be.
    pub(crate) async fn launcher(&self, vmi: &VirtualMachineInstance) -> Option<Arc<Launcher>> {
        let uid = vmi.metadata.uid.as_deref()?;
        self.conn(vmi, uid).await.map(|c| c.launcher.clone())
    }

    /// The final domain state the launcher left behind, if it has ended.
    fn final_state(&self, uid: &str) -> Option<DomainState> {
        launcher_protocol::final_state(&self.launchers_dir.join(uid))
    }
}

async fn pod_ip(client: &kube::Client, ns: &str, uid: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
        .await
        .ok()?;
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
}

async fn patch_status(
    api: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    status: Option<VirtualMachineInstanceStatus>,
) -> Result<(), Error> {
    let Some(status) = status else { return Ok(()) };
    let old = vmi.status.clone().unwrap_or_default();
    let Some(patch) = kube_support::merge::diff_of(&old, &status) else {
        return Ok(());
    };
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": patch})),
    )
    .await?;
    Ok(())
}

async fn sync(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let phase = VmiPhase::of(&vmi);
    let mine = vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.node_name.as_str());
    if !mine || phase.is_final() {
        ctx.forget(&uid).await;
        return Ok(Action::await_change());
    }
    if phase.is_before_scheduled() {
        return Ok(Action::await_change());
    }
    let Some(conn) = ctx.conn(&vmi, &uid).await else {
        // No launcher to talk to: it has ended (its final state tells how), or it is not up yet.
        if let Some(end) = ctx.final_state(&uid) {
            patch_status(&api, &vmi, status::ended(&vmi, &end, &now())).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    if vmi.metadata.deletion_timestamp.is_some() {
        shut_down(&vmi, &conn).await;
    }
    if phase == VmiPhase::Scheduled {
        return start(&api, &vmi, &ctx, &conn, &ns, &uid).await;
    }
    // Running: follow the domain.
    let domain = match conn.launcher.domain(Duration::from_secs(10)).await {
        Ok(d) => Some(d.state),
        Err(_) => conn.last.lock().ok().and_then(|g| g.clone()),
    };
    let Some(domain) = domain.or_else(|| ctx.final_state(&uid)) else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    if domain.is_final() {
        tracing::info!(state = ?domain, "the domain ended");
        patch_status(&api, &vmi, status::ended(&vmi, &domain, &now())).await?;
        ctx.forget(&uid).await;
        return Ok(Action::await_change());
    }
    // Interfaces plugged or unplugged and link states changed in the spec reach the domain live (upstream's later
    // SyncVMI); a plugged interface is plumbed first.
    if status::links_pending(&vmi) || status::nics_pending(&vmi) {
        let dir = ctx.launchers_dir.join(&uid);
        let network = match network::plumb_added(&vmi, conn.launcher.peer, &dir).await {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "a plugged interface is not ready yet");
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
        };
        match conn.launcher.sync(&vmi, &network, Duration::from_secs(60)).await {
            Ok(synced) => {
                network::unplumb_removed(&vmi, conn.launcher.peer, &dir).await;
                patch_status(&api, &vmi, status::with_nics(&vmi, &synced.interfaces)).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => tracing::warn!(error = %e, "converging the domain's interfaces"),
        }
    }
    let agent = if domain == DomainState::Paused {
        Agent::NotAsked
    } else {
        match conn.launcher.guest_info(Duration::from_secs(5)).await {
            Ok(info) if info.agent_connected() => Agent::Present(Box::new(info)),
            _ => Agent::Absent,
        }
    };
    let next = status::following(&vmi, &domain, &agent, &now());
    if let Some(st) = &next {
        let was = state::is_true(
            vmi.status.as_ref().and_then(|s| s.conditions.as_deref()),
            ConditionType::AgentConnected,
        );
        let is = state::is_true(st.conditions.as_deref(), ConditionType::AgentConnected);
        match (was, is, &agent) {
            (false, true, Agent::Present(info)) => {
                tracing::info!(
                    agent = info.agent_version().unwrap_or_default(),
                    "guest agent connected"
                );
            }
            (true, false, _) => tracing::info!("guest agent disconnected"),
            _ => {}
        }
    }
    patch_status(&api, &vmi, next).await?;
    let connected = matches!(agent, Agent::Present(_));
    if connected && uses_agent_credentials(&vmi) {
        access_credentials(&api, &vmi, &conn.launcher).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if connected {
        30
    } else {
        5
    })))
}

/// A deleted VMI: an ACPI shutdown with its grace period, asked for once.
async fn shut_down(vmi: &VirtualMachineInstance, conn: &Conn) {
    if conn.shutdown_sent.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let grace = vmi.spec.termination_grace_period_seconds.unwrap_or(30).max(0);
    let command = Command::Shutdown {
        grace_period_seconds: Some(grace.unsigned_abs()),
    };
    match conn.launcher.call(command, Duration::from_secs(10)).await {
        Ok(_) => {
            tracing::info!(grace, "shutting the VMI down");
            conn.shutdown_sent
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "shutdown"),
    }
}

/// A Scheduled VMI: the first Sync starts its domain; Running once it did, Synchronized=False when it could not.
async fn start(
    api: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    ctx: &Ctx,
    conn: &Conn,
    ns: &str,
    uid: &str,
) -> Result<Action, Error> {
    if conn.running_reported.load(std::sync::atomic::Ordering::Relaxed) {
        // This handler wrote Running already; the cache is just behind.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Network phase 1 in the launcher's pod, before the launcher's phase 2 and QEMU.
    let dir = ctx.launchers_dir.join(uid);
    let plumbed = match network::prepare(vmi, conn.launcher.peer, &dir).await {
        Ok(p) => p,
        Err(msg) => {
            tracing::warn!(error = %msg, "network phase 1");
            patch_status(api, vmi, status::network_failed(vmi, &msg, &now())).await?;
            return Ok(Action::await_change());
        }
    };
    // The claims' sizes go with the VMI (the launcher makes a blank disk of an empty claim) and into its status.
    let original = vmi;
    let vmi = &claims::with_claim_info(&ctx.client, vmi).await;
    match conn.launcher.sync(vmi, &plumbed, Duration::from_secs(120)).await {
        Ok(synced) => {
            // The pod's addresses as phase 1 found them (both families); else the launcher's (downward API), else
            // the pod's status.
            let mut ips: Vec<String> = plumbed
                .iter()
                .filter(|p| p.pod_interface == "eth0")
                .flat_map(|p| p.pod_ips.iter().map(ToString::to_string))
                .collect();
            if ips.is_empty() {
                let ip = match synced.pod_ip {
                    Some(ip) => Some(ip),
                    None => pod_ip(&ctx.client, ns, uid).await,
                };
                ips.extend(ip);
            }
            let started = status::started(vmi, &ips, &synced.interfaces, &now());
            patch_status(api, original, Some(started)).await?;
            conn.running_reported
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(ips = ?ips, "VMI running");
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(LauncherError::Refused(msg)) => {
            tracing::warn!(error = %msg, "the launcher could not start the VMI");
            patch_status(api, vmi, status::refused(vmi, &msg, &now())).await?;
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "sync");
            Ok(Action::requeue(Duration::from_secs(2)))
        }
    }
}

/// Whether the VMI has credentials the guest agent propagates.
fn uses_agent_credentials(vmi: &VirtualMachineInstance) -> bool {
    vmi.spec.access_credentials.iter().flatten().any(|c| {
        c.ssh_public_key
            .as_ref()
            .is_some_and(|k| k.propagation_method.qemu_guest_agent.is_some())
            || c.user_password
                .as_ref()
                .is_some_and(|p| p.propagation_method.qemu_guest_agent.is_some())
    })
}

/// Has the launcher apply the agent-propagated access credentials and reports the result.
async fn access_credentials(
    api: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    launcher: &Launcher,
) -> Result<(), Error> {
    let Ok(reply) = launcher.sync_access_credentials(Duration::from_secs(15)).await else {
        return Ok(());
    };
    let next = status::credentials(vmi, &reply, &now());
    if next.is_some() {
        tracing::info!(?reply, "access credentials");
    }
    patch_status(api, vmi, next).await
}

/// Runs the handler's VMI loop for the VMIs labelled with its node until the stream ends.
pub async fn run(ctx: Arc<Ctx>, kicks: mpsc::UnboundedReceiver<ObjectRef<VirtualMachineInstance>>) {
    let vmis: Api<VirtualMachineInstance> = Api::all(ctx.client.clone());
    let selector = format!("kubevirt.io/nodeName={}", ctx.node_name);
    let kicks = futures_util::stream::unfold(kicks, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) });
    let controller =
        kube_support::lean_controller(vmis, watcher::Config::default().labels(&selector)).reconcile_on(kicks);
    kube_support::run_controller("virt-handler-vm", ctx.client.clone(), controller, sync, ctx).await;
}
