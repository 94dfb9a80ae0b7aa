//! Helpers of the launcher's end-to-end tests: the test guest images, starting `virt-launcher`, reading the serial
//! log, and talking to the command socket. Every guest runs under TCG.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Builds (once; the script caches) and returns the test image directory.
pub fn images() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir =
        std::env::var_os("KVBOX_TEST_IMAGES").map_or_else(|| repo.join("target/test-images"), PathBuf::from);
    let status = Command::new(repo.join("scripts/build-test-images"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/build-test-images");
    assert!(status.success(), "building the test images failed");
    dir
}

/// A running launcher.
pub struct Launcher {
    pub child: Child,
    pub runtime: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Launcher {
    /// Starts `virt-launcher --vmi <yaml>` with `extra` arguments under TCG.
    pub fn start(vmi_yaml: &str, extra: &[String]) -> Self {
        Self::spawn(Some(vmi_yaml), extra)
    }

    /// Starts `virt-launcher` without a VMI: it waits for a Sync on its command socket.
    pub fn start_waiting(extra: &[String]) -> Self {
        Self::spawn(None, extra)
    }

    fn spawn(vmi_yaml: Option<&str>, extra: &[String]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tmp.path().join("rt");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_virt-launcher"));
        if let Some(yaml) = vmi_yaml {
            let vmi = tmp.path().join("vmi.yaml");
            std::fs::write(&vmi, yaml).unwrap();
            cmd.arg("--vmi").arg(vmi);
        }
        let child = cmd
            .arg("--emulation")
            .arg("--runtime-dir")
            .arg(&runtime)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            runtime,
            _tmp: tmp,
        }
    }

    pub fn serial_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.runtime.join("serial.log")).unwrap_or_default())
            .into_owned()
    }

    /// Polls the serial log until it contains `text` `times` times.
    pub fn wait_serial(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.serial_log().matches(text).count() < times {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "launcher exited ({status}) before the guest printed {text:?}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the guest never printed {text:?} ({times}x); serial log:\n{}",
                self.serial_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the launcher to exit; returns (exit code, stderr).
    pub fn wait_exit(&mut self, within: Duration) -> (i32, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the launcher did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }

    /// The QEMU process serving this launcher, found by its runtime directory.
    pub fn qemu_pid(&self) -> Option<u32> {
        qemu_pids(&self.runtime).first().copied()
    }

    /// Connects to the command socket (waiting for it).
    pub fn client(&mut self) -> Client {
        let path = self.runtime.join("launcher.sock");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(s) = UnixStream::connect(&path) {
                let mut c = Client {
                    reader: BufReader::new(s.try_clone().unwrap()),
                    writer: s,
                    events: Vec::new(),
                };
                let hello = c.line();
                assert_eq!(hello["protocol"], 1, "{hello}");
                return c;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("launcher exited ({status}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no command socket");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU processes whose command line mentions `runtime`.
pub fn qemu_pids(runtime: &Path) -> Vec<u32> {
    let needle = runtime.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'));
        if cmd.starts_with("qemu-system") && cmd.contains(&needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Waits until no QEMU of `runtime` is left.
pub fn wait_no_qemu(runtime: &Path) {
    testing::eventually("every QEMU of the launcher gone", Duration::from_secs(20), || {
        qemu_pids(runtime).is_empty()
    });
}

/// A command-socket client.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events seen so far.
    pub events: Vec<Value>,
}

impl Client {
    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    /// Sends `command`; returns the reply, collecting events that arrive first.
    pub fn call(&mut self, command: Value) -> Value {
        self.writer
            .write_all(format!("{}\n", json!({"id": 7, "command": command})).as_bytes())
            .unwrap();
        loop {
            let v = self.line();
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            return v;
        }
    }

    /// `call` that must succeed; returns its result.
    pub fn ok(&mut self, command: Value) -> Value {
        let r = self.call(command.clone());
        assert_eq!(r["ok"], true, "{command}: {r}");
        r["result"].clone()
    }
}

/// A kernel-boot VMI of the test kernel.
pub fn kernel_boot_vmi(name: &str, args: &str, grace: u32) -> String {
    format!(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  domain:
    devices: {{}}
    firmware:
      kernelBoot:
        container: {{image: test/kernel, kernelPath: /vmlinuz, initrdPath: /initrd.gz}}
        kernelArgs: console=ttyS0 quiet {args}
    memory: {{guest: 192Mi}}
"
    )
}
