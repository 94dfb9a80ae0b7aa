//! `virt-launcher`: runs one VMI under QEMU.
//!
//! ```text
//! virt-launcher --vmi FILE [--emulation|--accel kvm|tcg] [--runtime-dir DIR] [--volume-source NAME=PATH]...
//!               [--tap IFACE=TAP]... [--kernel-boot-root DIR] [--print-argv | --domain-json]
//! ```
//! `--print-argv` prints the QEMU command line (one argument per line) and `--domain-json` the Domain, both
//! without touching the disk. Otherwise the volumes are prepared, QEMU starts, the command socket
//! (`<runtime>/launcher.sock`), serial console (`serial.sock`, logged to `serial.log`) and VNC (`vnc.sock`) are
//! served, and the launcher runs until QEMU exits; Ctrl-C or SIGTERM shuts the guest down gracefully (ACPI, then
//! kill after the VMI's terminationGracePeriodSeconds). Exit status: 0 the guest shut down (Succeeded),
//! 1 it crashed or QEMU died (Failed), 2 the VMI could not be started.
//!
//! A VMI without `metadata.uid` (a file a user wrote, not one from an API server) goes through the same defaults
//! and validation as `kubectl apply` first.

use launcher::{api, prepare, vm};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_domain::{Accel, NicBackend, NodeFacts, Ovmf, ResolvedVolume};
use launcher_protocol::network::PlumbedInterface;

/// Runs one VMI under QEMU.
#[derive(Debug, Parser)]
#[command(name = "virt-launcher", version, about)]
struct Args {
    /// The VirtualMachineInstance (YAML or JSON). Without it the launcher waits on its command socket for the node
    /// agent's first Sync (then --runtime-dir is required).
    #[arg(long, required_if_eq_any([("print_argv", "true"), ("domain_json", "true")]))]
    vmi: Option<PathBuf>,
    /// Use QEMU's software emulation (TCG), as `developerConfiguration.useEmulation` does.
    #[arg(long)]
    emulation: bool,
    /// Accelerator: `kvm` or `tcg` (default tcg; the node agent passes kvm once its probe found KVM usable).
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Runtime directory for sockets, overlays and logs (default: a directory under /tmp named after the VMI).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// NAME=PATH: the local image, PVC directory or block device, or data directory of volume NAME.
    #[arg(long = "volume-source", value_name = "NAME=PATH")]
    volume_sources: Vec<String>,
    /// The directory standing for the container's filesystem (the box pod runtime's mounts): Secret, ConfigMap and
    /// downward-API volumes are looked up under it at upstream's paths unless given with --volume-source.
    #[arg(long)]
    mount_root: Option<PathBuf>,
    /// IFACE=TAP: attach interface IFACE to the existing tap device TAP.
    #[arg(long = "tap", value_name = "IFACE=TAP")]
    taps: Vec<String>,
    /// The directory holding the kernelBoot container's files (its kernelPath/initrdPath are inside it).
    #[arg(long)]
    kernel_boot_root: Option<PathBuf>,
    /// Print the QEMU command line and exit.
    #[arg(long, conflicts_with = "domain_json")]
    print_argv: bool,
    /// Print the Domain as JSON and exit.
    #[arg(long)]
    domain_json: bool,
    /// Print `bound PVCs` and exit: the command of the placeholder pod virt-controller schedules so that a VMI's
    /// WaitForFirstConsumer claims get a node (upstream's runs `echo "bound PVCs"` in the launcher image).
    #[arg(long)]
    bound_pvcs: bool,
}

fn pairs(list: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{what} {s:?}: expected NAME=VALUE"))
        })
        .collect()
}

fn load_vmi(path: &Path) -> anyhow::Result<VirtualMachineInstance> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if value.pointer("/metadata/uid").is_some() {
        return serde_json::from_value(value)
            .with_context(|| format!("{}: not a VirtualMachineInstance", path.display()));
    }
    let obj = kubevirt_api::Object::from_value(value).with_context(|| format!("{}", path.display()))?;
    if !matches!(obj, kubevirt_api::Object::Vmi(_)) {
        bail!("{}: not a VirtualMachineInstance", path.display());
    }
    let now = k8s_now();
    let mut ids = || uuid_v4();
    match kubevirt_api::admission::Cluster::default().admit(obj, now, &mut ids) {
        kubevirt_api::admission::Outcome::Admitted { object, .. } => {
            let mut vmi: VirtualMachineInstance = serde_json::from_value(object)?;
            vmi.metadata.uid = Some(uuid_v4());
            vmi.metadata.namespace.get_or_insert_with(|| "default".into());
            Ok(vmi)
        }
        kubevirt_api::admission::Outcome::Invalid(causes) => {
            let lines: Vec<String> = causes
                .iter()
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.field.as_deref().unwrap_or_default(),
                        c.message.as_deref().unwrap_or_default()
                    )
                })
                .collect();
            bail!("the VMI is invalid:\n{}", lines.join("\n"))
        }
        kubevirt_api::admission::Outcome::BadRequest(m) => bail!("{m}"),
    }
}

