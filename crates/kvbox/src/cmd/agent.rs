//! `kvbox agent`: another machine (or data dir) joins a box as a node — heartbeat, handler and pod runtime, talking
//! to the `kvbox server` at `--server` with a bearer token, trusting the server's CA (`ca.crt` in its data dir).
//! Like the server's own node, its VMs outlive it and are adopted when it starts again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;

use crate::node::{Node, NodeArgs};

/// Arguments of `kvbox agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's URL (`https://HOST:PORT`, as in its kubeconfig).
    #[arg(long)]
    server: String,
    /// A bearer token the server accepts (its data dir's `admin.token`).
    #[arg(long, conflicts_with = "token_file", required_unless_present = "token_file")]
    token: Option<String>,
    /// A file holding the token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The server's CA certificate (its data dir's `ca.crt`).
    #[arg(long)]
    ca_file: PathBuf,
    /// This node's state: pods, launcher runtime directories, CNI configuration and leases, images.
    #[arg(long, default_value = "/var/lib/kvbox-agent")]
    data_dir: PathBuf,
    /// Do not probe KVM: this node runs guests under TCG only.
    #[arg(long)]
    emulation: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    kube_support::init_tracing("KVBOX_LOG");
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("--token or --token-file is required"),
    };
    let ca = std::fs::read(&args.ca_file).with_context(|| format!("reading {}", args.ca_file.display()))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "kvbox",
        "clusters": [{"name": "kvbox", "cluster": {"server": args.server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&ca)}}],
        "users": [{"name": "agent", "user": {"token": token}}],
        "contexts": [{"name": "kvbox", "context": {"cluster": "kvbox", "user": "agent"}}],
    });
    let kc: kube::config::Kubeconfig =
        serde_json::from_value(kubeconfig).context("building the agent's kubeconfig")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        client
            .apiserver_version()
            .await
            .with_context(|| format!("reaching {}", args.server))?;
        let kvm = crate::node::probe_kvm(args.emulation).await;
        let node = Node::start(&client, &args.node, &args.data_dir, kvm).await?;
        eprintln!("kvbox agent: node {} joined {}", args.node.name(), args.server);
        kube_support::shutdown_signal().await;
        eprintln!("kvbox agent shutting down (running VMs keep running)");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
