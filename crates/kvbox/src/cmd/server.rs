//! `kvbox server`: the embedded API server, virt-controller's loops, the box scheduler and (unless `--no-node`)
//! this machine as a node — heartbeat, handler, pod runtime, service proxy — plus the endpoints controller, in the foreground until SIGTERM or Ctrl-C. Running
//! VMs outlive the server (like containers outlive a kubelet) and are adopted when it starts again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::node::{LAUNCHER_IMAGE, NodeArgs, parse_duration};

/// Arguments of `kvbox server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory for the SQLite store, certificates, tokens and kubeconfigs (created 0700; reused on restart).
    #[arg(long, default_value = "/var/lib/kvbox")]
    data_dir: PathBuf,
    /// Address to listen on (HTTPS). Port 0 picks a free port; the kubeconfig records the real one.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The range Services get their cluster IPs from (the node's service proxy routes them to the pods).
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: apiserver::services::ServiceRange,
    /// Run every guest under QEMU's software emulation (TCG): sets `useEmulation` in the KubeVirt CR, for machines
    /// without a usable KVM.
    #[arg(long)]
    emulation: bool,
    /// A node whose handler has not refreshed `kubevirt.io/heartbeat` for this long (e.g. 5m, 30s) is marked
    /// unschedulable and its VMIs fail with NodeUnresponsive.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    node_heartbeat_timeout: std::time::Duration,
    /// Run only the control plane (API server, controllers, scheduler): this machine is not a node. VMs then run
    /// on `kvbox agent` nodes.
    #[arg(long)]
    no_node: bool,
    /// Do not run virt-controller's loops here (run `virt-controller` replicas against this server instead).
    #[arg(long)]
    no_controllers: bool,
    /// Where CDI's upload proxy listens (HTTPS; port 0 picks a free one). CDIConfig `config` says where it is, so
    /// `virtctl image-upload` finds it.
    #[arg(long, default_value = "127.0.0.1:0")]
    upload_proxy_listen: String,
    #[command(flatten)]
    node: NodeArgs,
}

