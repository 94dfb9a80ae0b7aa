//! The node side of box mode, shared by `kvbox server` (its local node) and `kvbox agent` (extra nodes): the node
//! registration and heartbeat, the handler's VMI loop, the pod runtime, the service proxy, the cluster DNS and the
//! local volume provisioner, all in this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::images;

/// The image box mode's launcher pods name: the pod runtime runs its own `virt-launcher` for it.
pub(crate) const LAUNCHER_IMAGE: &str = "kubevirt-rs/virt-launcher:box";
/// The CDI importer image: box nodes run it as `kvbox cdi-importer`.
pub(crate) const IMPORTER_IMAGE: &str = "kubevirt-rs/cdi-importer:box";
/// The CDI upload server image: box nodes run it as `kvbox cdi-uploadserver`.
pub(crate) const UPLOAD_IMAGE: &str = "kubevirt-rs/cdi-uploadserver:box";

/// Options of a box node.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// The name this machine registers as (default: its hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address, reported as its InternalIP and its pods' hostIP.
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// The pods' subnet (CNI host-local range); each node of a box needs its own. `IPv4,IPv6` (e.g.
    /// `10.244.0.0/24,fd00:10:244::/64`) makes pods dual-stack.
    #[arg(long, default_value = "10.244.0.0/24")]
    pod_cidr: String,
    /// The Linux bridge the CNI bridge plugin attaches pods to.
    #[arg(long, default_value = "kvbox0")]
    cni_bridge: String,
    /// Where the standard CNI plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    /// The virt-launcher binary (default: the one beside this kvbox).
    #[arg(long)]
    launcher_bin: Option<PathBuf>,
    /// How often the handler refreshes the node's `kubevirt.io/heartbeat` (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// The port of the handler's TLS endpoint on the node address (virt-api's console, VNC, guest-agent and
    /// lifecycle calls); 0 picks a free one. The node's `handler.kubevirt-rs.io/endpoint` annotation says where.
    #[arg(long, default_value_t = 0)]
    handler_port: u16,
    /// The cluster domain the node's DNS server answers for (`SVC.NS.svc.DOMAIN`), as the kubelet's
    /// `clusterDomain`.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Where the node's DNS server sends names outside the cluster domain (comma-separated `IP` or `IP:PORT`;
    /// default: the name servers of the host's /etc/resolv.conf).
    #[arg(long, value_delimiter = ',', value_parser = parse_upstream)]
    dns_upstream: Vec<std::net::SocketAddr>,
}

fn parse_upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{s:?}: expected an IP address or IP:PORT"))
}

/// The first address of `cidr` (`10.244.0.0/24` → `10.244.0.1`): the CNI bridge's gateway, where the node's DNS
/// server listens.
fn gateway(cidrs: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let v4 = cidrs
        .split(',')
        .map(str::trim)
        .find(|c| !c.contains(':'))
        .unwrap_or_default();
    let net: std::net::Ipv4Addr = v4
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| {
            format!("--pod-cidr {cidrs:?}: expected an IPv4 CIDR (then an optional IPv6 one)")
        })?;
    Ok(std::net::Ipv4Addr::from(u32::from(net) + 1))
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m or h"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (s, m or h)")),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kvbox".into())
}

impl NodeArgs {
    /// The node's name.
    pub(crate) fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(hostname)
    }
}

/// Probes KVM unless `emulation` makes it moot; prints what it found.
pub(crate) async fn probe_kvm(emulation: bool) -> bool {
    if emulation {
        return false;
    }
    let p = handler::kvm::probe(Path::new("qemu-system-x86_64"), Duration::from_secs(5)).await;
    if p.usable {
        eprintln!("kvbox: KVM is usable: guests run with hardware acceleration");
    } else {
        eprintln!(
            "kvbox: KVM is not usable here ({}); guests need TCG (useEmulation)",
            p.reason
        );
    }
    p.usable
}

/// The running node side.
pub(crate) struct Node {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<tokio::sync::Notify>,
    /// The service proxy's nftables table.
    table: String,
}

