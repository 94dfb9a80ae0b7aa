//! The Domain: everything QEMU needs to know about one VM, in our own words, with every path already resolved.
//! Built from a VMI by the configurators; rendered to a command line by `launcher-qemu`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How guest code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

/// One VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Domain {
    /// `<namespace>_<name>`, as upstream names libvirt domains.
    pub name: String,
    /// Firmware (SMBIOS system) UUID.
    pub uuid: String,
    /// Accelerator.
    pub accel: Accel,
    /// QEMU machine type (`q35`, `pc-q35-9.2`, ...).
    pub machine: String,
    /// vCPUs.
    pub cpu: Cpu,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Ceiling for memory hotplug in MiB (`memory.maxGuest`), when above `memory_mib`.
    pub max_memory_mib: Option<u64>,
    /// Boot firmware and direct kernel boot.
    pub firmware: Firmware,
    /// SMBIOS tables.
    pub smbios: Smbios,
    /// Platform features.
    pub features: Features,
    /// Guest clock.
    pub clock: Clock,
    /// Block devices, in spec order.
    pub disks: Vec<Disk>,
    /// Network cards, in spec order.
    pub nics: Vec<Nic>,
    /// Empty hot-plug-capable PCIe root ports for NICs plugged later (q35's root bus takes none; upstream reserves
    /// room for four interfaces).
    #[serde(default)]
    pub hotplug_ports: u32,
    /// A serial console on ttyS0.
    pub serial_console: bool,
    /// VNC and the video card behind it.
    pub graphics: Option<Graphics>,
    /// Input devices.
    pub inputs: Vec<Input>,
    /// A virtio RNG fed from `/dev/urandom`.
    pub rng: bool,
    /// A watchdog device.
    pub watchdog: Option<Watchdog>,
    /// The `org.qemu.guest_agent.0` virtio-serial channel.
    pub guest_agent: bool,
    /// A memory balloon.
    pub balloon: bool,
    /// A pvpanic device reporting guest panics.
    pub panic_device: bool,
    /// Start with the vCPUs stopped (`startStrategy: Paused`).
    pub start_paused: bool,
}

/// vCPU topology and model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cpu {
    /// Sockets.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
    /// Sockets the guest may grow to by CPU hotplug.
    pub max_sockets: u32,
    /// QEMU CPU model (`host`, `max`, `Skylake-Client`, ...).
    pub model: String,
    /// Feature flags: (name, on).
    pub features: Vec<(String, bool)>,
}

impl Cpu {
    /// Total vCPUs.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.sockets * self.cores * self.threads
    }
}

/// What runs first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Firmware {
    /// BIOS or UEFI.
    pub kind: FirmwareKind,
    /// Boot this kernel directly.
    pub kernel: Option<KernelBoot>,
}

/// BIOS or UEFI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FirmwareKind {
    /// SeaBIOS.
    Bios {
        /// Send BIOS output to the serial console too.
        use_serial: bool,
    },
    /// OVMF.
    Efi {
        /// The read-only code image.
        code: PathBuf,
        /// The template of the per-VM variable store.
        vars_template: PathBuf,
        /// The per-VM variable store (copied from the template before start).
        vars: PathBuf,
        /// Secure boot (needs SMM).
        secure_boot: bool,
    },
}

/// Direct kernel boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelBoot {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: Option<String>,
}

/// SMBIOS type 1 (system) and 3 (chassis).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Smbios {
    /// System manufacturer.
    pub manufacturer: String,
    /// System product.
    pub product: String,
    /// System family.
    pub family: String,
    /// System serial number.
    pub serial: Option<String>,
    /// Chassis fields: (key, value) with keys manufacturer, version, serial, asset, sku.
    pub chassis: Vec<(String, String)>,
}

/// Platform features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Features {
    /// ACPI tables (needed for graceful shutdown).
    pub acpi: bool,
    /// System management mode.
    pub smm: bool,
    /// Hyper-V enlightenments as QEMU CPU flags (`hv-relaxed`, `hv-spinlocks=0x1fff`, ...).
    pub hyperv: Vec<String>,
    /// Hide the KVM signature from the guest.
    pub kvm_hidden: bool,
}

