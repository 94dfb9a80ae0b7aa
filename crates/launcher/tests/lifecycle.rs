//! A kernel-boot guest under TCG driven through the command socket: boot banner on the serial console, pause and
//! unpause change QEMU's status, reset reboots, the guest agent answers, VNC speaks RFB, ACPI shutdown succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::{Launcher, images, kernel_boot_vmi, wait_no_qemu};
use serde_json::json;

const BANNER: &str = "KUBEVIRT-RS TEST GUEST";

#[test]
fn kernel_boot_guest_lifecycle_through_the_command_socket() {
    let img = images();
    let mut l = Launcher::start(
        &kernel_boot_vmi("lifecycle", "", 60),
        &["--kernel-boot-root".into(), img.display().to_string()],
    );
    l.wait_serial(BANNER, 1);
    l.wait_serial("test guest ready", 1);
    let mut c = l.client();
    assert_eq!(c.ok(json!("Ping")), "pong");

    let d = c.ok(json!("GetDomain"));
    assert_eq!(d["status"]["status"], "running", "{d}");
    assert_eq!(d["domain"]["accel"], "tcg");
    c.ok(json!("Pause"));
    let d = c.ok(json!("GetDomain"));
    assert_eq!(
        (d["status"]["status"].as_str(), d["state"]["state"].as_str()),
        (Some("paused"), Some("Paused"))
    );
    c.ok(json!("Unpause"));
    assert_eq!(c.ok(json!("GetDomain"))["status"]["status"], "running");

    // The guest agent reports the guest's hostname and kernel.
    let info = c.ok(json!("GetGuestInfo"));
    assert_eq!(info["hostname"]["host-name"], "testguest", "{info}");
    assert!(
        info["os"]["kernel-release"]
            .as_str()
            .unwrap()
            .contains("cloud-amd64"),
        "{info}"
    );
    assert!(c.ok(json!("GetFilesystems")).is_array());

    // VNC is a unix socket speaking RFB.
    let mut vnc = std::os::unix::net::UnixStream::connect(l.runtime.join("vnc.sock")).unwrap();
    vnc.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 12];
    vnc.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"RFB 003.008\n");
    drop(vnc);

    // A changed spec is reported, not applied; the same spec is in sync.
    let mut changed: serde_json::Value =
        serde_norway::from_str(&kernel_boot_vmi("lifecycle", "", 60)).unwrap();
    changed["spec"]["domain"]["firmware"]["uuid"] = d["domain"]["uuid"].clone();
    changed["spec"]["domain"]["memory"]["guest"] = json!("1Gi");
    let bad = c.call(json!({"Sync": {"vmi": changed}}));
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("memoryMib"), "{bad}");

    // Hard reset: the guest boots again.
    c.ok(json!("Reset"));
    l.wait_serial(BANNER, 2);
    // Events arrive on their own time: ping until the RESET shows up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !c.events.iter().any(|e| e["event"]["event"] == "RESET") {
        assert!(
            std::time::Instant::now() < deadline,
            "no RESET event: {:?}",
            c.events
        );
        c.ok(json!("Ping"));
        std::thread::sleep(Duration::from_millis(50));
    }
    l.wait_serial("test guest ready", 2);

    // ACPI shutdown: the guest powers off inside the grace period; the VMI succeeded.
    c.ok(json!({"Shutdown": {"gracePeriodSeconds": 60}}));
    let (code, stderr) = l.wait_exit(Duration::from_secs(90));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("guest shut down"),
        "{stderr}\nserial log:\n{}",
        l.serial_log()
    );
    assert!(l.serial_log().contains("acpi: power button"));
    wait_no_qemu(&l.runtime);
    assert!(!l.runtime.join("qmp.sock").exists(), "sockets are cleaned up");
    assert!(l.runtime.join("serial.log").exists(), "the console log is kept");
}

#[test]
fn a_hung_guest_is_killed_after_the_grace_period() {
    let img = images();
    // kvtest.noacpi: the guest ignores the power button.
    let mut l = Launcher::start(
        &kernel_boot_vmi("hung", "kvtest.noacpi", 2),
        &["--kernel-boot-root".into(), img.display().to_string()],
    );
    l.wait_serial("test guest ready", 1);
    // SIGTERM: what the pod runtime sends; the launcher shuts down with the VMI's grace period.
    let pid = l.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr) = l.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("killed after the 2s grace period"), "{stderr}");
    wait_no_qemu(&l.runtime);
}

#[test]
fn without_a_vmi_the_launcher_waits_for_the_node_agents_sync() {
    let img = images();
    let mut l = Launcher::start_waiting(&["--kernel-boot-root".into(), img.display().to_string()]);
    let mut c = l.client();
    assert_eq!(c.ok(json!("Ping")), "pong");
    let early = c.call(json!("GetDomain"));
    assert_eq!(early["ok"], false);
    assert!(
        early["error"].as_str().unwrap().contains("send Sync first"),
        "{early}"
    );
    // The node agent sends the VMI as the API server stored it (uid, firmware UUID set).
    let mut vmi: serde_json::Value = serde_norway::from_str(&kernel_boot_vmi("synced", "", 10)).unwrap();
    vmi["metadata"]["uid"] = json!("00000000-0000-4000-8000-00000000abcd");
    vmi["metadata"]["namespace"] = json!("default");
    assert_eq!(c.ok(json!({"Sync": {"vmi": vmi.clone()}}))["sync"], "started");
    l.wait_serial(BANNER, 1);
    assert_eq!(
        c.ok(json!("GetDomain"))["domain"]["uuid"],
        "00000000-0000-4000-8000-00000000abcd"
    );
    // The same VMI again: nothing to do.
    assert_eq!(c.ok(json!({"Sync": {"vmi": vmi}}))["sync"], "in sync");
    assert_eq!(c.ok(json!("Kill")), "killing");
    let (code, stderr) = l.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{stderr}");
    wait_no_qemu(&l.runtime);
}

#[test]
fn a_vmi_that_cannot_start_ends_a_waiting_launcher_with_status_2() {
    let img = images();
    let mut l = Launcher::start_waiting(&["--kernel-boot-root".into(), img.display().to_string()]);
    let mut c = l.client();
    // A TPM passes admission but this launcher cannot run one: the first Sync fails, the launcher exits 2 (the pod
    // fails, the VM's crash-loop backoff takes over) and leaves the reason for the node agent.
    let mut vmi: serde_json::Value = serde_norway::from_str(&kernel_boot_vmi("notpm", "", 10)).unwrap();
    vmi["metadata"]["uid"] = json!("00000000-0000-4000-8000-00000000beef");
    vmi["metadata"]["namespace"] = json!("default");
    vmi["spec"]["domain"]["devices"]["tpm"] = json!({});
    let r = c.call(json!({"Sync": {"vmi": vmi}}));
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("tpm"), "{r}");
    let (code, stderr) = l.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 2, "{stderr}");
    let end = std::fs::read_to_string(l.runtime.join("final-state.json")).unwrap();
    assert!(end.contains("Crashed") && end.contains("tpm"), "{end}");
    wait_no_qemu(&l.runtime);
}
