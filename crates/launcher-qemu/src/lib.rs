//! [`Domain`] → QEMU command line, pure: one small function per option group, no processes, no QMP.
//!
//! The runtime directory holds the sockets the launcher and the node agent use ([`Paths`]): the QMP monitor, the
//! serial console (also logged to `serial.log`), VNC and the guest agent channel. QEMU runs with `-no-shutdown`
//! (a guest power-off stops the VM and tells QMP; the launcher decides what follows), `-nodefaults` (only the
//! devices the Domain asks for) and `-sandbox on` (seccomp: no spawning, no privilege changes).

use std::path::{Path, PathBuf};

use launcher_domain::{Accel, Bus, Cache, ClockBase, Disk, DiskDevice, Domain, FirmwareKind, Format, Io};
use serde_json::json;

/// Where the launcher's sockets and logs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// QMP monitor socket.
    pub qmp: PathBuf,
    /// Serial console socket (ttyS0).
    pub serial: PathBuf,
    /// Everything the serial console printed.
    pub serial_log: PathBuf,
    /// VNC socket.
    pub vnc: PathBuf,
    /// Guest agent socket.
    pub qga: PathBuf,
}

impl Paths {
    /// The layout under `runtime_dir`.
    #[must_use]
    pub fn under(runtime_dir: &Path) -> Self {
        Self {
            qmp: runtime_dir.join("qmp.sock"),
            serial: runtime_dir.join("serial.sock"),
            serial_log: runtime_dir.join("serial.log"),
            vnc: runtime_dir.join("vnc.sock"),
            qga: runtime_dir.join("qga.sock"),
        }
    }
}

/// A command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuCommand {
    /// The QEMU binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment (`TZ` for a timezone clock).
    pub env: Vec<(String, String)>,
}

/// The binary for x86-64 guests.
pub const QEMU_X86_64: &str = "qemu-system-x86_64";

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// QEMU's option-value escaping: a comma inside a value is doubled.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

struct Args(Vec<String>);

impl Args {
    fn push(&mut self, opt: &str, value: impl Into<String>) {
        self.0.push(opt.to_string());
        self.0.push(value.into());
    }
    fn flag(&mut self, opt: &str) {
        self.0.push(opt.to_string());
    }
}

fn machine(d: &Domain, a: &mut Args) {
    let mut m = format!("{},usb=off,dump-guest-core=off", d.machine);
    m.push_str(if d.features.acpi { ",acpi=on" } else { ",acpi=off" });
    if d.features.smm {
        m.push_str(",smm=on");
    }
    if d.clock.hpet == Some(false) {
        m.push_str(",hpet=off");
    }
    a.push("-machine", m);
    a.push(
        "-accel",
        match d.accel {
            Accel::Kvm => "kvm",
            // QEMU's default translation cache is 1 GiB, and a busy guest makes it resident: cap it.
            Accel::Tcg => "tcg,tb-size=64",
        },
    );
    let mut cpu = d.cpu.model.clone();
    for (name, on) in &d.cpu.features {
        cpu.push_str(&format!(",{}={}", esc(name), if *on { "on" } else { "off" }));
    }
    if d.features.kvm_hidden {
        cpu.push_str(",kvm=off");
    }
    for hv in &d.features.hyperv {
        cpu.push(',');
        cpu.push_str(&esc(hv));
    }
    a.push("-cpu", cpu);
    let c = &d.cpu;
    a.push(
        "-smp",
        format!(
            // The topology describes the CPUs the guest may grow to; `cpus` are the ones present at boot.
            "cpus={},sockets={},cores={},threads={},maxcpus={}",
            c.count(),
            c.max_sockets,
            c.cores,
            c.threads,
            c.max_sockets * c.cores * c.threads
        ),
    );
    match d.max_memory_mib {
        // Room for DIMMs plugged later, as upstream reserves for memory hotplug.
        Some(max) => a.push("-m", format!("size={}M,slots=16,maxmem={max}M", d.memory_mib)),
        None => a.push("-m", format!("size={}M", d.memory_mib)),
    }
}

