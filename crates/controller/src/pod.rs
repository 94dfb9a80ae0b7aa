//! A VMI's launcher pod, rendered as upstream's virt-controller renders it (names, labels, annotations, node
//! selector, security context, grace period, containerDisk containers, resources), with two deliberate differences:
//! the compute container runs our `virt-launcher` (no libvirt, no virt-launcher-monitor), and the memory overhead is
//! our own ([`crate::overhead`]). No init container copies a `container-disk` helper: the box pod runtime reads
//! containerDisk images from its image store.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodReadinessGate, PodSecurityContext, PodSpec,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevirt_api::quantity;
use kubevirt_api::v1::VirtualMachineInstance;

use crate::overhead;

/// Grace added on top of the VMI's, twice: once for the launcher, once more for the pod.
const GRACE_PADDING: i64 = 15;
/// The VMI grace period when unset.
const DEFAULT_GRACE: i64 = 30;
/// vCPUs per physical CPU requested (upstream's cpuAllocationRatio).
const CPU_ALLOCATION_RATIO: i64 = 10;
/// The unprivileged user QEMU runs as.
const QEMU_UID: i64 = 107;

/// Cluster settings the pod depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    /// The image of the compute container.
    pub launcher_image: String,
    /// Guests run under TCG (`developerConfiguration.useEmulation`): no `devices.kubevirt.io/kvm`.
    pub use_emulation: bool,
}

/// Why a VMI cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A quantity in the VMI does not parse.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON path.
        field: String,
        /// Why.
        message: String,
    },
}

/// The `vmi.kubevirt.io/id` label: the name, or for names over 63 characters the first 54, `-`, and 8 hex
/// characters of the SHA-1 of the whole name.
#[must_use]
pub fn vmi_id(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let hash = sha1_smol::Sha1::from(name).digest().to_string();
    let prefix: String = name.chars().take(54).collect();
    format!("{prefix}-{}", &hash[..8])
}

/// The pod hostname: `spec.hostname`, else the VMI name up to its first dot, at most 63 characters.
#[must_use]
pub fn hostname(vmi: &VirtualMachineInstance) -> String {
    if let Some(h) = vmi.spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    name.split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect()
}

fn q(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

fn bytes_of(field: &str, v: Option<&Quantity>) -> Result<Option<u64>, RenderError> {
    quantity::of(v)
        .map_err(|e| RenderError::Invalid {
            field: field.into(),
            message: e.to_string(),
        })
        .map(|m| m.map(|m| u64::try_from(m.value()).unwrap_or(0)))
}

fn resources(
    vmi: &VirtualMachineInstance,
    cfg: &RenderConfig,
) -> Result<(ResourceRequirements, u64), RenderError> {
    let dom = &vmi.spec.domain;
    let res = dom.resources.as_ref();
    let mut requests: BTreeMap<String, Quantity> = res.and_then(|r| r.requests.clone()).unwrap_or_default();
    let mut limits: BTreeMap<String, Quantity> = res.and_then(|r| r.limits.clone()).unwrap_or_default();
    let cpu = dom.cpu.as_ref();
    let vcpus = [
        cpu.and_then(|c| c.sockets),
        cpu.and_then(|c| c.cores),
        cpu.and_then(|c| c.threads),
    ]
    .iter()
    .map(|v| v.unwrap_or(1).max(1))
    .product::<i64>();
    requests
        .entry("cpu".into())
        .or_insert_with(|| q(format!("{}m", vcpus * 1000 / CPU_ALLOCATION_RATIO)));
    let guest = bytes_of(
        "spec.domain.memory.guest",
        dom.memory.as_ref().and_then(|m| m.guest.as_ref()),
    )?;
    let limit = bytes_of("spec.domain.resources.limits.memory", limits.get("memory"))?;
    let request = match bytes_of("spec.domain.resources.requests.memory", requests.get("memory"))? {
        Some(r) => r,
        None => limit.or(guest).unwrap_or(0),
    };
    let graphics = dom.devices.autoattach_graphics_device.unwrap_or(true);
    let added = bytes_of(
        "spec.domain.memory.reservedOverhead.addedOverhead",
        dom.memory
            .as_ref()
            .and_then(|m| m.reserved_overhead.as_ref())
            .and_then(|r| r.added_overhead.as_ref()),
    )?;
    let over = overhead::bytes(overhead::Inputs {
        vcpus: u64::try_from(vcpus).unwrap_or(1),
        guest_bytes: guest.unwrap_or(request),
        graphics,
        tcg: cfg.use_emulation,
        added_bytes: added.unwrap_or(0),
    });
    let overcommit = res.and_then(|r| r.overcommit_guest_overhead).unwrap_or(false);
    requests.insert(
        "memory".into(),
        q((request + if overcommit { 0 } else { over }).to_string()),
    );
    if let Some(l) = limit {
        limits.insert("memory".into(), q((l + over).to_string()));
    }
    requests.insert("ephemeral-storage".into(), q("50M"));
    if !cfg.use_emulation {
        limits.insert("devices.kubevirt.io/kvm".into(), q("1"));
    }
    let ifaces = dom.devices.interfaces.as_deref().unwrap_or_default();
    if !ifaces.is_empty() {
        limits.insert("devices.kubevirt.io/tun".into(), q("1"));
    }
    if ifaces
        .iter()
        .any(|i| i.model.as_deref().unwrap_or("virtio") == "virtio")
    {
        limits.insert("devices.kubevirt.io/vhost-net".into(), q("1"));
    }
    Ok((
        ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits).filter(|l| !l.is_empty()),
            ..Default::default()
        },
        over,
    ))
}

