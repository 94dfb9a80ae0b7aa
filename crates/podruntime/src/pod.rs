//! One pod's life on the node: image check, volumes, sandbox (netns + CNI), the launcher or program process (restarted
//! as `restartPolicy` says), status reports, graceful stop on deletion, and cleanup. A record on disk
//! (`record.json`, [`crate::record`]) lets a restarted runtime adopt the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;

use crate::Runtime;
use crate::process;
use crate::record::{Proc, Record, code_from_final_state};
use crate::status::{Compute, View, now, render};

struct Pctx {
    rt: Arc<Runtime>,
    api: Api<Pod>,
    name: String,
    uid: String,
    dir: PathBuf,
}

impl Pctx {
    async fn report(&self, pod: &Pod, view: &View) {
        let patch = json!({"status": render(pod, view)});
        if let Err(e) = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %self.name, error = %e, "status update");
        }
    }

    fn view(&self, phase: &'static str, compute: Compute, ips: Vec<String>, start_time: &str) -> View {
        View {
            phase,
            reason: None,
            message: None,
            host_ip: self.rt.cfg.node_ip.clone(),
            pod_ips: ips,
            start_time: start_time.to_string(),
            compute,
            restarts: 0,
            last_state: None,
        }
    }

    /// The kubelet's last word on a deleted pod: removal with grace 0.
    async fn finish_delete(&self) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &dp).await {
            Ok(_) => tracing::debug!("final delete"),
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {
                tracing::debug!(code = e.code, "final delete: already gone or replaced");
            }
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "final delete"),
        }
    }
}

/// The pod's identity key, in its directory (for teardown).
const IDENTITY: &str = "identity";

/// The pod network on `eth0`: with the pod's identity, the address and MAC it had before (the reserved address is
/// asked for, and given up for any other if someone holds it after all).
async fn attach_primary(ctx: &Pctx, pod: &Pod, netns: &Path) -> Result<crate::cni::Attached, String> {
    let cni = &ctx.rt.cfg.cni;
    let Some((identity_of, reservations)) = &ctx.rt.cfg.identity else {
        return cni.add(&ctx.uid, netns, "eth0").await.map_err(|e| e.to_string());
    };
    let Some(key) = identity_of(pod).await else {
        return cni.add(&ctx.uid, netns, "eth0").await.map_err(|e| e.to_string());
    };
    let mut rc = serde_json::json!({"mac": crate::identity::mac_of(&key)});
    let reserved = reservations.take(&key);
    if !reserved.is_empty() {
        rc["ips"] = serde_json::json!(reserved);
    }
    let attached = match cni.add_with(&ctx.uid, netns, "eth0", Some(&rc)).await {
        Err(e) if !reserved.is_empty() => {
            tracing::warn!(%key, error = %e, "the reserved address is not free: another one");
            let _ = cni.del(&ctx.uid, netns, "eth0").await;
            if let Some(o) = rc.as_object_mut() {
                o.remove("ips");
            }
            cni.add_with(&ctx.uid, netns, "eth0", Some(&rc)).await
        }
        other => other,
    }
    .map_err(|e| e.to_string())?;
    reservations.record(&key, &attached.ips);
    std::fs::write(ctx.dir.join(IDENTITY), &key).map_err(|e| format!("recording the pod's identity: {e}"))?;
    Ok(attached)
}

fn netns_name(uid: &str) -> String {
    format!("kvbox-{uid}")
}

/// Removes the sandbox of a pod: CNI DEL, the namespace, the record.
async fn teardown(rt: &Runtime, uid: &str, dir: &Path) {
    let ns = netns_name(uid);
    crate::multus::detach(&rt.cfg.cni.bin_dir, dir, &crate::netns::path(&ns), uid).await;
    if crate::netns::exists(&ns)
        && let Err(e) = rt.cfg.cni.del(uid, &crate::netns::path(&ns), "eth0").await
    {
        tracing::warn!(pod_uid = uid, error = %e, "CNI DEL");
    }
    // A pod with an identity leaves its address held for the next pod of the same identity.
    if let (Some((_, reservations)), Ok(key)) =
        (&rt.cfg.identity, std::fs::read_to_string(dir.join(IDENTITY)))
    {
        reservations.hold(key.trim());
    }
    if let Err(e) = crate::netns::delete(&ns).await {
        tracing::warn!(pod_uid = uid, error = %e, "removing the network namespace");
    }
    let _ = std::fs::remove_file(Record::path(dir));
    crate::cgroup::remove_when_empty(uid).await;
}

