//! The handler's VMI loop: for each VMI scheduled to this node it connects to the launcher's command socket
//! (`<launchers>/<vmi uid>/launcher.sock`), sends the first Sync (the launcher then starts QEMU), and turns the
//! domain's state and events into VMI status — Running with the pod's IP on its interfaces, Paused condition,
//! AgentConnected and guestOSInfo, Succeeded or Failed when the domain ends. A VMI being deleted gets an ACPI
//! shutdown with its grace period. After a restart the handler simply reconnects: running launchers keep their VMs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::launcher::{Launcher, LauncherError};

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a call.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
}

impl kube_support::ReconcileError for Error {
    fn kube_error(&self) -> Option<&kube::Error> {
        let Self::Api(e) = self;
        Some(e)
    }
}

/// One launcher connection and the last domain state it reported.
#[derive(Debug)]
struct Conn {
    launcher: Arc<Launcher>,
    last: Arc<std::sync::Mutex<Option<Value>>>,
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

fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The domain state name in a launcher state value (`{"state":"Running"}` or `{"state":"Crashed","reason":…}`).
fn state_of(v: &Value) -> (&str, &str) {
    (
        v.get("state").and_then(Value::as_str).unwrap_or(""),
        v.get("reason").and_then(Value::as_str).unwrap_or(""),
    )
}

/// The VMI's conditions with `cond` (by type) replaced or added; `None` status removes that type.
fn with_condition(vmi: &VirtualMachineInstance, kind: &str, cond: Option<Value>) -> Value {
    let mut out: Vec<Value> = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.r#type != kind)
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let had = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == kind))
        .and_then(|c| serde_json::to_value(c).ok());
    if let Some(mut c) = cond {
        c["type"] = json!(kind);
        // Keep the transition time while the status stays the same.
        match had {
            Some(h) if h.get("status") == c.get("status") => {
                c["lastTransitionTime"] = h.get("lastTransitionTime").cloned().unwrap_or(json!(now()));
            }
            _ => c["lastTransitionTime"] = json!(now()),
        }
        c["lastProbeTime"] = Value::Null;
        out.push(c);
    }
    Value::Array(out)
}

/// `conditions` without those of type `kind`.
fn without(conditions: Value, kind: &str) -> Value {
    match conditions {
        Value::Array(a) => Value::Array(a.into_iter().filter(|c| c["type"] != kind).collect()),
        other => other,
    }
}

fn transition(vmi: &VirtualMachineInstance, to: &str) -> Value {
    let mut list = serde_json::to_value(
        vmi.status
            .as_ref()
            .and_then(|s| s.phase_transition_timestamps.clone())
            .unwrap_or_default(),
    )
    .unwrap_or_else(|_| json!([]));
    if let Some(a) = list.as_array_mut() {
        a.push(json!({"phase": to, "phaseTransitionTimestamp": now()}));
    }
    list
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
        let sock = self.launchers_dir.join(uid).join("launcher.sock");
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
                            if let (Some(d), Ok(mut g)) = (ev.get("domain"), last_w.lock()) {
                                *g = Some(d.clone());
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

    /// The final domain state the launcher left behind (`final-state.json`), if it has ended.
    fn final_state(&self, uid: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.launchers_dir.join(uid).join("final-state.json")).ok()?;
        serde_json::from_str(&text).ok()
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

/// `status.interfaces`: the pod IP on the first pod-network interface (as upstream reports masquerade/bridge
/// interfaces before the guest agent says more).
fn interfaces(vmi: &VirtualMachineInstance, ip: Option<&str>) -> Value {
    let pod_net = vmi
        .spec
        .networks
        .iter()
        .flatten()
        .find(|n| n.pod.is_some())
        .map(|n| n.name.clone());
    let list: Vec<Value> = vmi
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .flatten()
        .map(|i| {
            let mut v = json!({"name": i.name, "infoSource": "domain", "queueCount": 1});
            if let Some(mac) = &i.mac_address {
                v["mac"] = json!(mac);
            }
            if Some(&i.name) == pod_net.as_ref()
                && let Some(ip) = ip
            {
                v["ipAddress"] = json!(ip);
                v["ipAddresses"] = json!([ip]);
                v["interfaceName"] = json!("eth0");
            }
            v
        })
        .collect();
    Value::Array(list)
}

async fn patch_status(api: &Api<VirtualMachineInstance>, name: &str, status: Value) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    Ok(())
}

async fn reconcile(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "handler_vmi",
        vmi = %format!("{}/{}", vmi.metadata.namespace.as_deref().unwrap_or_default(), vmi.metadata.name.as_deref().unwrap_or_default())
    );
    sync(vmi, ctx).instrument(span).await
}