/// The env var of a containerDisk container naming `containerDisk.path`.
pub const CONTAINER_DISK_PATH: &str = "CONTAINER_DISK_PATH";

fn container_disks(vmi: &VirtualMachineInstance, uid: &str) -> Vec<Container> {
    let small = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("1m")),
            ("memory".into(), q("1M")),
            ("ephemeral-storage".into(), q("50M")),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".into(), q("10m")),
            ("memory".into(), q("40M")),
        ])),
        ..Default::default()
    };
    let copy = |name: String, image: String, target: String| Container {
        name,
        image: Some(image),
        command: Some(vec!["/usr/bin/container-disk".into()]),
        args: Some(vec![
            "--copy-path".into(),
            format!("/var/run/kubevirt/container-disks/{uid}/{target}"),
        ]),
        resources: Some(small.clone()),
        ..Default::default()
    };
    let mut out: Vec<Container> = vmi
        .spec
        .volumes
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| {
            v.container_disk.as_ref().map(|cd| {
                let mut c = copy(format!("volume{}", v.name), cd.image.clone(), format!("disk_{i}"));
                // Where in the image the disk is, when not the one file under /disk/ (the node needs the image's
                // files then, not just a disk).
                if let Some(path) = cd.path.as_ref().filter(|p| !p.is_empty()) {
                    c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
                        name: CONTAINER_DISK_PATH.into(),
                        value: Some(path.clone()),
                        ..Default::default()
                    }]);
                }
                c
            })
        })
        .collect();
    if let Some(c) = vmi
        .spec
        .domain
        .firmware
        .as_ref()
        .and_then(|f| f.kernel_boot.as_ref())
        .and_then(|k| k.container.as_ref())
    {
        out.push(copy("kernel-boot".into(), c.image.clone(), "kernel-boot".into()));
    }
    out
}

/// The launcher pod of `vmi`.
///
/// # Errors
/// [`RenderError`] when a memory quantity of the VMI does not parse.
pub fn render(vmi: &VirtualMachineInstance, cfg: &RenderConfig) -> Result<Pod, RenderError> {
    let meta = &vmi.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let host = hostname(vmi);
    let (resources, over) = resources(vmi, cfg)?;
    let (labels, annotations) = labels_and_annotations(vmi, &host, over);
    let grace = vmi.spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE);
    let has_sa_volume = vmi
        .spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.service_account.is_some());
    let sa_name = vmi.spec.service_account_name.clone().or_else(|| {
        vmi.spec.volumes.iter().flatten().find_map(|v| {
            v.service_account
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
        })
    });
    let (volumes, mounts) = crate::podvolumes::render(vmi);
    let mut containers = vec![compute(cfg, grace, resources, mounts)];
    containers.extend(container_disks(vmi, &uid));
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("virt-launcher-{name}-")),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachineInstance".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: Some(host),
            subdomain: vmi.spec.subdomain.clone(),
            restart_policy: Some("Never".into()),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(grace + 2 * GRACE_PADDING),
            security_context: Some(security_context(vmi)),
            automount_service_account_token: Some(has_sa_volume),
            service_account_name: sa_name,
            node_selector: Some(node_selector(vmi)),
            affinity: vmi.spec.affinity.clone(),
            tolerations: vmi.spec.tolerations.clone(),
            topology_spread_constraints: vmi.spec.topology_spread_constraints.clone(),
            scheduler_name: vmi.spec.scheduler_name.clone(),
            priority_class_name: vmi.spec.priority_class_name.clone(),
            dns_policy: vmi.spec.dns_policy.clone(),
            dns_config: vmi.spec.dns_config.clone(),
            readiness_gates: Some(vec![PodReadinessGate {
                condition_type: "kubevirt.io/virtual-machine-unpaused".into(),
            }]),
            containers,
            volumes: Some(volumes).filter(|v| !v.is_empty()),
            ..Default::default()
        }),
        status: None,
    })
}