/// Stops a launcher: SIGTERM, then SIGKILL to its group after `grace`.
async fn stop(pid: u32, runtime: &Path, grace: Duration) {
    process::signal(pid, process::TERM, false);
    let deadline = Instant::now() + grace;
    while process::alive(pid, runtime) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    process::signal(pid, process::KILL, true);
}

/// Cleans up after a pod the API no longer has (deleted while the runtime was down).
pub(crate) async fn remove_orphan(rt: Arc<Runtime>, uid: String) {
    let dir = rt.cfg.pods_dir.join(&uid);
    if let Some(rec) = Record::load(&dir) {
        tracing::info!(pod_uid = %uid, pid = rec.pid, "stopping the launcher of a pod that is gone");
        if process::alive(rec.pid, &rec.runtime_dir) {
            stop(rec.pid, &rec.runtime_dir, Duration::from_secs(10)).await;
        }
        let _ = std::fs::remove_dir_all(&rec.runtime_dir);
    }
    teardown(&rt, &uid, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn deleting(pod: Option<&Pod>) -> bool {
    pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

fn grace_of(pod: Option<&Pod>) -> Duration {
    let secs = pod
        .and_then(|p| p.metadata.deletion_grace_period_seconds)
        .or_else(|| {
            pod.and_then(|p| p.spec.as_ref())
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1))
}

/// The launcher's image arguments, from the image store: `--volume-source NAME=DISK|ROOTFS` per containerDisk
/// container (`volume<name>`), `--kernel-boot-root DIR` for the kernelBoot container.
fn image_args(rt: &Runtime, pod: &Pod) -> Result<Vec<String>, (String, String)> {
    let mut out = Vec::new();
    let resolve = |c: &k8s_openapi::api::core::v1::Container, how| {
        let image = c.image.clone().unwrap_or_default();
        (rt.cfg.resolve_image)(&image, how).map_err(|e| ("ErrImagePull".to_string(), e))
    };
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if c.name == "kernel-boot" {
            let dir = resolve(c, crate::ImageUse::Files)?;
            out.extend(["--kernel-boot-root".to_string(), dir.display().to_string()]);
        } else if let Some(volume) = c.name.strip_prefix("volume") {
            // With `containerDisk.path` the launcher gets the image's files and finds the disk there; otherwise the
            // disk itself (the one file under /disk/, or a bare disk image).
            let with_path = c.env.iter().flatten().any(|e| e.name == "CONTAINER_DISK_PATH");
            let path = if with_path {
                resolve(c, crate::ImageUse::Files)?
            } else {
                resolve(c, crate::ImageUse::Disk)?
            };
            out.extend([
                "--volume-source".to_string(),
                format!("{volume}={}", path.display()),
            ]);
        }
    }
    Ok(out)
}

/// Runs one pod until it is gone from the API.
pub(crate) async fn supervise(rt: Arc<Runtime>, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let span = tracing::info_span!("pod", pod = %format!("{ns}/{name}"));
    let ctx = Pctx {
        api: Api::namespaced(rt.client.clone(), &ns),
        dir: rt.cfg.pods_dir.join(&uid),
        rt,
        name,
        uid,
    };
    tracing::Instrument::instrument(lifecycle(ctx, pod, rx), span).await;
}

async fn lifecycle(ctx: Pctx, pod: Pod, mut rx: watch::Receiver<Option<Pod>>) {
    let _ = std::fs::create_dir_all(&ctx.dir);
    let vmi_uid = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubevirt.io/created-by"))
        .cloned()
        .unwrap_or_else(|| ctx.uid.clone());
    // A launcher's runtime directory is its VMI's; a program's marker is its container root, inside the pod's.
    let program = matches!(
        crate::command::mode(&ctx.rt.cfg, &pod),
        Ok(crate::command::Mode::Program(_))
    );
    let runtime = if program {
        ctx.dir.join("rootfs")
    } else {
        ctx.rt.cfg.launchers_dir.join(&vmi_uid)
    };
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let record = Record::load(&ctx.dir);
    let started = match record {
        Some(rec) if process::alive(rec.pid, &rec.runtime_dir) => {
            tracing::info!(pid = rec.pid, "adopting a running container");
            Some((Proc::Adopted(rec.pid), rec))
        }
        Some(rec) => {
            // Ended while the runtime was away.
            let code = if rec.program {
                1
            } else {
                code_from_final_state(&rec.runtime_dir)
            };
            if rec.program && restarts_on(&pod, code) {
                respawn(&ctx, &pod, &mut rx, rec, code).await
            } else {
                ended(&ctx, &pod, &rec, code).await;
                None
            }
        }
        None if finished || deleting(Some(&pod)) => None,
        None => start(&ctx, &pod, &mut rx, &runtime).await,
    };
    let mut started = started;
    while let Some((mut proc, rec)) = started.take() {
        let code = run(&ctx, &mut proc, &rec, &mut rx).await;
        let latest = rx.borrow().clone().unwrap_or_else(|| pod.clone());
        if rec.program && restarts_on(&latest, code) && !deleting(Some(&latest)) {
            started = respawn(&ctx, &latest, &mut rx, rec, code).await;
        } else {
            ended(&ctx, &latest, &rec, code).await;
        }
    }
    // Done running: wait for the pod to be deleted, finish that, and remove what is left.
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => break,
            Some(p) if p.metadata.deletion_timestamp.is_some() => ctx.finish_delete().await,
            Some(_) => {}
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    teardown(&ctx.rt, &ctx.uid, &ctx.dir).await;
    let _ = std::fs::remove_dir_all(&runtime);
    let _ = std::fs::remove_dir_all(&ctx.dir);
    tracing::info!("pod removed");
}

/// How the main container's run that ended with `code` is reported (with its termination message).
fn terminated(ctx: &Pctx, pod: &Pod, rec: &Record, code: i32) -> Compute {
    let message = if rec.program {
        let log = crate::command::log_path(&ctx.dir, pod);
        crate::command::termination_message(pod, &rec.runtime_dir, &log, code)
    } else {
        None
    };
    Compute::Terminated {
        code,
        started: rec.started.clone(),
        finished: now(),
        message,
    }
}

/// Reports the end of the container and removes the sandbox.
async fn ended(ctx: &Pctx, pod: &Pod, rec: &Record, code: i32) {
    tracing::info!(exit_code = code, "container exited");
    let compute = terminated(ctx, pod, rec, code);
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let mut view = ctx.view(phase, compute, Vec::new(), &rec.start_time);
    view.restarts = rec.restarts;
    // A program's end is told at once (its owner waits for it); a launcher's sandbox goes first, so the address it
    // held is free again before anyone learns the pod ended (the VM's next pod asks for the same one).
    if rec.program {
        ctx.report(pod, &view).await;
        teardown(&ctx.rt, &ctx.uid, &ctx.dir).await;
    } else {
        teardown(&ctx.rt, &ctx.uid, &ctx.dir).await;
        ctx.report(pod, &view).await;
    }
}

/// Whether a container that ended with `code` is started again (`restartPolicy` OnFailure or Always).
fn restarts_on(pod: &Pod, code: i32) -> bool {
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Always") => true,
        Some("OnFailure") => code != 0,
        _ => false,
    }
}

/// The kubelet's crash-loop back-off before restart `n` (10 s doubling, at most 5 minutes).
fn crash_backoff(n: u32) -> Duration {
    Duration::from_secs(10u64.saturating_mul(1 << n.saturating_sub(1).min(5)).min(300))
}

/// Starts a program pod's container again in the same sandbox after it ended with `code`: the run is reported as
/// the last state, the container waits in CrashLoopBackOff; `None` when the pod goes away meanwhile or cannot start.
async fn respawn(
    ctx: &Pctx,
    pod: &Pod,
    rx: &mut watch::Receiver<Option<Pod>>,
    mut rec: Record,
    code: i32,
) -> Option<(Proc, Record)> {
    let last = terminated(ctx, pod, &rec, code);
    rec.restarts += 1;
    let delay = crash_backoff(rec.restarts);
    tracing::info!(
        exit_code = code,
        restarts = rec.restarts,
        delay_secs = delay.as_secs(),
        "restarting"
    );
    let waiting = Compute::Waiting(
        "CrashLoopBackOff".into(),
        format!("back-off {}s restarting failed container", delay.as_secs()),
    );
    let mut view = ctx.view("Running", waiting, rec.pod_ips(), &rec.start_time);
    view.restarts = rec.restarts;
    view.last_state = Some(last.clone());
    ctx.report(pod, &view).await;
    rec.save(&ctx.dir);
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if !pause(rx, deadline.saturating_duration_since(Instant::now())).await {
            let latest = rx.borrow().clone().unwrap_or_else(|| pod.clone());
            ended(ctx, &latest, &rec, code).await;
            return None;
        }
    }
    let latest = rx.borrow().clone().unwrap_or_else(|| pod.clone());
    let Ok(crate::command::Mode::Program(program)) = crate::command::mode(&ctx.rt.cfg, &latest) else {
        ended(ctx, &latest, &rec, code).await;
        return None;
    };
    let _ = std::fs::remove_file(rec.runtime_dir.join("dev/termination-log"));
    let env = match crate::command::container_env(&ctx.rt.client, &latest, &rec.ip, &ctx.rt.cfg).await {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(error = %e, "the container's environment");
            ended(ctx, &latest, &rec, code).await;
            return None;
        }
    };
    let launch = crate::command::Launch {
        netns: &rec.netns,
        mount_root: &rec.runtime_dir,
        env,
        log: crate::command::log_path(&ctx.dir, &latest),
    };
    match crate::command::program(&program, &latest, &launch).spawn() {
        Ok(child) => {
            rec.pid = child.id().unwrap_or_default();
            rec.started = now();
            rec.save(&ctx.dir);
            crate::cgroup::place(&ctx.uid, rec.pid);
            let mut view = ctx.view(
                "Running",
                Compute::Running {
                    started: rec.started.clone(),
                    ready: true,
                },
                rec.pod_ips(),
                &rec.start_time,
            );
            view.restarts = rec.restarts;
            view.last_state = Some(last);
            ctx.report(&latest, &view).await;
            Some((Proc::Child(child), rec))
        }
        Err(e) => {
            tracing::warn!(error = %e, "restarting the container");
            ended(ctx, &latest, &rec, code).await;
            None
        }
    }
}