/// Guest clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clock {
    /// What the RTC starts at.
    pub base: ClockBase,
    /// HPET present (`None`: machine default).
    pub hpet: Option<bool>,
    /// RTC catches up lost ticks (`driftfix=slew`).
    pub rtc_catchup: bool,
    /// PIT lost-tick policy (`delay`, `catchup`, `merge`, `discard`; KVM only).
    pub pit_tick_policy: Option<String>,
}

/// The RTC's starting point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ClockBase {
    /// UTC plus an offset in seconds.
    Utc {
        /// Seconds ahead of UTC.
        offset_seconds: i64,
    },
    /// Local time of a named zone (the QEMU process runs with `TZ` set).
    Timezone(String),
}

/// Image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Raw bytes.
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
}

/// The bus a disk hangs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// virtio-blk (or virtio-scsi for LUNs).
    Virtio,
    /// The q35 AHCI controller.
    Sata,
    /// A virtio-scsi controller.
    Scsi,
    /// USB mass storage on an xHCI controller.
    Usb,
}

/// What the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskDevice {
    /// A hard disk.
    Disk,
    /// A CD-ROM.
    Cdrom,
    /// A SCSI LUN passed through (block volumes only).
    Lun,
}

/// Host page cache use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    /// O_DIRECT, no host cache.
    None,
    /// Host cache, every write flushed.
    Writethrough,
    /// Host cache, flushed when the guest asks.
    Writeback,
}

/// I/O submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// Linux native AIO (needs O_DIRECT).
    Native,
    /// A thread pool.
    Threads,
}

/// One block device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disk {
    /// The VMI's disk name.
    pub name: String,
    /// The image file or block device.
    pub path: PathBuf,
    /// Image format.
    pub format: Format,
    /// A block device rather than a file.
    pub block: bool,
    /// Disk, CD-ROM or LUN.
    pub device: DiskDevice,
    /// Bus.
    pub bus: Bus,
    /// The guest may not write.
    pub readonly: bool,
    /// Boot priority (1 first).
    pub boot_order: Option<u32>,
    /// Serial number shown to the guest.
    pub serial: Option<String>,
    /// Cache mode.
    pub cache: Cache,
    /// I/O mode.
    pub io: Io,
    /// Logical and physical block size in bytes.
    pub block_size: Option<(u32, u32)>,
    /// Shared between VMs (no locking).
    pub shareable: bool,
}

/// One network card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Nic {
    /// The VMI's interface name.
    pub name: String,
    /// QEMU device model (`virtio-net-pci`, `e1000`, `e1000e`, `rtl8139`).
    pub model: String,
    /// MAC address.
    pub mac: String,
    /// Boot priority.
    pub boot_order: Option<u32>,
    /// The host tap device it is attached to (`None`: no backend).
    pub tap: Option<String>,
    /// The MTU a virtio guest is told (`host_mtu`).
    pub mtu: Option<u32>,
    /// Virtio queues (more than one: multi-queue).
    pub queues: u32,
    /// vhost-net carries the tap's traffic.
    pub vhost: bool,
    /// The link is up (`state: down` starts it down: QMP `set_link` once QEMU answers).
    pub link_up: bool,
    /// A fixed slot and function on the root bus (`pciAddress` `0000:00:SS.F`), as QEMU's `addr=` (`0x3.0x0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_addr: Option<String>,
}

/// Graphics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Graphics {
    /// QEMU video device (`VGA`, `bochs-display`, `virtio-vga`, `ramfb`).
    pub video: String,
}

/// An input device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// The VMI's input name.
    pub name: String,
    /// On the USB bus (else virtio).
    pub usb: bool,
}

/// A watchdog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Watchdog {
    /// The VMI's watchdog name.
    pub name: String,
    /// QEMU's action when it fires: `reset`, `poweroff` or `shutdown`.
    pub action: String,
}
