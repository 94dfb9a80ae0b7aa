//! VMI spec + node facts → [`Domain`]: the launcher's model of one VM, built by an ordered list of small pure
//! configurators (one per section, KubeVirt's converter shape) and rendered to QEMU arguments by `launcher-qemu`.
//!
//! No I/O: volumes arrive already resolved to files ([`ResolvedVolume`], see [`volumes::plan`] for the layout the
//! launcher creates), node facts (accelerator, firmware files, tap devices) are inputs. Whatever the model cannot
//! express is a [`DomainError::Unsupported`] naming the field — never silently dropped.

mod compute;
pub mod credentials;
mod devices;
mod model;
mod storage;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubevirt_api::v1::VirtualMachineInstance;

pub use model::*;

/// Why a VMI cannot become a Domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field the launcher cannot run yet.
    #[error("unsupported: {field}: {why}")]
    Unsupported {
        /// JSON path in the VMI (`spec.domain.devices.tpm`).
        field: String,
        /// What is missing.
        why: String,
    },
    /// A value the launcher cannot use.
    #[error("invalid: {field}: {message}")]
    Invalid {
        /// JSON path in the VMI.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl DomainError {
    pub(crate) fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            why: why.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// OVMF firmware files on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ovmf {
    /// Code without secure boot.
    pub code: PathBuf,
    /// Variable store template without secure boot.
    pub vars: PathBuf,
    /// Code with secure boot (SMM).
    pub secure_code: PathBuf,
    /// Variable store template with Microsoft keys enrolled.
    pub secure_vars: PathBuf,
}

impl Default for Ovmf {
    /// Debian's `ovmf` package.
    fn default() -> Self {
        Self {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(),
            secure_code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".into(),
            secure_vars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd".into(),
        }
    }
}

/// What the node tells the launcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// KVM or TCG (decided by the node agent's probe or `useEmulation`).
    pub accel: Accel,
    /// OVMF files.
    pub ovmf: Ovmf,
    /// The launcher's runtime directory (sockets, overlays, ISOs, the EFI variable store).
    pub runtime_dir: PathBuf,
    /// The NICs' backends by interface name (absent: the NIC has no backend).
    pub nics: BTreeMap<String, NicBackend>,
    /// `/dev/vhost-net` opens here (QEMU 7.2 aborts when asked for vhost without it).
    pub vhost_net: bool,
    /// Where the kernelBoot container's files are (its `kernelPath`/`initrdPath` are inside it).
    pub kernel_boot_root: Option<PathBuf>,
}

/// The host side of a NIC: the tap network phase 1 made for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicBackend {
    /// The tap.
    pub tap: String,
    /// The pod interface's MTU, given to a virtio guest as `host_mtu`.
    pub mtu: Option<u32>,
    /// The tap's queues (more than one: multi-queue virtio).
    pub queues: u32,
    /// The MAC the guest takes when the spec names none (the bridge binding's pod MAC).
    pub mac: Option<String>,
}

impl NicBackend {
    /// A single-queue tap with nothing else known.
    #[must_use]
    pub fn tap(name: &str) -> Self {
        Self {
            tap: name.to_string(),
            mtu: None,
            queues: 1,
            mac: None,
        }
    }
}

/// A volume as a file the launcher prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedVolume {
    /// The image file or block device.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// A block device.
    pub block: bool,
    /// The file supports O_DIRECT (so `cache: none` works).
    pub direct_io: bool,
}

/// Shared inputs of the configurators.
pub(crate) struct Ctx<'a> {
    pub(crate) vmi: &'a VirtualMachineInstance,
    pub(crate) facts: &'a NodeFacts,
    pub(crate) volumes: &'a BTreeMap<String, ResolvedVolume>,
}