/// Waits `delay` or until the pod changes; false when it is gone or being deleted.
async fn pause(rx: &mut watch::Receiver<Option<Pod>>, delay: Duration) -> bool {
    let _ = tokio::time::timeout(delay, rx.changed()).await;
    !deleting(rx.borrow().as_ref())
}

/// Runs `attempt` until it succeeds, reporting each failure as the compute container's waiting reason and message
/// and waiting `backoff` (doubled each time, at most a minute) before the next; `None` when the pod is deleted
/// meanwhile.
async fn retrying<T, Fut>(
    ctx: &Pctx,
    pod: &Pod,
    rx: &mut watch::Receiver<Option<Pod>>,
    start_time: &str,
    backoff: &mut Duration,
    mut attempt: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, (String, String)>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Some(v),
            Err((reason, message)) => {
                let view = ctx.view(
                    "Pending",
                    Compute::Waiting(reason, message),
                    Vec::new(),
                    start_time,
                );
                ctx.report(pod, &view).await;
                if !pause(rx, *backoff).await {
                    return None;
                }
                *backoff = (*backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Checks, resolves, wires and starts; `None` when the pod cannot run (its status says why) or went away.
async fn start(
    ctx: &Pctx,
    pod: &Pod,
    rx: &mut watch::Receiver<Option<Pod>>,
    runtime: &Path,
) -> Option<(Proc, Record)> {
    let start_time = now();
    let mode = match crate::command::mode(&ctx.rt.cfg, pod) {
        Ok(m) => m,
        Err(message) => {
            let mut view = ctx.view(
                "Failed",
                Compute::Waiting("ErrImagePull".into(), message.clone()),
                Vec::new(),
                &start_time,
            );
            view.reason = Some("UnsupportedPod".into());
            view.message = Some(message);
            ctx.report(pod, &view).await;
            return None;
        }
    };
    let program = match &mode {
        crate::command::Mode::Program(p) => Some(p.clone()),
        crate::command::Mode::Launcher => None,
    };
    // Images, retried with backoff while they are missing (ErrImagePull, then ImagePullBackOff).
    let mut backoff = Duration::from_secs(5);
    let mut first = true;
    let image_args = retrying(ctx, pod, rx, &start_time, &mut backoff, || {
        let images = if program.is_some() {
            Ok(Vec::new())
        } else {
            image_args(&ctx.rt, pod)
        };
        let images = images.map_err(|(reason, message)| {
            let reason = if first { reason } else { "ImagePullBackOff".into() };
            first = false;
            tracing::warn!(%reason, %message, "image");
            (reason, message)
        });
        async move { images }
    })
    .await?;
    // Volumes (Secrets, ConfigMaps, the downward API), retried while what they need is missing.
    let mount_root = retrying(ctx, pod, rx, &start_time, &mut backoff, || async {
        crate::volumes::set_up(&ctx.rt.client, pod, &ctx.dir)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "volumes");
                ("ContainerCreating".to_string(), e.to_string())
            })
    })
    .await?;
    write_resolv_conf(ctx, pod, &mount_root);
    // The sandbox.
    let ns = netns_name(&ctx.uid);
    let attached = retrying(ctx, pod, rx, &start_time, &mut backoff, || async {
        let made = async {
            crate::netns::create(&ns).await.map_err(|e| e.to_string())?;
            let cni = &ctx.rt.cfg.cni;
            let path = crate::netns::path(&ns);
            let primary = attach_primary(ctx, pod, &path).await?;
            let client = &ctx.rt.client;
            let others = crate::multus::attach(
                client,
                &cni.bin_dir,
                &cni.ipam_dir,
                pod,
                &ctx.dir,
                &path,
                &ctx.uid,
            )
            .await?;
            let pods: Api<Pod> = Api::namespaced(
                client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            // Only pods that ask for networks get network-status (one write less for every other pod).
            if !others.is_empty() {
                crate::multus::publish(&pods, name, "kvbox", &primary, others)
                    .await
                    .map_err(|e| format!("writing the network-status annotation: {e}"))?;
            }
            Ok::<_, String>(primary)
        }
        .await;
        if let Err(e) = &made {
            tracing::warn!(error = %e, "creating the pod sandbox");
            teardown(&ctx.rt, &ctx.uid, &ctx.dir).await;
        }
        made.map_err(|e| {
            (
                "ContainerCreating".to_string(),
                format!("Failed to create pod sandbox: {e}"),
            )
        })
    })
    .await?;
    let env = retrying(ctx, pod, rx, &start_time, &mut backoff, || async {
        crate::command::container_env(&ctx.rt.client, pod, &attached.ip, &ctx.rt.cfg)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_string(), e))
    })
    .await?;
    let _ = std::fs::create_dir_all(runtime);
    let launch = crate::command::Launch {
        netns: &ns,
        mount_root: &mount_root,
        env,
        log: crate::command::log_path(&ctx.dir, pod),
    };
    let (mut cmd, accel) = match &program {
        Some(p) => (crate::command::program(p, pod, &launch), "none"),
        None => crate::command::launcher(&ctx.rt.cfg, pod, &launch, runtime, &image_args),
    };
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            teardown(&ctx.rt, &ctx.uid, &ctx.dir).await;
            let bin = program.as_ref().map_or(&ctx.rt.cfg.launcher_bin, |p| &p.bin);
            let msg = format!("starting {}: {e}", bin.display());
            let view = ctx.view(
                "Failed",
                Compute::Waiting("CreateContainerError".into(), msg),
                Vec::new(),
                &start_time,
            );
            ctx.report(pod, &view).await;
            return None;
        }
    };
    let rec = Record {
        pid: child.id().unwrap_or_default(),
        netns: ns,
        ip: attached.ip,
        ips: attached.ips,
        mac: attached.mac.clone(),
        runtime_dir: runtime.to_path_buf(),
        started: now(),
        start_time,
        program: program.is_some(),
        restarts: 0,
    };
    rec.save(&ctx.dir);
    let cgroups = crate::cgroup::place(&ctx.uid, rec.pid);
    tracing::info!(pid = rec.pid, ip = %rec.ip, accel, cgroups = cgroups.len(), "container started");
    Some((Proc::Child(child), rec))
}