fn k8s_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAUNCHER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if args.bound_pvcs {
        println!("bound PVCs");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("virt-launcher: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("virt-launcher: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where volume data comes from: `--volume-source` pairs, then the pod's mounts under `--mount-root`.
#[derive(Clone, Debug, Default)]
struct Sources {
    explicit: BTreeMap<String, PathBuf>,
    mount_root: Option<PathBuf>,
}

impl Sources {
    fn for_vmi(&self, vmi: &VirtualMachineInstance) -> BTreeMap<String, PathBuf> {
        let mut all = self
            .mount_root
            .as_deref()
            .map(|root| launcher_domain::volumes::pod_sources(vmi, root))
            .unwrap_or_default();
        all.extend(self.explicit.clone());
        all
    }
}

fn facts_of(args: &Args, runtime: &Path) -> anyhow::Result<(NodeFacts, Sources)> {
    let accel = match (args.emulation, args.accel.as_str()) {
        (true, _) | (false, "tcg") => Accel::Tcg,
        (false, "kvm") => Accel::Kvm,
        (false, other) => bail!("--accel {other:?}: expected kvm or tcg"),
    };
    let sources: BTreeMap<String, PathBuf> = pairs(&args.volume_sources, "--volume-source")?
        .into_iter()
        .map(|(k, v)| (k, PathBuf::from(v)))
        .collect();
    let facts = NodeFacts {
        accel,
        ovmf: Ovmf::default(),
        runtime_dir: runtime.to_path_buf(),
        nics: pairs(&args.taps, "--tap")?
            .into_iter()
            .map(|(iface, tap)| (iface, NicBackend::tap(&tap)))
            .collect(),
        vhost_net: launcher::network::vhost_net_opens(),
        kernel_boot_root: args.kernel_boot_root.clone(),
    };
    Ok((
        facts,
        Sources {
            explicit: sources,
            mount_root: args.mount_root.clone(),
        },
    ))
}

fn print(
    vmi: &VirtualMachineInstance,
    facts: &NodeFacts,
    sources: &Sources,
    argv: bool,
) -> anyhow::Result<()> {
    let plan = launcher_domain::volumes::plan(vmi, &facts.runtime_dir, &sources.for_vmi(vmi))?;
    let planned: BTreeMap<String, ResolvedVolume> = plan
        .iter()
        .map(|p| (p.name.clone(), p.resolved.clone()))
        .collect();
    let domain = launcher_domain::build(vmi, facts, &planned)?;
    let mut text = String::new();
    if argv {
        let cmd =
            launcher_qemu::render(&domain, &facts.runtime_dir, now_unix()).map_err(anyhow::Error::msg)?;
        for (k, v) in &cmd.env {
            text.push_str(&format!("{k}={v}\n"));
        }
        text.push_str(&format!("{}\n", cmd.program.display()));
        for a in &cmd.args {
            text.push_str(a);
            text.push('\n');
        }
    } else {
        text = serde_json::to_string_pretty(&domain)? + "\n";
    }
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(())
}

/// Plans, prepares and starts `vmi` on the network the node plumbed (its DHCP servers first); on failure removes
/// what it made.
async fn start_vm(
    vmi: &VirtualMachineInstance,
    network: &[PlumbedInterface],
    facts: &NodeFacts,
    sources: &Sources,
) -> anyhow::Result<api::Running> {
    let mut facts = facts.clone();
    facts.nics.extend(launcher::network::backends(network));
    let facts = &facts;
    let runtime = &facts.runtime_dir;
    let all_sources = sources.for_vmi(vmi);
    let plan = launcher_domain::volumes::plan(vmi, runtime, &all_sources)?;
    let planned: BTreeMap<String, ResolvedVolume> = plan
        .iter()
        .map(|p| (p.name.clone(), p.resolved.clone()))
        .collect();
    let credentials = launcher_domain::credentials::agent_credentials(vmi, &all_sources);
    // Refuse what the Domain cannot express before preparing anything.
    launcher_domain::build(vmi, facts, &planned)?;
    std::fs::create_dir_all(runtime).with_context(|| format!("creating {}", runtime.display()))?;
    let started = async {
        let mut volumes = BTreeMap::new();
        for p in &plan {
            volumes.insert(p.name.clone(), prepare::prepare(p)?);
        }
        let domain = launcher_domain::build(vmi, facts, &volumes)?;
        let resolv = launcher::network::resolv_conf(sources.mount_root.as_deref());
        let dhcp = launcher::network::start_dhcp(vmi, network, &resolv).map_err(anyhow::Error::msg)?;
        let vm = vm::Vm::start(domain, runtime, now_unix(), credentials).await?;
        let rebuild: api::Rebuild = {
            let (facts, volumes) = (facts.clone(), volumes.clone());
            Arc::new(move |v: &VirtualMachineInstance, network: &[PlumbedInterface]| {
                let mut facts = facts.clone();
                facts.nics.extend(launcher::network::backends(network));
                launcher_domain::build(v, &facts, &volumes).map_err(|e| e.to_string())
            })
        };
        anyhow::Ok(api::Running {
            vm,
            rebuild,
            grace: grace_of(vmi),
            dhcp: Arc::new(dhcp),
            plugged_dhcp: Arc::default(),
            resolv: Arc::new(resolv),
        })
    }
    .await;
    if started.is_err() {
        cleanup(runtime);
    }
    started
}

fn grace_of(vmi: &VirtualMachineInstance) -> Duration {
    Duration::from_secs(
        vmi.spec
            .termination_grace_period_seconds
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(30),
    )
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let vmi = args.vmi.as_deref().map(load_vmi).transpose()?;
    let runtime = match (&args.runtime_dir, &vmi) {
        (Some(d), _) => d.clone(),
        (None, Some(vmi)) => std::env::temp_dir().join(format!(
            "virt-launcher-{}_{}",
            vmi.metadata.namespace.as_deref().unwrap_or("default"),
            vmi.metadata.name.as_deref().unwrap_or_default()
        )),
        (None, None) => {
            bail!("without --vmi, --runtime-dir is required (the node agent connects to its launcher.sock)")
        }
    };
    let (facts, sources) = facts_of(&args, &runtime)?;
    if args.print_argv || args.domain_json {
        if let Some(vmi) = &vmi {
            print(vmi, &facts, &sources, args.print_argv)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let served = match &vmi {
        Some(vmi) => api::Served::running(start_vm(vmi, &[], &facts, &sources).await?),
        None => {
            std::fs::create_dir_all(&runtime).with_context(|| format!("creating {}", runtime.display()))?;
            let start: api::Start = Arc::new(
                move |vmi: VirtualMachineInstance, network: Vec<PlumbedInterface>| {
                    let (facts, sources) = (facts.clone(), sources.clone());
                    Box::pin(async move {
                        start_vm(&vmi, &network, &facts, &sources)
                            .await
                            .map_err(|e| format!("{e:#}"))
                    })
                },
            );
            api::Served::waiting(start)
        }
    };
    let sock = launcher_protocol::socket(&runtime);
    api::serve(&sock, served.clone()).with_context(|| format!("serving {}", sock.display()))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = tokio::select! {
        started = served.started() => match started {
            Ok(running) => running,
            Err(why) => {
                // A VMI that cannot start ends its launcher (exit 2) once the agent has its answer, as a failed
                // container would: the pod fails and the VM's crash-loop backoff takes over.
                eprintln!("virt-launcher: the VMI could not be started: {why}");
                tokio::time::sleep(Duration::from_millis(300)).await;
                let end = vm::DomainState::Crashed(format!("failed to start: {why}"));
                let _ = launcher_protocol::write_final_state(&runtime, &end);
                cleanup(&runtime);
                return Ok(ExitCode::from(2));
            }
        },
        _ = tokio::signal::ctrl_c() => { cleanup(&runtime); return Ok(ExitCode::SUCCESS); }
        _ = term.recv() => { cleanup(&runtime); return Ok(ExitCode::SUCCESS); }
    };
    let (vm, grace) = (running.vm, running.grace);
    eprintln!(
        "virt-launcher: {} {:?}; runtime {}",
        vm.domain.name,
        vm.state(),
        runtime.display()
    );
    let stop = {
        let vm = vm.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("virt-launcher: shutting down (grace period {}s)", grace.as_secs());
            vm.shutdown(grace).await;
            std::future::pending::<()>().await;
        }
    };
    let end = tokio::select! {
        s = vm.wait() => s,
        () = stop => vm.state(),
    };
    eprintln!("virt-launcher: {} {:?}", vm.domain.name, end);
    // The node agent reads how the domain ended even if it was not connected when it did.
    let _ = launcher_protocol::write_final_state(&runtime, &end);
    cleanup(&runtime);
    Ok(match end {
        vm::DomainState::Shutoff(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// Removes what the launcher made (overlays, ISOs, sockets); keeps the logs.
fn cleanup(runtime: &Path) {
    for d in ["disks", "empty-disks", "cloud-init", "config"] {
        let _ = std::fs::remove_dir_all(runtime.join(d));
    }
    for f in [
        "qmp.sock",
        "serial.sock",
        "vnc.sock",
        "qga.sock",
        launcher_protocol::SOCKET,
        "efi-vars.fd",
    ] {
        let _ = std::fs::remove_file(runtime.join(f));
    }
}
