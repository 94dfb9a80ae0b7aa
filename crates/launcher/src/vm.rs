//! One running VM: QEMU as a child (dies with the launcher: parent-death signal), owned by one task — the VM's
//! actor, as Firecracker's VMM thread owns its VM — that alone changes the domain's state: from QMP events, from
//! QEMU's exit, and from the requests ([`Vm::shutdown`], [`Vm::kill`], [`Vm::acpi_reboot`]) the handle sends it.
//! Everyone else holds the [`Vm`] handle: the domain, the state to watch, the events, read-only QMP queries and the
//! guest agent. The launcher exits when QEMU does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launcher_domain::{Domain, FirmwareKind};
use launcher_qemu::Paths;
use qmp::{Qga, Qmp};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Why QEMU could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command line could not be rendered.
    #[error("building the QEMU command line: {0}")]
    Render(String),
    /// A runtime file could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU did not start; its own words follow.
    #[error("QEMU failed to start: {0}")]
    Qemu(String),
}

use launcher_domain::credentials::AgentCredential;
pub use launcher_protocol::DomainState;
use launcher_protocol::Event;

/// How long QEMU may take to answer on its monitor after it started (upstream's virt-launcher `--qemu-timeout`,
/// 240 s): on a loaded node many QEMUs start at once, and one that exits is noticed at once anyway.
const QEMU_TIMEOUT: Duration = Duration::from_secs(240);

/// A running VM: the handle to its actor.
#[derive(Debug)]
pub struct Vm {
    /// What it runs.
    pub domain: Domain,
    /// Its sockets.
    pub paths: Paths,
    /// The QMP connection, for queries that change nothing (status, blocks, screendumps, pause and resume, whose
    /// state changes come back as events the actor follows).
    pub qmp: Qmp,
    /// Domain events for the node agent's notify stream.
    pub events: broadcast::Sender<Event>,
    /// Credentials the guest agent propagates.
    pub credentials: Vec<AgentCredential>,
    /// Each NIC's link, up or not (`state: down` at start, changed live by a later Sync).
    links: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
    /// The NICs the guest has now (the domain's, then those plugged and unplugged since).
    nics: std::sync::Mutex<Vec<launcher_domain::Nic>>,
    /// Hot-plug ports taken, by NIC.
    ports: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    requests: mpsc::Sender<Request>,
    state: watch::Receiver<DomainState>,
    exited: watch::Receiver<bool>,
}

