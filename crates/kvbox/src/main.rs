//! `kvbox`: the kubevirt-rs all-in-one binary: `server` (the embedded API server), `admit` (offline admission), `crds`, `kubeconfig`, `images`, `agent`.

mod cdi;
mod certs;
mod cmd;
mod dns;
mod images;
mod manifest;
mod node;
mod nodelifecycle;
mod oci;
mod services;
mod storage;
mod virtapi;
mod vmaddress;

/// The install namespace: the KubeVirt CR, the CA and the handler certificates live there.
pub(crate) const KUBEVIRT_NAMESPACE: &str = "kubevirt";

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kubevirt-rs in one binary.
#[derive(Debug, Parser)]
#[command(name = "kvbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run defaulting and validation offline on manifests, as the API server would on `kubectl apply`.
    Admit(cmd::admit::Args),
    /// Print the CustomResourceDefinitions of every kubevirt-rs kind as multi-document YAML.
    Crds,
    /// Run the embedded Kubernetes-compatible API server (HTTPS, token auth, SQLite store).
    Server(cmd::server::Args),
    /// Join a `kvbox server` as an extra node (heartbeat, handler, pod runtime).
    Agent(cmd::agent::Args),
    /// Manage the local image store (containerDisk and kernelBoot images).
    Images(cmd::images::Args),
    /// Issue a client certificate from a server's CA and print a kubeconfig using it.
    Kubeconfig(cmd::kubeconfig::Args),
    /// Load an API server (creates/s, list and watch latency) through kube-rs; see scripts/bench-api.
    BenchApi(cmd::bench_api::Args),
    /// CDI's importer, as box nodes run it in importer pods (settings from upstream's IMPORTER_* environment).
    #[command(hide = true)]
    CdiImporter(cdi::importer::Args),
    /// CDI's upload server, as box nodes run it in upload pods.
    #[command(hide = true)]
    CdiUploadserver(cdi::uploadserver::Args),
}

/// Caps glibc's malloc arenas: by default every thread that allocates may get its own (up to 8 per core), and their
/// fragmented free space is most of a long-running server's anonymous memory. Two arenas cost nothing measurable here.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets an allocator parameter; it is called before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the allocator's free memory back to the OS (glibc keeps freed pages after a burst — a watch storm, a big
/// LIST — for the process's lifetime otherwise). The server calls it every few seconds.
pub(crate) fn trim_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) takes an integer and only touches the allocator's own state, which is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs a pod program (importer, upload server) on a small runtime of its own, logging to stderr (the pod's log).
fn program(run: impl std::future::Future<Output = ExitCode>) -> anyhow::Result<ExitCode> {
    kube_support::init_tracing("IMPORTER_LOG");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(run))
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Admit(args) => cmd::admit::run(&args),
        Command::Crds => cmd::crds::run(),
        Command::Server(args) => cmd::server::run(&args),
        Command::BenchApi(args) => cmd::bench_api::run(&args),
        Command::Kubeconfig(args) => cmd::kubeconfig::run(&args),
        Command::Images(args) => cmd::images::run(&args),
        Command::Agent(args) => cmd::agent::run(&args),
        Command::CdiImporter(args) => program(cdi::importer::run(args)),
        Command::CdiUploadserver(args) => program(cdi::uploadserver::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvbox: {e:#}");
            ExitCode::from(2)
        }
    }
}
