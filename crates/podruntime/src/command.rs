//! What runs in a pod's container: `virt-launcher` with the runtime's own arguments for a launcher pod, or a
//! program image's binary (the CDI importer; a launcher-image helper command) with the container's command and
//! arguments — the environment the kubelet would give it, where its output goes, and its termination message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

/// The container the runtime runs: `compute` in a launcher pod, else the first one.
pub(crate) fn main_container(pod: &Pod) -> Option<&Container> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .find(|c| c.name == "compute")
        .or_else(|| containers.first())
}

/// The launcher's own entry point in its image (what the controller's launcher pods run).
const LAUNCHER_ENTRY: &str = "/usr/bin/virt-launcher";

/// How a pod runs.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// `virt-launcher` for a VMI, with the arguments the runtime computes.
    Launcher,
    /// A program image: its binary with the container's command (after the entry point) and arguments.
    Program(crate::Program),
}

/// How `pod` runs here, or why it cannot.
pub(crate) fn mode(cfg: &crate::Config, pod: &Pod) -> Result<Mode, String> {
    let Some(c) = main_container(pod) else {
        return Err("the pod has no container".into());
    };
    let image = c.image.clone().unwrap_or_default();
    let command = c.command.clone().unwrap_or_default();
    let launcher_entry = command.is_empty() || command == [LAUNCHER_ENTRY];
    if cfg.launcher_images.contains(&image) && launcher_entry {
        return Ok(Mode::Launcher);
    }
    if let Some(p) = cfg.programs.iter().find(|p| p.image == image) {
        return Ok(Mode::Program(p.clone()));
    }
    let known: Vec<&str> = cfg
        .launcher_images
        .iter()
        .map(String::as_str)
        .chain(cfg.programs.iter().map(|p| p.image.as_str()))
        .collect();
    Err(format!(
        "the kvbox pod runtime runs only its own images ({}); image {image:?} cannot run here",
        known.join(", ")
    ))
}

/// The main container's environment as the kubelet sets it: literal values, the downward API's `fieldRef`s (name,
/// namespace, uid, node name, service account, pod and host IP), and keys of Secrets and ConfigMaps (a missing one
/// is an error unless `optional`). Resource fields are left out: no pod here uses them.
pub(crate) async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    pod_ip: &str,
    cfg: &crate::Config,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let field = |path: &str| -> Option<String> {
        let m = &pod.metadata;
        match path {
            "metadata.name" => m.name.clone(),
            "metadata.namespace" => m.namespace.clone(),
            "metadata.uid" => m.uid.clone(),
            "spec.nodeName" => Some(cfg.node_name.clone()),
            "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
            "status.podIP" => Some(pod_ip.to_string()),
            "status.hostIP" => Some(cfg.node_ip.clone()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for e in main_container(pod)
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
    {
        let from = e.value_from.as_ref();
        let value = if let Some(v) = &e.value {
            Some(v.clone())
        } else if let Some(f) = from.and_then(|v| v.field_ref.as_ref()) {
            field(&f.field_path)
        } else if let Some(k) = from.and_then(|v| v.secret_key_ref.as_ref()) {
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&k.name)
                .await
                .map_err(|e| e.to_string())?;
            let value = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get(&k.key).cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            if value.is_none() && !k.optional.unwrap_or(false) {
                return Err(format!(
                    "secret {:?} key {:?} not found (env {})",
                    k.name, k.key, e.name
                ));
            }
            value
        } else if let Some(k) = from.and_then(|v| v.config_map_key_ref.as_ref()) {
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&k.name)
                .await
                .map_err(|e| e.to_string())?;
            let value = cm.and_then(|c| c.data).and_then(|d| d.get(&k.key).cloned());
            if value.is_none() && !k.optional.unwrap_or(false) {
                return Err(format!(
                    "configmap {:?} key {:?} not found (env {})",
                    k.name, k.key, e.name
                ));
            }
            value
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            out.push((e.name.clone(), v));
        }
    }
    Ok(out)
}

/// Where a pod's main container writes its output (`<pod dir>/<container>.log`).
pub(crate) fn log_path(pod_dir: &Path, pod: &Pod) -> PathBuf {
    let name = main_container(pod).map_or("compute", |c| c.name.as_str());
    pod_dir.join(format!("{name}.log"))
}

/// Everything a container needs to start: where, with what.
pub(crate) struct Launch<'a> {
    /// The pod's network namespace.
    pub(crate) netns: &'a str,
    /// The directory standing for the container's filesystem.
    pub(crate) mount_root: &'a Path,
    /// Its environment.
    pub(crate) env: Vec<(String, String)>,
    /// Its output.
    pub(crate) log: PathBuf,
}

fn base(launch: &Launch<'_>, bin: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", launch.netns]).arg(bin);
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(std::process::Stdio::null()).process_group(0);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log);
    if let Ok(log) = log
        && let Ok(err) = log.try_clone()
    {
        cmd.stdout(log).stderr(err);
    }
    cmd
}

/// The launcher's command line in the pod's network namespace (`ip netns exec`), and the accelerator it was given
/// (KVM only when the pod asked for it and the node has it).
pub(crate) fn launcher(
    cfg: &crate::Config,
    pod: &Pod,
    launch: &Launch<'_>,
    runtime: &Path,
    image_args: &[String],
) -> (tokio::process::Command, &'static str) {
    let wants_kvm = main_container(pod)
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l: &BTreeMap<_, _>| l.contains_key("devices.kubevirt.io/kvm"));
    let accel = if wants_kvm && cfg.kvm { "kvm" } else { "tcg" };
    let mut cmd = base(launch, &cfg.launcher_bin);
    cmd.arg("--runtime-dir")
        .arg(runtime)
        .args(["--accel", accel])
        .arg("--mount-root")
        .arg(launch.mount_root);
    cmd.args(image_args);
    (cmd, accel)
}

/// A program image's command line: its binary and fixed arguments, `--mount-root ROOT` (which also marks the process
/// as this pod's), then the container's command after the entry point and its arguments.
pub(crate) fn program(program: &crate::Program, pod: &Pod, launch: &Launch<'_>) -> tokio::process::Command {
    let mut cmd = base(launch, &program.bin);
    cmd.args(&program.args).arg("--mount-root").arg(launch.mount_root);
    if let Some(c) = main_container(pod) {
        cmd.args(c.command.iter().flatten().skip(1));
        cmd.args(c.args.iter().flatten());
    }
    cmd
}

/// The kubelet's termination message for an ended container: the file at `terminationMessagePath` (default
/// `/dev/termination-log`) under the container's root, at most 4096 bytes; with `FallbackToLogsOnError` and a
/// failure, the end of the log (80 lines, 2048 bytes) when the file is empty.
pub(crate) fn termination_message(pod: &Pod, mount_root: &Path, log: &Path, code: i32) -> Option<String> {
    let c = main_container(pod)?;
    let path = c
        .termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log");
    let file = mount_root.join(path.trim_start_matches('/'));
    let text = std::fs::read(&file).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    if !text.trim().is_empty() {
        return Some(text);
    }
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if !fallback || code == 0 {
        return None;
    }
    let log = std::fs::read(log).unwrap_or_default();
    let log = String::from_utf8_lossy(&log);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let start = tail.len().saturating_sub(2048);
    let start = (start..tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    Some(tail[start..].to_string()).filter(|t| !t.is_empty())
}
