//! One running VM: QEMU as a child (dies with the launcher: parent-death signal), its QMP connection, and the
//! domain state QMP events drive. The launcher exits when QEMU does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launcher_domain::{Domain, FirmwareKind};
use launcher_qemu::Paths;
use qmp::{Qga, Qmp};
use serde::Serialize;
use tokio::sync::{Mutex, broadcast, watch};

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

/// Where the domain is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason")]
pub enum DomainState {
    /// vCPUs run.
    Running,
    /// vCPUs stopped (paused by a user, or started paused).
    Paused,
    /// An ACPI shutdown was requested; waiting for the guest.
    ShuttingDown,
    /// The guest powered off (or was stopped by the launcher): the VMI Succeeded.
    Shutoff(String),
    /// QEMU died or the guest panicked: the VMI Failed.
    Crashed(String),
}

impl DomainState {
    /// Whether QEMU is gone or going for good.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Shutoff(_) | Self::Crashed(_))
    }
}

/// A running VM.
#[derive(Debug)]
pub struct Vm {
    /// What it runs.
    pub domain: Domain,
    /// Its sockets.
    pub paths: Paths,
    /// The QMP connection.
    pub qmp: Qmp,
    state: watch::Sender<DomainState>,
    /// Domain events for the node agent's notify stream.
    pub events: broadcast::Sender<serde_json::Value>,
    pid: u32,
    shutdown: Mutex<()>,
    /// The next guest shutdown is a reboot (an ACPI soft reboot, as libvirt fakes it: reset instead of stopping).
    reboot_on_shutdown: std::sync::atomic::AtomicBool,
    /// Credentials the guest agent propagates.
    credentials: std::sync::Mutex<Vec<launcher_domain::credentials::AgentCredential>>,
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
    /// Starts QEMU for `domain` with sockets under `runtime_dir` and waits for its monitor.
    ///
    /// # Errors
    /// [`LaunchError`]; QEMU is not left running.
    pub async fn start(domain: Domain, runtime_dir: &Path, now_unix: i64) -> Result<Arc<Self>, LaunchError> {
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
            r = Qmp::connect(&paths.qmp, Duration::from_secs(20)) => match r {
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
        let initial = if domain.start_paused {
            DomainState::Paused
        } else {
            DomainState::Running
        };
        let (state, _) = watch::channel(initial.clone());
        let (events, _) = broadcast::channel(256);
        let vm = Arc::new(Self {
            domain,
            paths,
            qmp,
            state,
            events,
            pid,
            shutdown: Mutex::new(()),
            reboot_on_shutdown: std::sync::atomic::AtomicBool::new(false),
            credentials: std::sync::Mutex::new(Vec::new()),
        });
        vm.emit(&initial, "started");
        tokio::spawn(Self::follow_events(vm.clone()));
        tokio::spawn(Self::reap(vm.clone(), child, log_path));
        Ok(vm)
    }

    fn emit(&self, state: &DomainState, event: &str) {
        let _ = self
            .events
            .send(serde_json::json!({"event": event, "domain": state}));
    }

    fn set(&self, s: DomainState, event: &str) {
        self.emit(&s, event);
        self.state.send_replace(s);
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> DomainState {
        self.state.borrow().clone()
    }

    /// Waits until the domain is final (QEMU gone) and returns that state.
    pub async fn wait(&self) -> DomainState {
        let mut rx = self.state.subscribe();
        loop {
            let s = rx.borrow_and_update().clone();
            if s.is_final() && !self.alive() {
                return s;
            }
            if rx.changed().await.is_err() {
                return self.state();
            }
        }
    }

    /// Whether the QEMU process still exists.
    #[must_use]
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists() && !self.reaped()
    }

    fn reaped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
            .unwrap_or(true)
    }