/// The pod's labels (the VMI's, and the launcher's own) and annotations (the VMI's less kubectl's and the observed
/// API versions, with the domain name, default container and the memory overhead of `over` bytes).
fn labels_and_annotations(
    vmi: &VirtualMachineInstance,
    host: &str,
    over: u64,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let meta = &vmi.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert("kubevirt.io".into(), "virt-launcher".into());
    labels.insert(
        "kubevirt.io/created-by".into(),
        meta.uid.clone().unwrap_or_default(),
    );
    labels.insert("vm.kubevirt.io/name".into(), host.to_string());
    labels.insert("vmi.kubevirt.io/id".into(), vmi_id(&name));
    let mut annotations: BTreeMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !k.starts_with("kubectl.kubernetes.io")
                && *k != "kubevirt.io/storage-observed-api-version"
                && *k != "kubevirt.io/latest-observed-api-version"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(v) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get("sidecar.istio.io/inject"))
    {
        labels.insert("sidecar.istio.io/inject".into(), v.clone());
    }
    annotations.insert("kubevirt.io/domain".into(), name);
    annotations.insert("kubectl.kubernetes.io/default-container".into(), "compute".into());
    annotations.insert("kubevirt.io/migrationTransportUnix".into(), "true".into());
    annotations.insert(
        "descheduler.alpha.kubernetes.io/request-evict-only".into(),
        String::new(),
    );
    annotations.insert("kubevirt.io/memory-overhead-bytes".into(), over.to_string());
    if let Some(networks) = kubevirt_api::network::multus_annotation(vmi) {
        annotations.insert(kubevirt_api::nad::NETWORKS_ANNOTATION.into(), networks);
    }
    (labels, annotations)
}

/// Schedulable nodes of the VMI's architecture and CPU model, and the VMI's own selector.
fn node_selector(vmi: &VirtualMachineInstance) -> BTreeMap<String, String> {
    let mut node_selector = BTreeMap::from([("kubevirt.io/schedulable".to_string(), "true".to_string())]);
    if let Some(arch) = vmi.spec.architecture.as_deref() {
        node_selector.insert("kubernetes.io/arch".into(), arch.to_lowercase());
    }
    if let Some(model) = vmi
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.as_deref())
        .filter(|m| !matches!(*m, "host-model" | "host-passthrough" | ""))
    {
        node_selector.insert(format!("cpu-model.node.kubevirt.io/{model}"), "true".into());
    }
    node_selector.extend(vmi.spec.node_selector.clone().unwrap_or_default());
    node_selector
}

/// QEMU's user (107), or root when the VMI runs as root.
fn security_context(vmi: &VirtualMachineInstance) -> PodSecurityContext {
    let root = vmi.status.as_ref().and_then(|s| s.runtime_user) == Some(0);
    if root {
        PodSecurityContext {
            run_as_user: Some(0),
            fs_group: Some(QEMU_UID),
            ..Default::default()
        }
    } else {
        PodSecurityContext {
            run_as_user: Some(QEMU_UID),
            run_as_group: Some(QEMU_UID),
            run_as_non_root: Some(true),
            fs_group: Some(QEMU_UID),
            ..Default::default()
        }
    }
}

/// The `compute` container: virt-launcher with the grace period, the pod's name and IP, its resources and mounts.
fn compute(
    cfg: &RenderConfig,
    grace: i64,
    resources: k8s_openapi::api::core::v1::ResourceRequirements,
    mounts: Vec<k8s_openapi::api::core::v1::VolumeMount>,
) -> Container {
    let mut args = vec![
        "--grace-period-seconds".to_string(),
        (grace + GRACE_PADDING).to_string(),
    ];
    if cfg.use_emulation {
        args.push("--emulation".into());
    }
    Container {
        name: "compute".into(),
        image: Some(cfg.launcher_image.clone()),
        command: Some(vec!["/usr/bin/virt-launcher".into()]),
        args: Some(args),
        env: Some(
            [("POD_NAME", "metadata.name"), ("POD_IP", "status.podIP")]
                .iter()
                .map(|(name, path)| EnvVar {
                    name: (*name).into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: (*path).into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: Some(resources),
        volume_mounts: Some(mounts).filter(|m| !m.is_empty()),
        ..Default::default()
    }
}
