//! The handler's node: registered (created or labelled) with what virt-handler and a kubelet would publish —
//! `kubevirt.io/schedulable`, arch/os/hostname labels, allocatable cpu/memory/pods and the KubeVirt device resources
//! (`devices.kubevirt.io/kvm` only when the KVM probe passed) — then kept alive by a heartbeat: the
//! `kubevirt.io/heartbeat` annotation and the Ready condition, refreshed every interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The heartbeat annotation (read by virt-controller's node watch).
pub const HEARTBEAT: &str = "kubevirt.io/heartbeat";

/// The annotation with the address of the node's handler endpoint (`host:port`), where virt-api reaches it.
pub const ENDPOINT: &str = "handler.kubevirt-rs.io/endpoint";

/// What the node advertises.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Guests can use KVM here.
    pub kvm: bool,
    /// Allocatable CPUs (cores).
    pub cpus: u64,
    /// Allocatable memory in bytes.
    pub memory: u64,
    /// The node's address (its InternalIP).
    pub address: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Where the handler's endpoint listens (`host:port`), published as [`ENDPOINT`].
    pub endpoint: Option<String>,
    /// The node's pod network (`spec.podCIDR`), when this agent is also the node's kubelet (box mode).
    pub pod_cidr: Option<String>,
}

impl NodeSpec {
    /// This machine's CPUs and memory (from the OS), for `name`.
    #[must_use]
    pub fn local(name: &str, kvm: bool, address: &str, heartbeat: Duration) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        Self {
            name: name.into(),
            kvm,
            cpus,
            memory,
            address: address.into(),
            heartbeat,
            endpoint: None,
            pod_cidr: None,
        }
    }

    fn labels(&self, schedulable: bool) -> BTreeMap<String, String> {
        [
            ("kubevirt.io/schedulable", schedulable.to_string()),
            (
                "kubernetes.io/arch",
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            ),
            ("kubernetes.io/os", "linux".into()),
            ("kubernetes.io/hostname", self.name.clone()),
            ("kubevirt.io/ksm-enabled", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn annotations(&self, now: &str) -> Value {
        let mut a = json!({HEARTBEAT: now});
        if let Some(e) = &self.endpoint {
            a[ENDPOINT] = json!(e);
        }
        a
    }

    fn resources(&self) -> Value {
        let mut r = json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory / 1024),
            "pods": "110",
            "devices.kubevirt.io/tun": "1k",
            "devices.kubevirt.io/vhost-net": "1k",
        });
        if self.kvm {
            r["devices.kubevirt.io/kvm"] = json!("1k");
        }
        r
    }

    fn status(&self, now: &str) -> Value {
        json!({
            "capacity": self.resources(),
            "allocatable": self.resources(),
            "addresses": [{"type": "InternalIP", "address": self.address}, {"type": "Hostname", "address": self.name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kvbox pod runtime and virt-handler are running",
                "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"architecture": self.labels(true)["kubernetes.io/arch"], "operatingSystem": "linux",
                "kubeletVersion": concat!("kvbox-", env!("CARGO_PKG_VERSION")), "containerRuntimeVersion": "kvbox://launcher",
                "kernelVersion": "", "osImage": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        })
    }
}

fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Creates the node or brings an existing one up to date (labels, heartbeat, status).
///
/// # Errors
/// The API refused.
pub async fn register(client: &kube::Client, spec: &NodeSpec) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = now();
    let node_spec = match &spec.pod_cidr {
        // A dual-stack node's `v4,v6`: podCIDR is the first.
        Some(c) => {
            let all: Vec<&str> = c.split(',').map(str::trim).collect();
            json!({"podCIDR": all[0], "podCIDRs": all})
        }
        None => json!({}),
    };
    if nodes.get_opt(&spec.name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": spec.name, "labels": spec.labels(true), "annotations": spec.annotations(&now)},
            "spec": node_spec,
        }))
        .map_err(kube::Error::SerdeError)?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let mut patch = json!({"metadata": {"labels": spec.labels(true), "annotations": spec.annotations(&now)}});
    if spec.pod_cidr.is_some() {
        patch["spec"] = node_spec;
    }
    nodes
        .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": spec.status(&now)})),
        )
        .await?;
    Ok(())
}

/// One heartbeat: the annotation, the schedulable label (back to true once the node answers again) and the Ready
/// condition's time.
///
/// # Errors
/// The API refused.
pub async fn beat(client: &kube::Client, spec: &NodeSpec) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = now();
    let patch = json!({"metadata": {"annotations": {HEARTBEAT: now},
        "labels": {"kubevirt.io/schedulable": "true"}}});
    nodes
        .patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": spec.status(&now)["conditions"]}})),
        )
        .await?;
    Ok(())
}

/// Registers the node, then heartbeats until `stop` is notified (errors are logged and retried).
pub async fn run(client: kube::Client, spec: NodeSpec, stop: Arc<tokio::sync::Notify>) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("node", node = %spec.name);
    heartbeat(client, spec, stop).instrument(span).await;
}

async fn heartbeat(client: kube::Client, spec: NodeSpec, stop: Arc<tokio::sync::Notify>) {
    let mut registered = false;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    loop {
        let r = if registered {
            beat(&client, &spec).await
        } else {
            register(&client, &spec).await
        };
        match r {
            Ok(()) => registered = true,
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
        let wait = if registered {
            spec.heartbeat
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stopped => return,
        }
    }
}