    async fn follow_events(vm: Arc<Self>) {
        let mut rx = vm.qmp.events();
        while let Ok(ev) = rx.recv().await {
            tracing::info!(event = %ev.name, data = %ev.data, "qemu event");
            let cur = vm.state();
            match ev.name.as_str() {
                "STOP" if !cur.is_final() && cur != DomainState::ShuttingDown => {
                    vm.set(DomainState::Paused, "STOP")
                }
                "RESUME" if !cur.is_final() => vm.set(DomainState::Running, "RESUME"),
                "SHUTDOWN" if cur.is_final() => vm.emit(&cur, "SHUTDOWN"),
                "SHUTDOWN"
                    if vm
                        .reboot_on_shutdown
                        .swap(false, std::sync::atomic::Ordering::SeqCst) =>
                {
                    // -no-shutdown stopped the machine: start it over instead.
                    let reset = vm.qmp.system_reset().await;
                    let cont = vm.qmp.cont().await;
                    tracing::info!(reset = ?reset.err(), cont = ?cont.err(), "soft reboot");
                    vm.emit(&cur, "REBOOT");
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
                    vm.set(
                        DomainState::Shutoff(format!(
                            "{} ({reason})",
                            if guest {
                                "guest shut down"
                            } else {
                                "host shut down"
                            }
                        )),
                        "SHUTDOWN",
                    );
                    // -no-shutdown kept QEMU alive; it is done now.
                    let _ = vm.qmp.quit().await;
                }
                "GUEST_PANICKED" => {
                    vm.set(DomainState::Crashed("guest panicked".into()), "GUEST_PANICKED");
                    let _ = vm.qmp.quit().await;
                }
                other => vm.emit(&cur, other),
            }
        }
    }

    async fn reap(vm: Arc<Self>, mut child: tokio::process::Child, log: PathBuf) {
        let status = child.wait().await;
        let cur = vm.state();
        if !cur.is_final() {
            let how = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            vm.set(
                DomainState::Crashed(format!("qemu exited unexpectedly ({how}): {}", tail(&log))),
                "QEMU_EXITED",
            );
        } else {
            vm.state.send_modify(|_| {});
        }
    }

    /// A soft reboot over ACPI: the power button, and the guest's shutdown turned into a reset.
    ///
    /// # Errors
    /// QMP refused the power button.
    pub async fn acpi_reboot(&self) -> Result<(), qmp::QmpError> {
        self.reboot_on_shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.qmp.system_powerdown().await
    }

    /// ACPI power button, then a hard stop if the guest is still up after `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let _g = self.shutdown.lock().await;
        if self.state().is_final() {
            return;
        }
        self.set(DomainState::ShuttingDown, "SHUTDOWN_REQUESTED");
        if self.qmp.system_powerdown().await.is_ok() {
            let mut rx = self.state.subscribe();
            let done = tokio::time::timeout(grace, async {
                // A guest still booting misses a press: press again every few seconds.
                let mut again = tokio::time::interval(Duration::from_secs(5));
                again.tick().await;
                while !rx.borrow_and_update().is_final() {
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return },
                        _ = again.tick() => { let _ = self.qmp.system_powerdown().await; }
                    }
                }
            })
            .await;
            if done.is_ok() {
                return;
            }
        }
        self.kill(&format!("killed after the {}s grace period", grace.as_secs()))
            .await;
    }

    /// Stops QEMU now.
    pub async fn kill(&self, reason: &str) {
        if !self.state().is_final() {
            self.set(DomainState::Shutoff(reason.to_string()), "KILLED");
        }
        if tokio::time::timeout(Duration::from_secs(2), self.qmp.quit())
            .await
            .is_err()
            || self.alive()
        {
            let pid = i32::try_from(self.pid).unwrap_or(0);
            if pid > 0 {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Connects to the guest agent (fails fast when none answers).
    ///
    /// # Errors
    /// No agent in the guest, or its socket is gone.
    pub async fn agent(&self) -> Result<Qga, qmp::QmpError> {
        Qga::connect(&self.paths.qga, Duration::from_secs(3)).await
    }

    /// Sets the credentials the guest agent propagates.
    pub fn set_credentials(&self, creds: Vec<launcher_domain::credentials::AgentCredential>) {
        if let Ok(mut c) = self.credentials.lock() {
            *c = creds;
        }
    }

    /// The credentials the guest agent propagates.
    #[must_use]
    pub fn credentials(&self) -> Vec<launcher_domain::credentials::AgentCredential> {
        self.credentials.lock().map(|c| c.clone()).unwrap_or_default()
    }
}
