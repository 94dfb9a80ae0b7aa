//! virtctl against box mode, as a user types it: every request goes kubectl-style through the API server, which
//! hands `subresources.kubevirt.io` to virt-api (an aggregated API), which patches VMs or calls the handler of the
//! VMI's node. Lifecycle commands with upstream's 409s, the QMP state they leave, guest agent data, the console
//! under a pseudo-terminal (takeover, idle for over a minute), VNC over the local proxy, screenshots, the
//! read-only identity refused, and upstream virtctl's own request shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use node::{NodeBox, eventually};

fn virtctl_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virtctl");
    assert!(p.exists(), "{} missing: build the workspace", p.display());
    p
}

/// `virtctl ARGS` with `kubeconfig` (a file in the box's data dir): exit code, stdout, stderr.
fn virtctl(b: &NodeBox, kubeconfig: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(virtctl_bin())
        .env("KUBECONFIG", b.dir().join(kubeconfig))
        .env("HOME", b.dir().join("home"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(b: &NodeBox, args: &[&str]) -> String {
    let (code, out, err) = virtctl(b, "kubeconfig.yaml", args);
    assert_eq!(code, 0, "virtctl {args:?}: {err}");
    out
}

fn refused(b: &NodeBox, args: &[&str]) -> String {
    let (code, _, err) = virtctl(b, "kubeconfig.yaml", args);
    assert_eq!(code, 1, "virtctl {args:?} should fail");
    err
}

fn vm(b: &NodeBox, name: &str, strategy: &str) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap()
    .replace("name: testvm", &format!("name: {name}"))
    .replace("runStrategy: Always", &format!("runStrategy: {strategy}"));
    b.kubectl_in(&["apply", "-f", "-"], Some(&text));
}

/// The launcher's domain state (`Running`, `Paused`) from its command socket — what QMP reports.
fn domain_state(b: &NodeBox, uid: &str) -> String {
    let sock = b.dir().join("launchers").join(uid).join("launcher.sock");
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    writeln!(&s, r#"{{"id": 1, "command": "GetDomain"}}"#).unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    format!(
        "{}/{}",
        v["result"]["state"]["state"].as_str().unwrap_or_default(),
        v["result"]["status"]["status"].as_str().unwrap_or_default()
    )
}

fn running(b: &NodeBox, name: &str) -> bool {
    b.get(&format!("vmi {name}"), "{.status.phase}") == "Running"
}

#[test]
fn lifecycle_commands_behave_as_upstreams() {
    let b = NodeBox::start(26, &[]);
    vm(&b, "halted", "Halted");
    vm(&b, "always", "Always");
    vm(&b, "manual", "Manual");
    eventually("the Always VM running", 90, || running(&b, "always"));

    // start: Halted → Always; a second start, and a start of an Always VM, are 409s.
    assert_eq!(
        ok(&b, &["start", "halted"]).trim(),
        "VM halted was scheduled to start"
    );
    assert_eq!(b.get("vm halted", "{.spec.runStrategy}"), "Always");
    eventually("halted running", 90, || running(&b, "halted"));
    let err = refused(&b, &["start", "halted"]);
    assert!(
        err.contains("Error starting VirtualMachine") && err.contains("VM is already running"),
        "{err}"
    );
    // (A running VMI is checked first, as upstream does; the strategy's refusal needs a finished VMI: a Once VM
    // whose QEMU died.)
    let err = refused(&b, &["start", "always"]);
    assert!(err.contains("VM is already running"), "{err}");
    vm(&b, "once", "Once");
    eventually("once running", 90, || running(&b, "once"));
    let once_uid = b.get("vmi once", "{.metadata.uid}");
    let qemu = b.qemu_pid(&once_uid).unwrap();
    let _ = Command::new("kill").args(["-KILL", &qemu.to_string()]).status();
    eventually("once Failed", 60, || {
        b.get("vmi once", "{.status.phase}") == "Failed"
    });
    let err = refused(&b, &["start", "once"]);
    assert!(
        err.contains("Once does not support manual start requests"),
        "{err}"
    );

    // stop of an Always VM: → Halted, the VMI goes; stop and restart of a Halted one are 409s.
    assert_eq!(
        ok(&b, &["stop", "halted"]).trim(),
        "VM halted was scheduled to stop"
    );
    assert_eq!(b.get("vm halted", "{.spec.runStrategy}"), "Halted");
    eventually("halted stopped", 90, || {
        b.get("vm halted", "{.status.printableStatus}") == "Stopped"
    });
    let err = refused(&b, &["stop", "halted"]);
    assert!(err.contains("VM is not running"), "{err}");
    let err = refused(&b, &["restart", "halted"]);
    assert!(
        err.contains("RunStategy Halted does not support manual restart requests"),
        "{err}"
    );

    // Manual: start and stop are state-change requests the controller carries out.
    ok(&b, &["start", "manual"]);
    eventually("manual running", 90, || running(&b, "manual"));
    ok(&b, &["stop", "manual"]);
    eventually("manual stopped", 90, || {
        b.get("vm manual", "{.status.printableStatus}") == "Stopped"
    });

    // restart: a new VMI.
    let first = b.get("vmi always", "{.metadata.uid}");
    assert_eq!(
        ok(&b, &["restart", "always"]).trim(),
        "VM always was scheduled to restart"
    );
    eventually("always restarted", 120, || {
        let u = b.get("vmi always", "{.metadata.uid}");
        !u.is_empty() && u != first && running(&b, "always")
    });
    let uid = b.get("vmi always", "{.metadata.uid}");

    // pause/unpause: the Paused condition and QEMU's own state; the repeated request is a 409.
    assert_eq!(
        ok(&b, &["pause", "vm", "always"]).trim(),
        "VMI always was scheduled to pause"
    );
    eventually("paused", 30, || {
        b.get(
            "vmi always",
            r#"{.status.conditions[?(@.type=="Paused")].status}"#,
        ) == "True"
    });
    assert_eq!(domain_state(&b, &uid), "Paused/paused");
    let err = refused(&b, &["pause", "vmi", "always"]);
    assert!(err.contains("VMI is already paused"), "{err}");
    let err = refused(&b, &["soft-reboot", "always"]);
    assert!(err.contains("VMI is paused"), "{err}");
    ok(&b, &["unpause", "vmi", "always"]);
    eventually("unpaused", 30, || {
        b.get(
            "vmi always",
            r#"{.status.conditions[?(@.type=="Paused")].status}"#,
        )
        .is_empty()
    });
    assert_eq!(domain_state(&b, &uid), "Running/running");
    let err = refused(&b, &["unpause", "vmi", "always"]);
    assert!(err.contains("VMI is not paused"), "{err}");

    // reset and soft-reboot reboot the guest (its banner again; the soft one over ACPI, as the test guest's
    // agent cannot reboot it); guest agent data in upstream's shapes.
    eventually("the guest up", 150, || {
        b.serial(&uid).contains("test guest ready")
    });
    eventually("the agent connected", 60, || {
        b.get(
            "vmi always",
            r#"{.status.conditions[?(@.type=="AgentConnected")].status}"#,
        ) == "True"
    });
    let info: serde_json::Value = serde_json::from_str(&ok(&b, &["guestosinfo", "always"])).unwrap();
    assert_eq!(info["hostname"], "always-guest", "{info}");
    assert!(
        info["os"]["kernelRelease"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "{info}"
    );
    for cmd in ["userlist", "fslist"] {
        let v: serde_json::Value = serde_json::from_str(&ok(&b, &[cmd, "always"])).unwrap();
        assert!(v["items"].is_array(), "{cmd}: {v}");
    }
    let banners = || b.serial(&uid).matches("KUBEVIRT-RS TEST GUEST").count();
    assert_eq!(
        ok(&b, &["reset", "always"]).trim(),
        "VMI always was scheduled to reset"
    );
    eventually("the guest booted again after reset", 150, || banners() == 2);
    eventually("the guest up again", 150, || {
        b.serial(&uid).matches("test guest ready").count() == 2
    });
    assert_eq!(
        ok(&b, &["soft-reboot", "always"]).trim(),
        "VMI always was scheduled to soft-reboot"
    );
    eventually("the guest booted again after soft-reboot", 150, || banners() == 3);
    eventually("the guest up after the soft reboot", 150, || {
        b.serial(&uid).matches("test guest ready").count() == 3
    });
    // The agent went away with the reboot and is reported again once it is back.
    eventually("the agent connected after the reboot", 90, || {
        b.get(
            "vmi always",
            r#"{.status.conditions[?(@.type=="AgentConnected")].status}"#,
        ) == "True"
            && ok(&b, &["guestosinfo", "always"]).contains("always-guest")
    });
    assert!(running(&b, "always"));
    assert_eq!(
        b.get("vmi always", "{.metadata.uid}"),
        uid,
        "a reboot keeps the VMI"
    );

    // migrate: a VirtualMachineInstanceMigration, which (until live migration exists) the migration controller ends
    // as upstream ends one it cannot run: Failed, its finalizer removed.
    assert_eq!(
        ok(&b, &["migrate", "always"]).trim(),
        "VM always was scheduled to migrate"
    );
    let migrations = b.kubectl(&[
        "get",
        "vmim",
        "-o",
        "jsonpath={.items[*].metadata.name} {.items[*].spec.vmiName}",
    ]);
    assert!(
        migrations.starts_with("kubevirt-migrate-vm-") && migrations.ends_with(" always"),
        "{migrations}"
    );
    eventually("the migration ends", 30, || {
        b.kubectl(&[
            "get",
            "vmim",
            "-o",
            "jsonpath={.items[0].status.phase}/{.items[0].metadata.finalizers}",
        ]) == "Failed/"
    });
    // migrate-cancel: nothing left to cancel once the migration has ended.
    let err = refused(&b, &["migrate-cancel", "always"]);
    assert!(err.contains("Found no migration to cancel for always"), "{err}");
    let err = refused(&b, &["migrate-cancel", "manual"]);
    assert!(err.contains("Found no migration to cancel for manual"), "{err}");
    // Completion scripts for the shells.
    let bash = ok(&b, &["completion", "bash"]);
    assert!(bash.contains("virtctl") && bash.contains("complete"), "{bash}");

    // The read-only identity may look, not act or connect: 403 from the API server.
    for args in [
        &["start", "manual"][..],
        &["stop", "always"],
        &["console", "always", "--timeout", "0"],
    ] {
        let (code, _, err) = virtctl(&b, "kubeconfig-view.yaml", args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains("forbidden") && err.contains("kvbox-view"),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = virtctl(&b, "kubeconfig-view.yaml", &["guestosinfo", "always"]);
    assert_eq!(code, 0, "viewers may read guest info: {err}");
    assert!(out.contains("always-guest"));

    // Upstream virtctl's requests, as it sends them (v1alpha3 too, its bodies, dry runs).
    let raw = |path: &str, body: &str| {
        let f = b.dir().join("body.json");
        std::fs::write(&f, body).unwrap();
        b.try_kubectl(&["replace", "--raw", path, "-f", f.to_str().unwrap()], None)
    };
    let base = "/apis/subresources.kubevirt.io/v1alpha3/namespaces/default";
    let (ok1, _, err1) = raw(
        &format!("{base}/virtualmachines/manual/start"),
        r#"{"paused":false,"dryRun":["All"]}"#,
    );
    assert!(ok1, "{err1}");
    assert_eq!(
        b.get("vm manual", "{.status.printableStatus}"),
        "Stopped",
        "a dry run changes nothing"
    );
    let (ok2, _, err2) = raw(
        &format!("{base}/virtualmachineinstances/always/pause"),
        r#"{"kind":"PauseOptions","apiVersion":"subresources.kubevirt.io/v1alpha3","dryRun":["All"]}"#,
    );
    assert!(ok2, "{err2}");
    let (ok3, _, err3) = raw(
        &format!("{base}/virtualmachines/always/restart"),
        r#"{"gracePeriodSeconds":5}"#,
    );
    assert!(
        !ok3 && err3.contains("For force restart, only gracePeriod=0 is supported for now"),
        "{err3}"
    );
    let (ok4, _, err4) = raw(&format!("{base}/virtualmachines/nope/start"), "{}");
    assert!(
        !ok4 && err4.contains("virtualmachine.kubevirt.io \"nope\" not found"),
        "{err4}"
    );
    let list = b.kubectl(&["get", "--raw", "/apis/subresources.kubevirt.io/v1"]);
    assert!(
        list.contains("virtualmachines/start") && list.contains("virtualmachineinstances/console"),
        "{list}"
    );
    let version = ok(&b, &["version"]);
    assert!(
        version.contains("Client Version: version.Info{")
            && version.contains("Server Version: version.Info{"),
        "{version}"
    );
}

/// A command under a pseudo-terminal (`script`), its output collected as it comes.
struct Tty {
    child: Child,
    seen: Arc<Mutex<String>>,
}

impl Tty {
    fn start(b: &NodeBox, args: &str) -> Self {
        let mut child = Command::new("script")
            .args([
                "-q",
                "-f",
                "-e",
                "-c",
                &format!("{} {args}", virtctl_bin().display()),
                "/dev/null",
            ])
            .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
            .env("HOME", b.dir().join("home"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let s = seen.clone();
            std::thread::spawn(move || {
                let mut r = r;
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self { child, seen }
    }

    fn type_text(&mut self, text: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text).unwrap();
        stdin.flush().unwrap();
    }

    fn wait_for(&self, what: &str, secs: u64) {
        eventually(&format!("{what:?} on the console"), secs, || {
            self.seen.lock().unwrap().contains(what)
        });
    }

    fn exit_code(&mut self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running: {}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn console_vnc_and_screenshots_reach_the_guest() {
    let b = NodeBox::start(27, &[]);
    vm(&b, "testvm", "Always");
    eventually("the VMI running", 90, || running(&b, "testvm"));
    let uid = b.get("vmi testvm", "{.metadata.uid}");
    eventually("the guest up", 150, || {
        b.serial(&uid).contains("test guest ready")
    });

    // The console is the guest's shell; a reset shows its boot banner there.
    let mut first = Tty::start(&b, "console testvm");
    first.wait_for(
        "Successfully connected to testvm console. Press Ctrl+] or Ctrl+5 to exit console.",
        60,
    );
    first.type_text(b"echo first-$((6*7))\r");
    first.wait_for("first-42", 30);
    ok(&b, &["reset", "testvm"]);
    first.wait_for("KUBEVIRT-RS TEST GUEST", 150);
    first.wait_for("test guest ready", 150);

    // A second console takes over: the first is told it was disconnected and exits 1.
    let mut second = Tty::start(&b, "console testvm");
    second.wait_for("Successfully connected", 60);
    assert_eq!(first.exit_code(30), 1);
    assert!(
        first
            .seen
            .lock()
            .unwrap()
            .contains("You were disconnected from the console")
    );
    second.type_text(b"\r");
    second.type_text(b"echo second-$((1+1))\r");
    second.wait_for("second-2", 30);

    // VNC through the local proxy: the server's RFB greeting.
    let mut proxy = Command::new(virtctl_bin())
        .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
        .env("HOME", b.dir().join("home"))
        .args(["vnc", "testvm", "--proxy-only"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = serde_json::from_str::<serde_json::Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", u16::try_from(port).unwrap())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut greeting = [0u8; 12];
    tcp.read_exact(&mut greeting).unwrap();
    assert!(
        greeting.starts_with(b"RFB 003.00"),
        "{:?}",
        String::from_utf8_lossy(&greeting)
    );
    drop(tcp);
    let _ = proxy.kill();
    let _ = proxy.wait();

    // A screenshot is a PNG of the display.
    let png = b.dir().join("shot.png");
    ok(
        &b,
        &["vnc", "screenshot", "testvm", "--file", png.to_str().unwrap()],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(width >= 640 && height >= 400, "{width}x{height}");

    // An idle console stays open well past a minute (the handler keeps it alive with pings).
    std::thread::sleep(Duration::from_secs(65));
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "the idle console closed: {}",
        second.seen.lock().unwrap()
    );
    second.type_text(b"echo alive-$((2+3))\r");
    second.wait_for("alive-5", 30);
    // Ctrl+] leaves with status 0.
    second.type_text(&[0x1d]);
    assert_eq!(second.exit_code(30), 0);
}