/// Creates the `kubevirt` namespace and the default KubeVirt CR at first start; `--emulation` switches on
/// `developerConfiguration.useEmulation` (also in an existing CR).
async fn ensure_kubevirt_cr(client: &kube::Client, emulation: bool, kvm: bool) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use kubevirt_api::v1::KubeVirt;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt("kubevirt").await?.is_none() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "kubevirt"}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let kvs: Api<KubeVirt> = Api::namespaced(client.clone(), "kubevirt");
    match kvs.get_opt("kubevirt").await? {
        None => {
            let kv: KubeVirt = serde_json::from_value(serde_json::json!({
                "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                "spec": {"configuration": {"developerConfiguration": {"useEmulation": emulation || !kvm}}},
            }))?;
            kvs.create(&PostParams::default(), &kv).await?;
        }
        Some(_) if emulation => {
            let patch = serde_json::json!({"spec": {"configuration": {"developerConfiguration": {"useEmulation": true}}}});
            kvs.patch("kubevirt", &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Some(_) => {}
    }
    Ok(())
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    kube_support::init_tracing("KVBOX_LOG");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let config = apiserver::server::ServerConfig {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            service_range: args.service_cidr,
        };
        let running = apiserver::server::start(&config)
            .await
            .context("starting the API server")?;
        eprintln!(
            "kvbox server ready on https://{} (kubeconfig: {}, read-only: {})",
            running.addr,
            running.kubeconfig.display(),
            running.kubeconfig_view.display()
        );
        // Box-mode components talk to the API server as any client would: through kube-rs and the admin kubeconfig.
        let (client, _) = kube_support::client(Some(&running.kubeconfig), None)
            .await
            .context("the admin kubeconfig")?;
        // A machine without a usable KVM falls back to TCG: the first start records useEmulation in the CR.
        let kvm = if args.no_node {
            true
        } else {
            crate::node::probe_kvm(args.emulation).await
        };
        ensure_kubevirt_cr(&client, args.emulation, kvm)
            .await
            .context("creating the default KubeVirt CR")?;
        crate::certs::ensure(&client, crate::KUBEVIRT_NAMESPACE)
            .await
            .context("creating the KubeVirt CA and the handler certificates")?;
        // KubeVirt's components act as upstream's service accounts, so admission tells their writes from users'
        // (only they may change a VMI's spec) as upstream's webhooks do.
        let as_controller = component_client(&args.data_dir, "kubevirt-controller").await?;
        let as_handler = component_client(&args.data_dir, "kubevirt-handler").await?;
        let as_virt_api = component_client(&args.data_dir, "kubevirt-apiserver").await?;
        let virt_api = crate::virtapi::start(&as_virt_api)
            .await
            .context("starting virt-api")?;
        let upload_proxy = crate::cdi::uploadproxy::start(&client, &args.upload_proxy_listen)
            .await
            .context("starting the upload proxy")?;
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let scheduler = tokio::spawn(scheduler::binder::run(client.clone(), stop.clone()));
        // kube-controller-manager's endpoints controller, which box mode's Services need.
        let endpoints = tokio::spawn(crate::services::endpoints_controller(
            client.clone(),
            stop.clone(),
        ));
        // ... and its node lifecycle controller (condition taints; the not-ready one every new node starts with).
        let lifecycle = tokio::spawn(crate::nodelifecycle::run(client.clone(), stop.clone()));
        // ... and its volume controllers, with box mode's default StorageClass.
        crate::storage::ensure_default_class(&client)
            .await
            .context("creating the default StorageClass")?;
        let volumes = tokio::spawn(crate::storage::controllers(client.clone(), stop.clone()));
        // virt-controller's loops, under the same leader election as standalone virt-controller replicas.
        let controllers = (!args.no_controllers).then(|| {
            let identity = format!("kvbox-{}", std::process::id());
            let cfg = controller::leader_config(&identity, std::time::Duration::from_secs(15));
            let settings = controller::manager::Settings {
                launcher_image: LAUNCHER_IMAGE.into(),
                importer_image: crate::node::IMPORTER_IMAGE.into(),
                upload_image: crate::node::UPLOAD_IMAGE.into(),
                node_heartbeat_timeout: args.node_heartbeat_timeout,
            };
            let c = as_controller.clone();
            tokio::spawn(kube_support::leader::run_when_leader(
                as_controller.clone(),
                cfg,
                stop.clone(),
                move || controller::manager::run(c.clone(), settings.clone()),
            ))
        });
        let node = if args.no_node {
            None
        } else {
            let node = crate::node::Node::start(&as_handler, &args.node, &args.data_dir, kvm).await?;
            eprintln!(
                "kvbox node {} running (pods in {})",
                args.node.name(),
                args.data_dir.join("pods").display()
            );
            Some(node)
        };
        let trimmer = tokio::spawn(async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                crate::trim_malloc();
            }
        });
        kube_support::shutdown_signal().await;
        eprintln!("kvbox server shutting down");
        trimmer.abort();
        virt_api.abort();
        upload_proxy.abort();
        endpoints.abort();
        lifecycle.abort();
        volumes.abort();
        stop.notify_waiters();
        if let Some(node) = node {
            node.shutdown().await;
        }
        let _ = scheduler.await;
        if let Some(c) = controllers {
            let _ = c.await;
        }
        running.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// A client for one of KubeVirt's service accounts in the box: a client certificate from the server's CA naming
/// the account (in `system:masters` until RBAC is enforced).
async fn component_client(data_dir: &std::path::Path, account: &str) -> anyhow::Result<kube::Client> {
    let ns = crate::KUBEVIRT_NAMESPACE;
    let groups = ["system:masters".to_string(), "system:serviceaccounts".to_string()];
    let user = format!("system:serviceaccount:{ns}:{account}");
    let text = apiserver::pki::client_kubeconfig(data_dir, &user, &groups, 365)
        .with_context(|| format!("issuing {account}'s certificate"))?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).context("reading a component kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