/// What the handle asks of the actor.
#[derive(Debug)]
enum Request {
    /// ACPI power button; after `grace`, a hard stop.
    Shutdown(Duration),
    /// Stop QEMU now, with this reason.
    Kill(String),
    /// The next guest shutdown is a reboot; the power button now. Answers whether the button was pressed.
    AcpiReboot(oneshot::Sender<Result<(), String>>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(8).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Vm {
    /// Starts QEMU for `domain` with sockets under `runtime_dir`, waits for its monitor, and hands QEMU to the VM's
    /// actor. `credentials`: what the guest agent propagates.
    ///
    /// # Errors
    /// [`LaunchError`]; QEMU is not left running.
    pub async fn start(
        domain: Domain,
        runtime_dir: &Path,
        now_unix: i64,
        credentials: Vec<AgentCredential>,
    ) -> Result<Arc<Self>, LaunchError> {
        let cmd = launcher_qemu::render(&domain, runtime_dir, now_unix).map_err(LaunchError::Render)?;
        let paths = Paths::under(runtime_dir);
        if let FirmwareKind::Efi {
            vars_template, vars, ..
        } = &domain.firmware.kind
            && !vars.exists()
        {
            std::fs::copy(vars_template, vars).map_err(io(vars_template))?;
        }
        for p in [&paths.qmp, &paths.serial, &paths.vnc, &paths.qga] {
            let _ = std::fs::remove_file(p);
        }
        let log_path = runtime_dir.join("qemu.log");
        let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
        let log2 = log.try_clone().map_err(io(&log_path))?;
        let mut command = tokio::process::Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent; it makes the
        // kernel kill QEMU when the launcher dies, however it dies (kill -9 included).
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| LaunchError::Qemu(format!("{}: {e}", cmd.program.display())))?;
        let pid = child.id().unwrap_or_default();
        let qmp = tokio::select! {
            r = Qmp::connect(&paths.qmp, QEMU_TIMEOUT) => match r {
                Ok(q) => q,
                Err(e) => {
                    let _ = child.kill().await;
                    return Err(LaunchError::Qemu(format!("{e}\n{}", tail(&log_path))));
                }
            },
            status = child.wait() => {
                return Err(LaunchError::Qemu(format!(
                    "exited ({}) before its monitor answered:\n{}",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    tail(&log_path)
                )));
            }
        };
        // `state: down` NICs: their links go down before the guest gets far (QEMU has no option for it).
        for nic in domain.nics.iter().filter(|n| !n.link_up) {
            let args = serde_json::json!({"name": format!("ua-{}", nic.name), "up": false});
            if let Err(e) = qmp.execute("set_link", Some(args)).await {
                let _ = child.kill().await;
                return Err(LaunchError::Qemu(format!(
                    "setting the link of {} down: {e}",
                    nic.name
                )));
            }
        }
        let initial = if domain.start_paused {
            DomainState::Paused
        } else {
            DomainState::Running
        };
        let (state_tx, state) = watch::channel(initial.clone());
        let (exited_tx, exited) = watch::channel(false);
        let (events, _) = broadcast::channel(256);
        let (requests, inbox) = mpsc::channel(16);
        let actor = Actor {
            qmp: qmp.clone(),
            pid,
            log: log_path,
            state: state_tx,
            events: events.clone(),
            reboot_on_shutdown: false,
            shutdown: None,
        };
        actor.emit(&initial, "started");
        tokio::spawn(actor.run(child, inbox, exited_tx));
        let links = std::sync::Mutex::new(domain.nics.iter().map(|n| (n.name.clone(), n.link_up)).collect());
        Ok(Arc::new(Self {
            links,
            nics: std::sync::Mutex::new(domain.nics.clone()),
            ports: std::sync::Mutex::default(),
            domain,
            paths,
            qmp,
            events,
            credentials,
            requests,
            state,
            exited,
        }))
    }

    /// The NICs the guest has now.
    #[must_use]
    pub fn current_nics(&self) -> Vec<launcher_domain::Nic> {
        self.nics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn add_nic(&self, nic: launcher_domain::Nic) {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(nic.name.clone(), true);
        self.nics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(nic);
    }

    pub(crate) fn remove_nic(&self, name: &str) {
        self.nics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| n.name != name);
    }

    /// A free hot-plug port for NIC `name`, now taken.
    pub(crate) fn take_port(&self, name: &str) -> Option<u32> {
        let mut ports = self
            .ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let free = (0..self.domain.hotplug_ports).find(|p| !ports.values().any(|t| t == p))?;
        ports.insert(name.to_string(), free);
        Some(free)
    }

    pub(crate) fn free_port(&self, name: &str) {
        self.ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Whether the link of NIC `name` is up.
    #[must_use]
    pub fn link_up(&self, name: &str) -> bool {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or(true)
    }

    /// Sets the link of NIC `name` up or down (QMP `set_link` on its device, as libvirt's link-state update).
    ///
    /// # Errors
    /// QEMU refused.
    pub async fn set_link(&self, name: &str, up: bool) -> Result<(), String> {
        let args = serde_json::json!({"name": format!("ua-{name}"), "up": up});
        self.qmp.execute("set_link", Some(args)).await.map_err(|e| {
            format!(
                "setting the link of {name} {}: {e}",
                if up { "up" } else { "down" }
            )
        })?;
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), up);
        Ok(())
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> DomainState {
        self.state.borrow().clone()
    }

    /// Waits until QEMU is gone and returns the state it ended in.
    pub async fn wait(&self) -> DomainState {
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(|gone| *gone).await;
        self.state()
    }

    /// ACPI power button, then a hard stop if the guest is still up after `grace` (asked once; a second request
    /// while one runs changes nothing).
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.requests.send(Request::Shutdown(grace)).await;
    }

    /// Stops QEMU now.
    pub async fn kill(&self, reason: &str) {
        let _ = self.requests.send(Request::Kill(reason.to_string())).await;
    }

    /// A soft reboot over ACPI: the power button, and the guest's shutdown turned into a reset.
    ///
    /// # Errors
    /// QMP refused the power button, or QEMU is gone.
    pub async fn acpi_reboot(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::AcpiReboot(tx))
            .await
            .map_err(|_| "the VM is gone".to_string())?;
        rx.await.map_err(|_| "the VM is gone".to_string())?
    }

    /// Connects to the guest agent (fails fast when none answers).
    ///
    /// # Errors
    /// No agent in the guest, or its socket is gone.
    pub async fn agent(&self) -> Result<Qga, qmp::QmpError> {
        Qga::connect(&self.paths.qga, Duration::from_secs(3)).await
    }
}

/// A shutdown under way: when the guest's time is up.
#[derive(Debug)]
struct Shutdown {
    deadline: tokio::time::Instant,
    grace: Duration,
}

/// The task that owns QEMU and the domain's state.
struct Actor {
    qmp: Qmp,
    pid: u32,
    log: PathBuf,
    state: watch::Sender<DomainState>,
    events: broadcast::Sender<Event>,
    /// The next guest shutdown is a reboot (an ACPI soft reboot, as libvirt fakes it: reset instead of stopping).
    reboot_on_shutdown: bool,
    shutdown: Option<Shutdown>,
}

