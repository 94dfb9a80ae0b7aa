//! `virt-api` for clusters: serves `subresources.kubevirt.io` behind the API server's aggregator (the APIServices
//! `v1.subresources.kubevirt.io` and `v1alpha3.subresources.kubevirt.io` point at its Service). Its serving
//! certificate comes from `--tls-cert-file`/`--tls-key-file` or the install namespace's `kubevirt-virt-api-certs`
//! Secret. (Box mode's `kvbox server` runs the same server in-process.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// Runs virt-api.
#[derive(Debug, Parser)]
#[command(name = "virt-api", version, about)]
struct Args {
    /// A kubeconfig (default: KUBECONFIG, ~/.kube/config or the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: std::net::SocketAddr,
    /// The install namespace (certificates, handler client certificate).
    #[arg(long, env = "NAMESPACE", default_value = "kubevirt")]
    namespace: String,
    /// Serving certificate (PEM); default: Secret `kubevirt-virt-api-certs` in the install namespace.
    #[arg(long, requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    kube_support::main("virt-api", "VIRT_API_LOG", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (client, _) = kube_support::client(args.kubeconfig.as_deref(), None).await?;
    let (cert, key) = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(c), Some(k)) => (
            std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?,
            std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?,
        ),
        _ => {
            let id = handler::certs::load(&client, &args.namespace, "kubevirt-virt-api-certs").await?;
            (id.cert, id.key)
        }
    };
    let rh = virt_api::authn::RequestHeader::load(&client).await?;
    let app = virt_api::app::App::new(client, rh, &args.namespace);
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tokio::select! {
        r = virt_api::server::serve(tcp, app, &cert, &key) => r?,
        () = kube_support::shutdown_signal() => {}
    }
    Ok(())
}