impl Node {
    /// Starts the heartbeat, the handler (its VMI loop and endpoint) and the pod runtime for this machine, keeping
    /// state under `data_dir`.
    pub(crate) async fn start(
        client: &kube::Client,
        args: &NodeArgs,
        data_dir: &Path,
        kvm: bool,
    ) -> anyhow::Result<Self> {
        let name = args.name();
        let stop = Arc::new(tokio::sync::Notify::new());
        let table = format!("kvbox-svc-{}", args.cni_bridge);
        let launcher_bin = match &args.launcher_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("locating kvbox")?
                .with_file_name("virt-launcher"),
        };
        if !launcher_bin.exists() {
            anyhow::bail!(
                "{} not found: build it (cargo build -p launcher) or pass --launcher-bin",
                launcher_bin.display()
            );
        }
        let cni_dir = data_dir.join("cni");
        let cni = podruntime::cni::Cni::init(
            &args.cni_bin_dir,
            &cni_dir.join("net.d").join("10-kvbox.conf"),
            &args.cni_bridge,
            &args.pod_cidr,
            &cni_dir.join("ipam"),
        )?;
        if !args.cni_bin_dir.join("bridge").exists() {
            anyhow::bail!(
                "no CNI bridge plugin in {} (install containernetworking-plugins)",
                args.cni_bin_dir.display()
            );
        }
        let store = images::Store::new(data_dir);
        let resolve: podruntime::ResolveImage = Arc::new(move |image: &str, how| {
            match how {
                podruntime::ImageUse::Disk => store.resolve(image),
                podruntime::ImageUse::Files => store.resolve_files(image),
            }
            .map_err(|e| e.to_string())
        });
        let domain = args.cluster_domain.trim_matches('.').to_lowercase();
        let dns_addr = gateway(&args.pod_cidr)?;
        let dns = crate::dns::Settings {
            addr: dns_addr,
            domain,
            upstream: if args.dns_upstream.is_empty() {
                crate::dns::host_resolvers(dns_addr)
            } else {
                args.dns_upstream.clone()
            },
        };
        let launchers_dir = data_dir.join("launchers");
        let reservations = Arc::new(podruntime::identity::Reservations::new(
            cni_dir.join("reservations.json"),
            cni_dir.join("ipam").join(cni.network_name()?),
        ));
        let cfg = podruntime::Config {
            node_name: name.clone(),
            node_ip: args.node_ip.clone(),
            pods_dir: data_dir.join("pods"),
            launchers_dir: launchers_dir.clone(),
            programs: vec![
                podruntime::Program {
                    image: IMPORTER_IMAGE.into(),
                    bin: std::env::current_exe().context("locating kvbox")?,
                    args: vec!["cdi-importer".into()],
                },
                podruntime::Program {
                    image: UPLOAD_IMAGE.into(),
                    bin: std::env::current_exe().context("locating kvbox")?,
                    args: vec!["cdi-uploadserver".into()],
                },
                // The launcher image's helper commands (the WaitForFirstConsumer placeholder pod).
                podruntime::Program {
                    image: LAUNCHER_IMAGE.into(),
                    bin: launcher_bin.clone(),
                    args: Vec::new(),
                },
            ],
            launcher_bin,
            launcher_images: vec![LAUNCHER_IMAGE.into()],
            resolve_image: resolve,
            cni,
            kvm,
            identity: Some((
                crate::vmaddress::identity_of(client.clone()),
                reservations.clone(),
            )),
            dns: Some(podruntime::dns::ClusterDns {
                servers: vec![dns.addr.to_string()],
                domain: dns.domain.clone(),
            }),
        };
        let listen = format!("{}:{}", args.node_ip, args.handler_port);
        let tcp = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding the handler endpoint on {listen}"))?;
        let mut spec = handler::node::NodeSpec::local(&name, kvm, &args.node_ip, args.heartbeat_interval);
        spec.endpoint = Some(tcp.local_addr()?.to_string());
        spec.pod_cidr = Some(args.pod_cidr.clone());
        let (ctx, kicks) = handler::vmi::Ctx::new(client.clone(), name, launchers_dir);
        let endpoint = handler::server::Endpoint::new(ctx.clone(), Duration::from_secs(20));
        let (caches, mirrors) = crate::services::Caches::start(client);
        let mut tasks = vec![
            tokio::spawn(handler::node::run(client.clone(), spec, stop.clone())),
            tokio::spawn(podruntime::run(client.clone(), cfg, stop.clone())),
            tokio::spawn(crate::vmaddress::release_deleted(client.clone(), reservations)),
            tokio::spawn(handler::vmi::run(ctx, kicks)),
            tokio::spawn(handler::server::run(
                tcp,
                endpoint,
                crate::KUBEVIRT_NAMESPACE.into(),
            )),
            tokio::spawn(crate::services::proxy(
                caches.clone(),
                table.clone(),
                args.node_ip.clone(),
                stop.clone(),
            )),
        ];
        tasks.extend(mirrors);
        tasks.push(tokio::spawn(crate::storage::provisioner::run(
            client.clone(),
            args.name(),
            data_dir.to_path_buf(),
            stop.clone(),
        )));
        // Without it pods still run (names outside the cluster do not resolve in them): say so, go on.
        match crate::dns::serve(dns.clone(), caches.services, caches.endpoints).await {
            Ok(t) => tasks.push(t),
            Err(e) => eprintln!("kvbox: no cluster DNS on {}:53: {e}", dns.addr),
        }
        Ok(Self { tasks, stop, table })
    }

    /// Stops the node side; launchers (and their VMs) keep running and are adopted at the next start.
    pub(crate) async fn shutdown(self) {
        self.stop.notify_waiters();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        crate::services::remove_table(&self.table).await;
    }
}