/// The container's `/etc/resolv.conf` under `mount_root`, as the kubelet writes it (the launcher hands its name
/// servers and search list to the guest by DHCP).
fn write_resolv_conf(ctx: &Pctx, pod: &Pod, mount_root: &Path) {
    let host =
        crate::dns::ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let conf = crate::dns::for_pod(pod, ctx.rt.cfg.dns.as_ref(), &host);
    let etc = mount_root.join("etc");
    if let Err(e) =
        std::fs::create_dir_all(&etc).and_then(|()| std::fs::write(etc.join("resolv.conf"), conf.render()))
    {
        tracing::warn!(error = %e, "writing the pod's resolv.conf");
    }
}

/// The pod's secondary networks annotation.
fn pod_networks(pod: Option<&Pod>) -> Option<String> {
    pod?.metadata
        .annotations
        .as_ref()?
        .get(crate::multus::NETWORKS)
        .cloned()
}

/// Attaches and detaches secondary networks of a running pod whose annotation changed, and says so in its
/// network-status.
async fn update_networks(ctx: &Pctx, pod: &Pod, rec: &Record) {
    let cni = &ctx.rt.cfg.cni;
    let netns = crate::netns::path(&rec.netns);
    let updated = crate::multus::update(
        &ctx.rt.client,
        &cni.bin_dir,
        &cni.ipam_dir,
        pod,
        &ctx.dir,
        &netns,
        &ctx.uid,
    )
    .await;
    match updated {
        Ok(Some(others)) => {
            let pods: Api<Pod> = Api::namespaced(
                ctx.rt.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let mut primary = serde_json::json!({"name": ctx.rt.cfg.cni.network_name().unwrap_or_default(),
                "interface": "eth0", "ips": rec.pod_ips(), "default": true, "dns": {}});
            if let Some(mac) = &rec.mac {
                primary["mac"] = serde_json::json!(mac);
            }
            if let Err(e) = crate::multus::republish(&pods, pod, primary, others).await {
                tracing::warn!(error = %e, "writing the network-status annotation");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "attaching a secondary network"),
    }
}

/// Supervises a started launcher: readiness, deletion (SIGTERM, grace, SIGKILL); returns its exit code.
async fn run(ctx: &Pctx, proc: &mut Proc, rec: &Record, rx: &mut watch::Receiver<Option<Pod>>) -> i32 {
    let pid = proc.pid();
    let mut ready = false;
    let mut kill_at: Option<Instant> = None;
    let mut reported = false;
    let mut refreshed = Instant::now();
    let mut networks = pod_networks(rx.borrow().as_ref());
    loop {
        let pod = rx.borrow().clone();
        if let Some(p) = pod.as_ref().filter(|p| !deleting(Some(p)))
            && pod_networks(Some(p)) != networks
        {
            networks = pod_networks(Some(p));
            update_networks(ctx, p, rec).await;
        }
        if let Some(p) = pod
            .as_ref()
            .filter(|_| refreshed.elapsed() >= crate::volumes::REFRESH)
        {
            refreshed = Instant::now();
            crate::volumes::refresh(&ctx.rt.client, p, &ctx.dir).await;
        }
        if let Some(p) = &pod {
            let now_ready = rec.program || launcher_protocol::socket(&rec.runtime_dir).exists();
            if !reported || now_ready != ready {
                ready = now_ready;
                reported = true;
                let compute = Compute::Running {
                    started: rec.started.clone(),
                    ready,
                };
                let mut view = ctx.view("Running", compute, rec.pod_ips(), &rec.start_time);
                view.restarts = rec.restarts;
                ctx.report(p, &view).await;
            }
        }
        if deleting(pod.as_ref()) && kill_at.is_none() {
            let grace = if pod.is_none() {
                Duration::from_secs(5)
            } else {
                grace_of(pod.as_ref())
            };
            tracing::info!(grace_secs = grace.as_secs(), "stopping the launcher");
            process::signal(pid, process::TERM, false);
            kill_at = Some(Instant::now() + grace);
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            tracing::warn!("grace period over: killing the launcher");
            process::signal(pid, process::KILL, true);
        }
        tokio::select! {
            code = proc.exited(&rec.runtime_dir) => {
                // QEMU dies with the launcher; anything else left in the group goes too.
                process::signal(pid, process::KILL, true);
                return code;
            }
            _ = rx.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(if ready { 1000 } else { 100 })) => {}
        }
    }
}