fn firmware(d: &Domain, a: &mut Args) {
    match &d.firmware.kind {
        FirmwareKind::Bios { use_serial } => {
            if *use_serial {
                // SeaBIOS mirrors its screen to the first serial port.
                a.push("-fw_cfg", "name=etc/sercon-port,string=1016");
            }
        }
        FirmwareKind::Efi {
            code,
            vars,
            secure_boot,
            ..
        } => {
            a.push(
                "-drive",
                format!("if=pflash,format=raw,unit=0,readonly=on,file={}", esc(&p(code))),
            );
            a.push(
                "-drive",
                format!("if=pflash,format=raw,unit=1,file={}", esc(&p(vars))),
            );
            if *secure_boot {
                a.push("-global", "driver=cfi.pflash01,property=secure,value=on");
            }
        }
    }
    if let Some(k) = &d.firmware.kernel {
        a.push("-kernel", p(&k.kernel));
        if let Some(i) = &k.initrd {
            a.push("-initrd", p(i));
        }
        if let Some(c) = &k.cmdline {
            a.push("-append", c.clone());
        }
    }
    let mut t1 = format!(
        "type=1,manufacturer={},product={},family={},uuid={}",
        esc(&d.smbios.manufacturer),
        esc(&d.smbios.product),
        esc(&d.smbios.family),
        d.uuid
    );
    if let Some(s) = &d.smbios.serial {
        t1.push_str(&format!(",serial={}", esc(s)));
    }
    a.push("-smbios", t1);
    if !d.smbios.chassis.is_empty() {
        let fields: Vec<String> = d
            .smbios
            .chassis
            .iter()
            .map(|(k, v)| format!("{k}={}", esc(v)))
            .collect();
        a.push("-smbios", format!("type=3,{}", fields.join(",")));
    }
}

