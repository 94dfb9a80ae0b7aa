//! `virt-handler`: one per node on a cluster — registers and heartbeats the node (KVM probed for real), drives
//! the launchers of the VMIs scheduled there and serves virt-api's calls on its TLS endpoint. The kubelet runs the launcher pods; their sockets are found under
//! `--launchers-dir/<vmi uid>/launcher.sock`. (In box mode `kvbox server`/`kvbox agent` run the same code in-process.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// Runs virt-handler for one node.
#[derive(Debug, Parser)]
#[command(name = "virt-handler", version, about)]
struct Args {
    /// A kubeconfig (default: KUBECONFIG, ~/.kube/config or the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The node's address (its InternalIP).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// Where launchers keep their runtime directories, one per VMI uid.
    #[arg(long, default_value = "/var/run/kubevirt-rs/launchers")]
    launchers_dir: PathBuf,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 60)]
    heartbeat_seconds: u64,
    /// Do not probe KVM (guests here run under TCG).
    #[arg(long)]
    emulation: bool,
    /// The port of the TLS endpoint virt-api calls (console, VNC, guest agent, lifecycle), on every address; the
    /// node's `handler.kubevirt-rs.io/endpoint` annotation advertises `--node-ip` with it.
    #[arg(long, default_value_t = 8186)]
    endpoint_port: u16,
    /// The install namespace, holding the KubeVirt CA bundle and the handler's certificates.
    #[arg(long, default_value = "kubevirt")]
    namespace: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    kube_support::main("virt-handler", "VIRT_HANDLER_LOG", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (client, _) = kube_support::client(args.kubeconfig.as_deref(), None).await?;
    let kvm = if args.emulation {
        false
    } else {
        let p = handler::kvm::probe(std::path::Path::new("qemu-system-x86_64"), Duration::from_secs(5)).await;
        eprintln!(
            "virt-handler: KVM {}",
            if p.usable {
                "usable".to_string()
            } else {
                format!("not usable: {}", p.reason)
            }
        );
        p.usable
    };
    std::fs::create_dir_all(&args.launchers_dir)
        .with_context(|| format!("creating {}", args.launchers_dir.display()))?;
    let tcp = tokio::net::TcpListener::bind(("0.0.0.0", args.endpoint_port))
        .await
        .with_context(|| format!("binding the endpoint on port {}", args.endpoint_port))?;
    let mut spec = handler::node::NodeSpec::local(
        &args.node_name,
        kvm,
        &args.node_ip,
        Duration::from_secs(args.heartbeat_seconds),
    );
    spec.endpoint = Some(format!("{}:{}", args.node_ip, tcp.local_addr()?.port()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let (ctx, kicks) =
        handler::vmi::Ctx::new(client.clone(), args.node_name.clone(), args.launchers_dir.clone());
    let endpoint = handler::server::Endpoint::new(ctx.clone(), Duration::from_secs(20));
    let server = tokio::spawn(handler::server::run(tcp, endpoint, args.namespace.clone()));
    let heartbeat = tokio::spawn(handler::node::run(client, spec, stop.clone()));
    let vmis = tokio::spawn(handler::vmi::run(ctx, kicks));
    kube_support::shutdown_signal().await;
    stop.notify_waiters();
    vmis.abort();
    server.abort();
    let _ = heartbeat.await;
    Ok(())
}