type Configurator = fn(&Ctx<'_>, &mut Domain) -> Result<(), DomainError>;

/// The configurators, in order; each owns one section of the Domain.
const CONFIGURATORS: &[(&str, Configurator)] = &[
    ("unsupported", devices::refuse_unsupported),
    ("machine", compute::machine),
    ("cpu", compute::cpu),
    ("memory", compute::memory),
    ("features", compute::features),
    ("clock", compute::clock),
    ("firmware", compute::firmware),
    ("disks", storage::disks),
    ("nics", devices::nics),
    ("devices", devices::devices),
];

/// Builds the Domain of `vmi` (already defaulted by admission) on a node described by `facts`.
///
/// # Errors
/// [`DomainError`] naming the first field that cannot be run.
pub fn build(
    vmi: &VirtualMachineInstance,
    facts: &NodeFacts,
    volumes: &BTreeMap<String, ResolvedVolume>,
) -> Result<Domain, DomainError> {
    let input = Ctx { vmi, facts, volumes };
    let ns = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    let mut d = Domain {
        name: format!("{ns}_{name}"),
        uuid: String::new(),
        accel: facts.accel,
        machine: "q35".into(),
        cpu: Cpu {
            sockets: 1,
            cores: 1,
            threads: 1,
            max_sockets: 1,
            model: String::new(),
            features: Vec::new(),
        },
        memory_mib: 0,
        max_memory_mib: None,
        firmware: Firmware {
            kind: FirmwareKind::Bios { use_serial: false },
            kernel: None,
        },
        smbios: Smbios {
            manufacturer: "KubeVirt".into(),
            product: "None".into(),
            family: "KubeVirt".into(),
            serial: None,
            chassis: Vec::new(),
        },
        features: Features {
            acpi: true,
            smm: false,
            hyperv: Vec::new(),
            kvm_hidden: false,
        },
        clock: Clock {
            base: ClockBase::Utc { offset_seconds: 0 },
            hpet: None,
            rtc_catchup: false,
            pit_tick_policy: None,
        },
        disks: Vec::new(),
        nics: Vec::new(),
        hotplug_ports: 0,
        serial_console: true,
        graphics: None,
        inputs: Vec::new(),
        rng: false,
        watchdog: None,
        guest_agent: true,
        balloon: true,
        panic_device: false,
        start_paused: false,
    };
    for (_, configure) in CONFIGURATORS {
        configure(&input, &mut d)?;
    }
    Ok(d)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders shared by the configurators' tests.
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::{Accel, Domain, DomainError, Format, NodeFacts, Ovmf, ResolvedVolume};

    pub(crate) fn vmi(spec: Value) -> kubevirt_api::v1::VirtualMachineInstance {
        serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "t", "namespace": "ns", "uid": "11111111-2222-4333-8444-555555555555"},
            "spec": spec,
        }))
        .unwrap()
    }

    pub(crate) fn facts(accel: Accel) -> NodeFacts {
        NodeFacts {
            accel,
            ovmf: Ovmf::default(),
            runtime_dir: PathBuf::from("/run/t"),
            nics: BTreeMap::from([("default".to_string(), crate::NicBackend::tap("tap7"))]),
            vhost_net: false,
            kernel_boot_root: Some(PathBuf::from("/kb")),
        }
    }

    pub(crate) fn volume(block: bool, direct_io: bool) -> ResolvedVolume {
        ResolvedVolume {
            path: PathBuf::from("/img"),
            format: Format::Qcow2,
            block,
            direct_io,
        }
    }

    /// Builds with one volume per name in `vols`.
    pub(crate) fn build(
        spec: Value,
        accel: Accel,
        vols: &[(&str, ResolvedVolume)],
    ) -> Result<Domain, DomainError> {
        let volumes = vols.iter().map(|(n, v)| ((*n).to_string(), v.clone())).collect();
        super::build(&vmi(spec), &facts(accel), &volumes)
    }

    pub(crate) fn base() -> Value {
        json!({"domain": {"devices": {}, "memory": {"guest": "128Mi"}}})
    }
}