fn clock(d: &Domain, a: &mut Args, env: &mut Vec<(String, String)>, now_unix: i64) {
    let base = match &d.clock.base {
        ClockBase::Utc { offset_seconds: 0 } => "utc".to_string(),
        ClockBase::Utc { offset_seconds } => {
            // QEMU takes a start date; the offset is applied to the launch time.
            let t = now_unix.saturating_add(*offset_seconds);
            let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
            let (y, m, dd) = civil_from_days(days);
            format!(
                "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            )
        }
        ClockBase::Timezone(tz) => {
            env.push(("TZ".into(), tz.clone()));
            "localtime".into()
        }
    };
    let mut rtc = format!("base={base}");
    if d.clock.rtc_catchup {
        rtc.push_str(",driftfix=slew");
    }
    a.push("-rtc", rtc);
    if let (Some(policy), Accel::Kvm) = (&d.clock.pit_tick_policy, d.accel) {
        a.push("-global", format!("kvm-pit.lost_tick_policy={policy}"));
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn disk(idx: usize, disk: &Disk, sata_port: &mut usize, a: &mut Args) {
    let node = format!("disk{idx}");
    let direct = disk.cache == Cache::None;
    let cache = json!({"direct": direct, "no-flush": false});
    let mut file = json!({
        "driver": if disk.block { "host_device" } else { "file" },
        "filename": p(&disk.path),
        "node-name": format!("{node}-file"),
        "cache": cache,
        "aio": match disk.io { Io::Native => "native", Io::Threads => "threads" },
        "read-only": disk.readonly,
        "discard": "unmap",
    });
    if disk.shareable {
        file["locking"] = json!("off");
    }
    a.push("-blockdev", file.to_string());
    a.push(
        "-blockdev",
        json!({
            "driver": match disk.format { Format::Raw => "raw", Format::Qcow2 => "qcow2" },
            "node-name": node,
            "file": format!("{node}-file"),
            "cache": cache,
            "read-only": disk.readonly,
            "discard": "unmap",
        })
        .to_string(),
    );
    let dev = match (disk.bus, disk.device) {
        (Bus::Virtio, _) => "virtio-blk-pci".to_string(),
        (Bus::Sata, DiskDevice::Cdrom) => format!("ide-cd,bus=ide.{}", next(sata_port)),
        (Bus::Sata, _) => format!("ide-hd,bus=ide.{}", next(sata_port)),
        (Bus::Scsi, DiskDevice::Cdrom) => "scsi-cd,bus=scsi0.0".to_string(),
        (Bus::Scsi, DiskDevice::Lun) => "scsi-block,bus=scsi0.0".to_string(),
        (Bus::Scsi, DiskDevice::Disk) => "scsi-hd,bus=scsi0.0".to_string(),
        (Bus::Usb, _) => "usb-storage,bus=usb.0".to_string(),
    };
    let mut d = format!("{dev},drive={node},id=ua-{}", esc(&disk.name));
    if disk.device != DiskDevice::Lun {
        d.push_str(if disk.cache == Cache::Writethrough {
            ",write-cache=off"
        } else {
            ",write-cache=on"
        });
    }
    if let Some(b) = disk.boot_order {
        d.push_str(&format!(",bootindex={b}"));
    }
    if let Some(s) = &disk.serial {
        d.push_str(&format!(",serial={}", esc(s)));
    }
    if let Some((l, ph)) = disk.block_size {
        d.push_str(&format!(",logical_block_size={l},physical_block_size={ph}"));
    }
    a.push("-device", d);
}

/// One NIC's netdev and device; `bus`, for a NIC with a fixed address, is the root bus (`pcie.0` on q35).
fn nic_args(nic: &launcher_domain::Nic, bus: &str, a: &mut Args) {
    let id = esc(&nic.name);
    let mut dev = format!("{},id=ua-{id},mac={}", nic.model, nic.mac);
    if let Some(addr) = &nic.pci_addr {
        dev.push_str(&format!(",bus={bus},addr={addr}"));
    }
    if let Some(tap) = &nic.tap {
        let mut netdev = format!("tap,id=hostua-{id},ifname={},script=no,downscript=no", esc(tap));
        if nic.vhost {
            netdev.push_str(",vhost=on");
        }
        if nic.queues > 1 {
            netdev.push_str(&format!(",queues={}", nic.queues));
        }
        a.push("-netdev", netdev);
        dev.push_str(&format!(",netdev=hostua-{id}"));
        if nic.queues > 1 {
            dev.push_str(&format!(",mq=on,vectors={}", 2 * nic.queues + 2));
        }
        if let Some(mtu) = nic.mtu {
            dev.push_str(&format!(",host_mtu={mtu}"));
        }
    }
    match nic.boot_order {
        Some(b) => dev.push_str(&format!(",bootindex={b}")),
        // No network boot: no option ROM to load.
        None => dev.push_str(",romfile="),
    }
    a.push("-device", dev);
}

/// The empty root port `n` a NIC is hot-plugged into (`hotplug.N`).
#[must_use]
pub fn hotplug_port(n: u32) -> String {
    format!("pcie-root-port,id=hotplug.{n},bus=pcie.0,chassis={}", n + 1)
}

/// The machine's root bus: `pcie.0` on q35, `pci.0` on the i440FX `pc` machines.
fn root_bus(d: &Domain) -> &'static str {
    if d.machine.contains("q35") {
        "pcie.0"
    } else {
        "pci.0"
    }
}

fn next(port: &mut usize) -> usize {
    let n = *port;
    *port += 1;
    n
}

/// The whole command line for `d`, with sockets under `runtime_dir`; `now_unix` places a UTC-offset clock.
///
/// # Errors
/// More SATA devices than the q35 AHCI controller has ports (6).
pub fn render(d: &Domain, runtime_dir: &Path, now_unix: i64) -> Result<QemuCommand, String> {
    let paths = Paths::under(runtime_dir);
    let mut a = Args(Vec::new());
    let mut env = Vec::new();
    a.push("-name", format!("guest={},debug-threads=on", esc(&d.name)));
    a.push("-uuid", d.uuid.clone());
    machine(d, &mut a);
    a.push("-overcommit", "mem-lock=off");
    a.flag("-no-user-config");
    a.flag("-nodefaults");
    a.flag("-no-shutdown");
    a.push("-display", "none");
    a.push(
        "-chardev",
        format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            esc(&p(&paths.qmp))
        ),
    );
    a.push("-mon", "chardev=charmonitor,id=monitor,mode=control");
    clock(d, &mut a, &mut env, now_unix);
    firmware(d, &mut a);
    a.push("-boot", "strict=on");
    // NICs at fixed addresses first, so no device placed automatically takes their slots.
    for nic in d.nics.iter().filter(|n| n.pci_addr.is_some()) {
        nic_args(nic, root_bus(d), &mut a);
    }
    for n in 0..d.hotplug_ports {
        a.push("-device", hotplug_port(n));
    }
    let usb = d.disks.iter().any(|x| x.bus == Bus::Usb) || d.inputs.iter().any(|i| i.usb);
    if usb {
        a.push("-device", "qemu-xhci,id=usb");
    }
    if d.disks.iter().any(|x| x.bus == Bus::Scsi) {
        a.push("-device", "virtio-scsi-pci,id=scsi0");
    }
    let sata = d.disks.iter().filter(|x| x.bus == Bus::Sata).count();
    if sata > 6 {
        return Err(format!("{sata} SATA disks: the q35 AHCI controller has 6 ports"));
    }
    let mut sata_port = 0;
    for (idx, x) in d.disks.iter().enumerate() {
        disk(idx, x, &mut sata_port, &mut a);
    }
    for nic in d.nics.iter().filter(|n| n.pci_addr.is_none()) {
        nic_args(nic, root_bus(d), &mut a);
    }
    if d.serial_console {
        a.push(
            "-chardev",
            format!(
                "socket,id=charserial0,path={},server=on,wait=off,logfile={},logappend=on",
                esc(&p(&paths.serial)),
                esc(&p(&paths.serial_log))
            ),
        );
        a.push("-device", "isa-serial,chardev=charserial0,id=serial0");
    }
    if let Some(g) = &d.graphics {
        a.push("-device", format!("{},id=video0", g.video));
        a.push("-vnc", format!("unix:{}", p(&paths.vnc)));
    }
    for i in &d.inputs {
        let dev = if i.usb {
            "usb-tablet,bus=usb.0"
        } else {
            "virtio-tablet-pci"
        };
        a.push("-device", format!("{dev},id=ua-{}", esc(&i.name)));
    }
    if d.guest_agent {
        a.push(
            "-chardev",
            format!(
                "socket,id=charchannel0,path={},server=on,wait=off",
                esc(&p(&paths.qga))
            ),
        );
        a.push("-device", "virtio-serial-pci,id=virtio-serial0");
        a.push(
            "-device",
            "virtserialport,bus=virtio-serial0.0,nr=1,chardev=charchannel0,id=channel0,name=org.qemu.guest_agent.0",
        );
    }
    if d.rng {
        a.push("-object", "rng-random,id=objrng0,filename=/dev/urandom");
        a.push("-device", "virtio-rng-pci,rng=objrng0,id=rng0");
    }
    if let Some(w) = &d.watchdog {
        a.push("-device", format!("i6300esb,id=ua-{}", esc(&w.name)));
        a.push("-action", format!("watchdog={}", w.action));
    }
    if d.balloon {
        a.push("-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on");
    }
    if d.panic_device {
        a.push("-device", "pvpanic");
    }
    if d.start_paused {
        a.flag("-S");
    }
    a.push(
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    );
    a.push("-msg", "timestamp=on");
    Ok(QemuCommand {
        program: PathBuf::from(QEMU_X86_64),
        args: a.0,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn commas_in_values_are_doubled() {
        assert_eq!(esc("a,b"), "a,,b");
    }
}
