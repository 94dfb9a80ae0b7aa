//! Box mode's pod runtime — a minimal kubelet for launcher pods. It watches the pods bound to its node and, for
//! each, creates a network namespace wired by the standard CNI plugins ([`cni`], [`netns`]), resolves containerDisk
//! images in the box image store, sets up its Secret/ConfigMap/downward-API volumes ([`volumes`]) and its
//! `/etc/resolv.conf` ([`dns`]), starts `virt-launcher` inside the namespace ([`process`]), reports the pod's
//! status the way a kubelet does ([`status`]), stops it gracefully when the pod is deleted and removes everything
//! it made. Besides launchers it runs a few program images as local binaries (the CDI importer and upload server;
//! [`Program`], `command.rs`). Launchers run in process groups of their own, so they outlive a runtime restart and
//! are adopted again.

pub mod cgroup;
pub mod cni;
mod command;
pub mod dns;
pub mod identity;
pub mod multus;
pub mod netns;
mod pod;
pub mod process;
mod record;
mod status;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

/// What a pod wants of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageUse {
    /// A containerDisk: the disk file.
    Disk,
    /// A kernelBoot container: the directory of its files.
    Files,
}

/// Resolves an image reference to a local disk file or directory of files, or says why it cannot.
pub type ResolveImage = Arc<dyn Fn(&str, ImageUse) -> Result<PathBuf, String> + Send + Sync>;

/// An image the runtime runs as a local program: a container of `image` runs `bin`, then `args`, then
/// `--mount-root DIR` (the directory standing for the container's filesystem), then the container's command after
/// its entry point, then the container's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The image reference containers name.
    pub image: String,
    /// The binary.
    pub bin: PathBuf,
    /// Its first arguments (a subcommand).
    pub args: Vec<String>,
}

/// How the runtime runs pods.
#[derive(Clone)]
pub struct Config {
    /// The node whose pods it runs.
    pub node_name: String,
    /// The node's address (pods' hostIP).
    pub node_ip: String,
    /// Per-pod state and logs (`<pods_dir>/<pod uid>/`).
    pub pods_dir: PathBuf,
    /// Launcher runtime directories, one per VMI uid (the handler finds `launcher.sock` there).
    pub launchers_dir: PathBuf,
    /// The `virt-launcher` binary.
    pub launcher_bin: PathBuf,
    /// The compute-container images this runtime runs as `virt-launcher`.
    pub launcher_images: Vec<String>,
    /// Other images it runs, as local programs (the CDI importer; helper commands in the launcher image).
    pub programs: Vec<Program>,
    /// The image store.
    pub resolve_image: ResolveImage,
    /// The pod network.
    pub cni: cni::Cni,
    /// KVM works here (pods that request `devices.kubevirt.io/kvm` get it).
    pub kvm: bool,
    /// Stable addresses: which pods share an identity, and the node's reservations ([`identity`]).
    pub identity: Option<(identity::IdentityOf, Arc<identity::Reservations>)>,
    /// The cluster DNS pods ask (their `/etc/resolv.conf`, [`dns`]); `None`: the host's resolvers.
    pub dns: Option<dns::ClusterDns>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_name", &self.node_name)
            .field("pods_dir", &self.pods_dir)
            .field("launchers_dir", &self.launchers_dir)
            .field("launcher_bin", &self.launcher_bin)
            .field("kvm", &self.kvm)
            .finish_non_exhaustive()
    }
}

/// The runtime: configuration and API client.
pub(crate) struct Runtime {
    pub(crate) cfg: Config,
    pub(crate) client: kube::Client,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Runs the pods bound to `cfg.node_name` until `stop` is notified. Launchers keep running after it returns.
pub async fn run(client: kube::Client, cfg: Config, stop: Arc<tokio::sync::Notify>) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("pod_runtime", node = %cfg.node_name);
    watch_pods(client, cfg, stop).instrument(span).await;
}

async fn watch_pods(client: kube::Client, cfg: Config, stop: Arc<tokio::sync::Notify>) {
    let _ = std::fs::create_dir_all(&cfg.pods_dir);
    let _ = std::fs::create_dir_all(&cfg.launchers_dir);
    let pods: Api<Pod> = Api::all(client.clone());
    let fields = format!("spec.nodeName={}", cfg.node_name);
    let rt = Arc::new(Runtime { cfg, client });
    let mut stream = kube_support::lean_watch(pods, watcher::Config::default().fields(&fields)).boxed();
    let mut running: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            () = &mut stopped => return,
        };
        let Some(ev) = ev else { return };
        running.retain(|_, tx| !tx.is_closed());
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                listed.insert(uid.clone());
                if let Some(tx) = running.get(&uid) {
                    tx.send_replace(Some(p));
                } else {
                    let (tx, rx) = watch::channel(Some(p));
                    running.insert(uid, tx);
                    tokio::spawn(pod::supervise(rt.clone(), rx));
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(tx) = p.metadata.uid.as_ref().and_then(|u| running.get(u)) {
                    tx.send_replace(None);
                }
            }
            watcher::Event::InitDone => {
                // What is on disk for pods the API no longer has: stop and remove it.
                let dirs = std::fs::read_dir(&rt.cfg.pods_dir)
                    .into_iter()
                    .flatten()
                    .flatten();
                for d in dirs {
                    let uid = d.file_name().to_string_lossy().to_string();
                    if !listed.contains(&uid) && !running.contains_key(&uid) {
                        tokio::spawn(pod::remove_orphan(rt.clone(), uid));
                    }
                }
            }
        }
    }
}