impl Actor {
    /// Follows QEMU until it exits: requests, QMP events, the shutdown's timers, the process's end.
    async fn run(
        mut self,
        mut child: tokio::process::Child,
        mut inbox: mpsc::Receiver<Request>,
        exited: watch::Sender<bool>,
    ) {
        let mut qmp_events = self.qmp.events();
        // A guest still booting misses a press of the power button: press again every few seconds.
        let mut press = tokio::time::interval(Duration::from_secs(5));
        let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
        loop {
            let deadline = self.shutdown.as_ref().map_or(far, |s| s.deadline);
            let shutting_down = self.shutdown.is_some() && !self.current().is_final();
            tokio::select! {
                status = child.wait() => {
                    self.exited(status);
                    break;
                }
                Some(request) = inbox.recv() => self.handle(request, &mut press).await,
                event = qmp_events.recv() => match event {
                    Ok(ev) => self.on_event(ev).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The monitor is gone; QEMU's exit follows.
                    Err(broadcast::error::RecvError::Closed) => qmp_events = broadcast::channel(1).1,
                },
                () = tokio::time::sleep_until(deadline), if shutting_down => {
                    let grace = self.shutdown.as_ref().map_or(0, |s| s.grace.as_secs());
                    self.kill(&format!("killed after the {grace}s grace period")).await;
                }
                _ = press.tick(), if shutting_down => {
                    let _ = self.qmp.system_powerdown().await;
                }
            }
        }
        exited.send_replace(true);
    }

    fn current(&self) -> DomainState {
        self.state.borrow().clone()
    }

    fn emit(&self, state: &DomainState, event: &str) {
        let _ = self.events.send(Event {
            event: event.to_string(),
            domain: state.clone(),
        });
    }

    fn set(&self, s: DomainState, event: &str) {
        self.emit(&s, event);
        self.state.send_replace(s);
    }

    async fn handle(&mut self, request: Request, press: &mut tokio::time::Interval) {
        match request {
            Request::Shutdown(grace) => {
                if self.current().is_final() || self.shutdown.is_some() {
                    return;
                }
                self.set(DomainState::ShuttingDown, "SHUTDOWN_REQUESTED");
                if self.qmp.system_powerdown().await.is_ok() {
                    self.shutdown = Some(Shutdown {
                        deadline: tokio::time::Instant::now() + grace,
                        grace,
                    });
                    press.reset();
                } else {
                    self.kill(&format!("killed after the {}s grace period", grace.as_secs()))
                        .await;
                }
            }
            Request::Kill(reason) => self.kill(&reason).await,
            Request::AcpiReboot(reply) => {
                self.reboot_on_shutdown = true;
                let pressed = self.qmp.system_powerdown().await.map_err(|e| e.to_string());
                let _ = reply.send(pressed);
            }
        }
    }

    async fn on_event(&mut self, ev: qmp::Event) {
        tracing::info!(event = %ev.name, data = %ev.data, "qemu event");
        let cur = self.current();
        match ev.name.as_str() {
            "STOP" if !cur.is_final() && cur != DomainState::ShuttingDown => {
                self.set(DomainState::Paused, "STOP")
            }
            "RESUME" if !cur.is_final() => self.set(DomainState::Running, "RESUME"),
            "SHUTDOWN" if cur.is_final() => self.emit(&cur, "SHUTDOWN"),
            "SHUTDOWN" if std::mem::take(&mut self.reboot_on_shutdown) => {
                // -no-shutdown stopped the machine: start it over instead.
                let reset = self.qmp.system_reset().await;
                let cont = self.qmp.cont().await;
                tracing::info!(reset = ?reset.err(), cont = ?cont.err(), "soft reboot");
                self.emit(&cur, "REBOOT");
            }
            "SHUTDOWN" => {
                let guest = ev
                    .data
                    .get("guest")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(true);
                let reason = ev
                    .data
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("shutdown");
                let who = if guest {
                    "guest shut down"
                } else {
                    "host shut down"
                };
                self.set(DomainState::Shutoff(format!("{who} ({reason})")), "SHUTDOWN");
                // -no-shutdown kept QEMU alive; it is done now.
                let _ = self.qmp.quit().await;
            }
            "GUEST_PANICKED" => {
                self.set(DomainState::Crashed("guest panicked".into()), "GUEST_PANICKED");
                let _ = self.qmp.quit().await;
            }
            other => self.emit(&cur, other),
        }
    }

    /// Stops QEMU now: `quit`, and SIGKILL when it does not answer in time.
    async fn kill(&mut self, reason: &str) {
        if !self.current().is_final() {
            self.set(DomainState::Shutoff(reason.to_string()), "KILLED");
        }
        let quit = tokio::time::timeout(Duration::from_secs(2), self.qmp.quit()).await;
        if !matches!(quit, Ok(Ok(()))) || self.alive() {
            self.sigkill();
        }
    }

    /// Whether the QEMU process still runs (exists, and is not a zombie waiting to be reaped).
    fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| !r.starts_with('Z')))
    }

    fn sigkill(&self) {
        let pid = i32::try_from(self.pid).unwrap_or(0);
        if pid > 0 {
            // SAFETY: kill(2) on our own child's pid, not yet reaped (the actor reaps it); no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// QEMU exited: a domain that had not ended crashed.
    fn exited(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        if !self.current().is_final() {
            let how = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            self.set(
                DomainState::Crashed(format!("qemu exited unexpectedly ({how}): {}", tail(&self.log))),
                "QEMU_EXITED",
            );
        }
        self.shutdown = None;
    }
}