async fn sync(vmi: Arc<VirtualMachineInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vmi.metadata.name.clone().unwrap_or_default();
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let ph = phase(&vmi).to_string();
    let mine = vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.node_name.as_str());
    if !mine
        || matches!(
            ph.as_str(),
            "Succeeded" | "Failed" | "" | "Pending" | "Scheduling"
        )
    {
        if matches!(ph.as_str(), "Succeeded" | "Failed") || !mine {
            ctx.forget(&uid).await;
        }
        return Ok(Action::await_change());
    }
    let conn = ctx.conn(&vmi, &uid).await;
    let Some(conn) = conn else {
        // No launcher to talk to: it has ended (its final state tells how), or it is not up yet.
        if let Some(end) = ctx.final_state(&uid) {
            finish(&api, &vmi, &name, &end).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let grace = vmi.spec.termination_grace_period_seconds.unwrap_or(30).max(0);
    if vmi.metadata.deletion_timestamp.is_some()
        && !conn.shutdown_sent.load(std::sync::atomic::Ordering::Relaxed)
    {
        match conn
            .launcher
            .call(
                json!({"Shutdown": {"gracePeriodSeconds": grace}}),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(grace, "shutting the VMI down");
                conn.shutdown_sent
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "shutdown"),
        }
    }
    if ph == "Scheduled" && conn.running_reported.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if ph == "Scheduled" {
        let sync = json!({"Sync": {"vmi": &*vmi}});
        match conn.launcher.call(sync, Duration::from_secs(120)).await {
            Ok(answer) => {
                // The launcher knows its pod's IP (downward API); only an older launcher makes us look it up.
                let ip = match answer.get("podIP").and_then(Value::as_str) {
                    Some(ip) => Some(ip.to_string()),
                    None => pod_ip(&ctx.client, &ns, &uid).await,
                };
                let status = json!({
                    "phase": "Running",
                    "phaseTransitionTimestamps": transition(&vmi, "Running"),
                    "interfaces": interfaces(&vmi, ip.as_deref()),
                    "conditions": without(with_condition(&vmi, "Ready", Some(json!({"status": "True"}))), "Synchronized"),
                    "machine": {"type": vmi.spec.domain.machine.as_ref().and_then(|m| m.r#type.clone()).unwrap_or_else(|| "q35".into())},
                    "migrationMethod": "BlockMigration",
                    "guestOSInfo": {},
                });
                patch_status(&api, &name, status).await?;
                conn.running_reported
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(ip = ?ip, "VMI running");
            }
            Err(LauncherError::Refused(msg)) => {
                tracing::warn!(error = %msg, "the launcher could not start the VMI");
                let cond = json!({"status": "False", "reason": "Synchronizing with the Domain failed.", "message": msg});
                patch_status(
                    &api,
                    &name,
                    json!({"conditions": with_condition(&vmi, "Synchronized", Some(cond))}),
                )
                .await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync");
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Running: follow the domain.
    let state = match conn
        .launcher
        .call(json!("GetDomain"), Duration::from_secs(10))
        .await
    {
        Ok(d) => d.get("state").cloned(),
        Err(_) => conn.last.lock().ok().and_then(|g| g.clone()),
    };
    let state = state.or_else(|| ctx.final_state(&uid));
    let Some(state) = state else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let (s, _) = state_of(&state);
    if matches!(s, "Shutoff" | "Crashed") {
        finish(&api, &vmi, &name, &state).await?;
        ctx.forget(&uid).await;
        return Ok(Action::await_change());
    }
    let paused = s == "Paused";
    let has_paused = vmi
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.r#type == "Paused"));
    if paused != has_paused {
        let cond = paused.then(|| json!({"status": "True", "reason": "PausedByUser"}));
        patch_status(
            &api,
            &name,
            json!({"conditions": with_condition(&vmi, "Paused", cond)}),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let agent = vmi
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.r#type == "AgentConnected" && c.status == "True")
        });
    if agent && !paused {
        // Still there? (A rebooting or stopped agent must not stay "connected".)
        let alive = conn
            .launcher
            .call(json!("GetGuestInfo"), Duration::from_secs(5))
            .await
            .is_ok_and(|info| info.get("agent").is_some_and(|a| !a.is_null()));
        if !alive {
            tracing::info!("guest agent disconnected");
            patch_status(
                &api,
                &name,
                json!({"conditions": with_condition(&vmi, "AgentConnected", None)}),
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        access_credentials(&api, &vmi, &name, &conn.launcher).await?;
    }
    if !agent
        && !paused
        && let Ok(info) = conn
            .launcher
            .call(json!("GetGuestInfo"), Duration::from_secs(3))
            .await
        && info.get("agent").is_some_and(|a| !a.is_null())
    {
        let os = &info["os"];
        let mut guest = json!({
            "id": os["id"], "name": os["name"], "prettyName": os["pretty-name"], "version": os["version"],
            "versionId": os["version-id"], "kernelRelease": os["kernel-release"], "kernelVersion": os["kernel-version"],
            "machine": os["machine"],
        });
        if let Some(m) = status_guest_mut(&mut guest) {
            m.retain(|_, v| !v.is_null());
        }
        let cond = json!({"status": "True"});
        let status = json!({
            "conditions": with_condition(&vmi, "AgentConnected", Some(cond)),
            "guestOSInfo": guest,
        });
        tracing::info!(
            agent = info["agent"]["version"].as_str().unwrap_or_default(),
            "guest agent connected"
        );
        patch_status(&api, &name, status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if agent { 30 } else { 5 })))
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

/// Has the launcher apply the agent-propagated access credentials and mirrors the result in upstream's
/// `AccessCredentialsSynchronized` condition (status, and the failure's message).
async fn access_credentials(
    api: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    name: &str,
    launcher: &crate::launcher::Launcher,
) -> Result<(), Error> {
    const KIND: &str = "AccessCredentialsSynchronized";
    if !uses_agent_credentials(vmi) {
        return Ok(());
    }
    let Ok(r) = launcher
        .call(json!("SyncAccessCredentials"), Duration::from_secs(15))
        .await
    else {
        return Ok(());
    };
    if r.get("none").is_some() {
        return Ok(());
    }
    let status = if r["succeeded"] == json!(true) {
        "True"
    } else {
        "False"
    };
    let message = r["message"].as_str().unwrap_or_default();
    let current = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == KIND));
    if current.is_some_and(|c| c.status == status && c.message.as_deref().unwrap_or_default() == message) {
        return Ok(());
    }
    let mut cond = json!({"status": status});
    if !message.is_empty() {
        cond["message"] = json!(message);
    }
    tracing::info!(status, message, "access credentials");
    patch_status(
        api,
        name,
        json!({"conditions": with_condition(vmi, KIND, Some(cond))}),
    )
    .await
}

fn status_guest_mut(v: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    v.as_object_mut()
}

/// Moves the VMI to Succeeded (the guest shut down) or Failed (it crashed), from the domain's final state.
async fn finish(
    api: &Api<VirtualMachineInstance>,
    vmi: &VirtualMachineInstance,
    name: &str,
    end: &Value,
) -> Result<(), Error> {
    let (s, reason) = state_of(end);
    let to = if s == "Shutoff" { "Succeeded" } else { "Failed" };
    if phase(vmi) == to {
        return Ok(());
    }
    tracing::info!(phase = to, reason, "the domain ended");
    let mut status = json!({
        "phase": to,
        "phaseTransitionTimestamps": transition(vmi, to),
        "conditions": with_condition(vmi, "Ready", Some(json!({"status": "False", "reason": "PodTerminating"}))),
    });
    if to == "Failed" {
        status["reason"] = json!(reason);
    }
    patch_status(api, name, status).await
}

/// Runs the handler's VMI loop for the VMIs labelled with its node until the stream ends.
pub async fn run(ctx: Arc<Ctx>, kicks: mpsc::UnboundedReceiver<ObjectRef<VirtualMachineInstance>>) {
    let vmis: Api<VirtualMachineInstance> = Api::all(ctx.client.clone());
    let selector = format!("kubevirt.io/nodeName={}", ctx.node_name);
    let kicks = futures_util::stream::unfold(kicks, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) });
    // The cache keeps no managedFields (nothing here reads them; they are a third of a VMI).
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = {
        use kube::runtime::WatchStreamExt as _;
        kube::runtime::reflector(
            writer,
            kube_support::lean_watch(vmis, watcher::Config::default().labels(&selector)),
        )
        .applied_objects()
    };
    Controller::for_stream(stream, reader)
        .reconcile_on(kicks)
        .run(reconcile, kube_support::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
