//! Whether KVM really works here: `/dev/kvm` can exist while guests hang (nested virtualisation gone wrong), so
//! the probe boots SeaBIOS under `-accel kvm` with no disks and waits for it to reach the end of its boot order
//! ("No bootable device.") on its debug port within a deadline. A node whose probe fails runs guests under TCG.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvmProbe {
    /// Guests can run under KVM.
    pub usable: bool,
    /// Why not (or "ok").
    pub reason: String,
}

impl KvmProbe {
    fn no(reason: impl Into<String>) -> Self {
        Self {
            usable: false,
            reason: reason.into(),
        }
    }
}

/// The line SeaBIOS prints on its debug port when it has tried every boot device.
const DONE: &str = "No bootable device.";

/// Boots SeaBIOS with `accel` (`kvm` or `tcg`) and waits up to `deadline` for it to finish its boot order.
pub async fn probe_accel(qemu: &Path, accel: &str, deadline: Duration) -> KvmProbe {
    let dir = std::env::temp_dir().join(format!(
        "kvbox-probe-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return KvmProbe::no(format!("creating {}: {e}", dir.display()));
    }
    let log = dir.join("debugcon.log");
    let child = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            accel,
            "-machine",
            "q35",
            "-m",
            "16",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-serial", "none", "-monitor", "none"])
        .arg("-chardev")
        .arg(format!("file,id=dbg,path={}", log.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return KvmProbe::no(format!("starting {}: {e}", qemu.display()));
        }
    };
    let start = Instant::now();
    let result = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(DONE) {
            break KvmProbe {
                usable: true,
                reason: "ok".into(),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
            }
            break KvmProbe::no(format!("QEMU exited ({status}): {}", err.trim()));
        }
        if start.elapsed() > deadline {
            break KvmProbe::no(format!(
                "a {accel} guest did not finish its firmware within {}s (it hangs)",
                deadline.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Probes KVM: `/dev/kvm` must open read-write and a guest must run under it.
pub async fn probe(qemu: &Path, deadline: Duration) -> KvmProbe {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return KvmProbe::no(format!("/dev/kvm: {e}"));
    }
    probe_accel(qemu, "kvm", deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tcg_guest_finishes_its_firmware() {
        let qemu = Path::new("qemu-system-x86_64");
        let p = probe_accel(qemu, "tcg", Duration::from_secs(60)).await;
        assert!(p.usable, "{}", p.reason);
    }

    #[tokio::test]
    async fn a_missing_qemu_is_reported() {
        let p = probe_accel(Path::new("/nonexistent/qemu"), "tcg", Duration::from_secs(5)).await;
        assert!(!p.usable);
        assert!(p.reason.contains("/nonexistent/qemu"), "{}", p.reason);
    }
}
