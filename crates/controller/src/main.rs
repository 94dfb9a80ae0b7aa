//! `virt-controller`: the cluster-wide loops (VMI → launcher pod, VM run strategies, replica sets, node heartbeats)
//! against any Kubernetes API server — a cluster's (in-cluster config or KUBECONFIG) or `kvbox server`'s. Several
//! replicas may run: one leads (Lease `kubevirt/virt-controller`), the others stand by.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// Runs virt-controller.
#[derive(Debug, Parser)]
#[command(name = "virt-controller", version, about)]
struct Args {
    /// A kubeconfig (default: KUBECONFIG, ~/.kube/config or the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// This replica's name in the leader election (default: hostname and pid).
    #[arg(long)]
    identity: Option<String>,
    /// The leader's lease lasts this many seconds without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// The compute image of launcher pods.
    #[arg(long, default_value = "kubevirt-rs/virt-launcher:box")]
    launcher_image: String,
    /// The image of CDI importer pods.
    #[arg(long, default_value = "kubevirt-rs/cdi-importer:box")]
    importer_image: String,
    /// The image of CDI upload server pods.
    #[arg(long, default_value = "kubevirt-rs/cdi-uploadserver:box")]
    upload_image: String,
    /// Seconds without a node heartbeat before its VMIs fail (NodeUnresponsive).
    #[arg(long, default_value_t = 300)]
    node_heartbeat_timeout_seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    kube_support::main("virt-controller", "VIRT_CONTROLLER_LOG", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (client, _) = kube_support::client(args.kubeconfig.as_deref(), None).await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}_{}", host.trim(), std::process::id())
    });
    let cfg = controller::leader_config(&identity, Duration::from_secs(args.lease_duration_seconds));
    let settings = controller::manager::Settings {
        launcher_image: args.launcher_image.clone(),
        importer_image: args.importer_image.clone(),
        upload_image: args.upload_image.clone(),
        node_heartbeat_timeout: Duration::from_secs(args.node_heartbeat_timeout_seconds),
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let signals = {
        let stop = stop.clone();
        async move {
            kube_support::shutdown_signal().await;
            stop.notify_waiters();
        }
    };
    tokio::spawn(signals);
    eprintln!("virt-controller {identity}: waiting to lead");
    kube_support::leader::run_when_leader(client.clone(), cfg, stop, move || {
        controller::manager::run(client.clone(), settings.clone())
    })
    .await;
    Ok(())
}
