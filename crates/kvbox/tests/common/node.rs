//! A `kvbox server` that is also a node (handler + pod runtime), with its own CNI bridge and pod subnet so tests run
//! side by side; dropping it kills the server, then whatever launchers and QEMUs it left, their network namespaces
//! and the bridge.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct NodeBox {
    pub(crate) child: Option<Child>,
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) bridge: String,
    pub(crate) cidr: String,
    pub(crate) extra: Vec<String>,
}

/// The test guest's qcow2 (built by scripts/build-test-images).
pub(crate) fn test_disk() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = repo.join("target/test-images");
    let status = Command::new(repo.join("scripts/build-test-images"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/build-test-images");
    assert!(status.success(), "building the test images failed");
    dir.join("disk.qcow2")
}

pub(crate) fn eventually(what: &str, secs: u64, f: impl FnMut() -> bool) {
    testing::eventually(what, Duration::from_secs(secs), f);
}

impl NodeBox {
    /// A server in emulation mode; `idx` (1..=200) picks the bridge and subnet.
    pub(crate) fn start(idx: u8, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = Self {
            child: None,
            tmp,
            bridge: format!("kvbt{idx}"),
            cidr: format!("10.251.{idx}.0/24"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.run();
        import_test_guest(b.dir());
        b
    }

    /// (Re)starts the server process on the same data dir.
    pub(crate) fn run(&mut self) {
        let dir = self.dir().to_path_buf();
        let _ = std::fs::remove_file(dir.join("kubeconfig.yaml"));
        let launcher = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virt-launcher");
        assert!(
            launcher.exists(),
            "{} missing: build the workspace",
            launcher.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kvbox"))
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--emulation",
                "--node-name",
                "box0",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--cni-bridge", &self.bridge])
            .args(
                Some(["--pod-cidr", self.cidr.as_str()])
                    .filter(|_| !self.extra.iter().any(|a| a == "--pod-cidr"))
                    .into_iter()
                    .flatten(),
            )
            .args(["--service-cidr", &self.cidr.replace("10.251.", "10.252.")])
            .args(&self.extra)
            // Names outside the cluster go nowhere (a closed port on loopback), never to the host's resolvers,
            // unless the test says where.
            .args(if self.extra.iter().any(|a| a == "--dns-upstream") {
                &[][..]
            } else {
                &["--dns-upstream", "127.0.0.1:9"][..]
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually("the kubeconfig", 30, || dir.join("kubeconfig.yaml").exists());
    }

    pub(crate) fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (at most `secs`) for the server to exit; its exit status.
    pub(crate) fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("a running server");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("kvbox server did not exit within {secs} s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kubectl against this server; panics on failure.
    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None)
    }

    pub(crate) fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.try_kubectl(args, stdin);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    }

    pub(crate) fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let out = testing::Kubectl::new(&self.dir().join("kubeconfig.yaml")).try_run(args, stdin);
        (out.ok, out.stdout, out.stderr)
    }

    /// `kubectl get KIND NAME -o jsonpath=PATH`, empty when absent.
    pub(crate) fn get(&self, what: &str, path: &str) -> String {
        let mut args: Vec<&str> = vec!["get"];
        args.extend(what.split(' '));
        let jp = format!("jsonpath={path}");
        args.extend(["-o", &jp, "--ignore-not-found"]);
        self.try_kubectl(&args, None).1
    }

    /// The pid of the QEMU running the VMI with `uid`.
    pub(crate) fn qemu_pid(&self, uid: &str) -> Option<u32> {
        qemu_pid_in(self.dir(), uid)
    }

    /// The guest's serial log of the VMI with `uid`.
    pub(crate) fn serial(&self, uid: &str) -> String {
        std::fs::read_to_string(self.dir().join("launchers").join(uid).join("serial.log")).unwrap_or_default()
    }

    /// Types `line` into the guest's serial console (its shell) of the VMI with `uid`; what it prints lands in
    /// [`NodeBox::serial`]. Keep the connection until the answer is there: QEMU drops what the UART has not taken
    /// yet when the client goes.
    pub(crate) fn type_in_guest(&self, uid: &str, line: &str) -> std::os::unix::net::UnixStream {
        use std::io::Write as _;
        let sock = self.dir().join("launchers").join(uid).join("serial.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        s
    }

    /// Whether the network namespace of the pod with `uid` exists.
    pub(crate) fn netns_exists(pod_uid: &str) -> bool {
        Path::new("/run/netns").join(format!("kvbox-{pod_uid}")).exists()
    }

    /// Addresses still leased by host-local IPAM.
    pub(crate) fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.dir().join("cni/ipam/kvbox"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }
}

/// The pid of the QEMU running the VMI with `uid` on the node with `data_dir`.
pub(crate) fn qemu_pid_in(data_dir: &Path, uid: &str) -> Option<u32> {
    let marker = data_dir.join("launchers").join(uid);
    let marker = marker.to_string_lossy().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        let exe = cmd.split('\0').next().unwrap_or_default();
        (exe.ends_with("qemu-system-x86_64") && cmd.contains(&marker)).then_some(pid)
    })
}

impl NodeBox {
    /// What a failed test needs to be understood from CI's output alone: the objects and the server log's tail.
    fn post_mortem(&self) {
        if self.child.is_some() {
            let (_, out, err) = self.try_kubectl(&["get", "vms,vmis,pods", "-A", "-o", "wide"], None);
            eprintln!("--- post mortem: objects ---\n{out}{err}");
            let (_, out, _) = self.try_kubectl(
                &["get", "vmis", "-A", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.conditions}{\"\\n\"}{end}"],
                None,
            );
            eprintln!("--- post mortem: VMI conditions ---\n{out}");
        }
        let log = std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(150)..].join("\n");
        eprintln!("--- post mortem: last 150 lines of server.log ---\n{tail}");
    }
}

/// Kills what a node with `data_dir` left running (launchers, QEMUs), its pods' namespaces and `bridge`.
pub(crate) fn cleanup_node(data_dir: &Path, bridge: &str) {
    let pods = std::fs::read_dir(data_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten();
    for p in pods {
        let uid = p.file_name().to_string_lossy().to_string();
        if let Ok(text) = std::fs::read_to_string(p.path().join("record.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(pid) = v["pid"].as_u64()
        {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &format!("kvbox-{uid}")])
            .stderr(Stdio::null())
            .status();
        remove_cgroups(&uid);
    }
    let _ = Command::new("ip")
        .args(["link", "delete", bridge])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &format!("kvbox-svc-{bridge}")])
        .stderr(Stdio::null())
        .status();
}

/// The pod's `kvbox-<uid>` cgroups, wherever they are (every hierarchy of this host).
pub(crate) fn pod_cgroups(uid: &str) -> Vec<PathBuf> {
    let name = format!("kvbox-{uid}");
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy() == name {
                    found.push(e.path());
                } else if !e.file_name().to_string_lossy().starts_with("kvbox-") {
                    stack.push(e.path());
                }
            }
        }
    }
    found
}

/// Removes the pod's cgroups once their processes are gone (the killed launchers are reaped shortly).
fn remove_cgroups(uid: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pod_cgroups(uid);
        for d in &left {
            let _ = std::fs::remove_dir(d);
        }
        if pod_cgroups(uid).is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Imports the test guest as `kubevirt-rs/test-guest:latest` into the image store of `data_dir`.
pub(crate) fn import_test_guest(data_dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(["images", "import", "--data-dir"])
        .arg(data_dir)
        .arg("kubevirt-rs/test-guest:latest")
        .arg(test_disk())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for NodeBox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.post_mortem();
        }
        self.kill9();
        // Launchers outlive the server by design: stop the ones this box started.
        cleanup_node(self.tmp.path(), &self.bridge);
    }
}

/// `kubectl get KIND NAME --watch -o jsonpath=PATH` in the background: the distinct successive values it printed.
pub(crate) struct Watch {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watch {
    /// Watches `what` (`"vm testvm"`) on `b`'s server, recording `path`.
    pub(crate) fn start(b: &NodeBox, what: &str, path: &str) -> Self {
        use std::io::BufRead as _;
        let mut args: Vec<String> = vec!["get".into()];
        args.extend(what.split(' ').map(str::to_string));
        args.extend([
            "--watch".into(),
            "-o".into(),
            format!("jsonpath={path}{{\"\\n\"}}"),
        ]);
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
            .env("HOME", b.dir().join("home"))
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut v = s.lock().unwrap();
                if !line.is_empty() && v.last() != Some(&line) {
                    v.push(line);
                }
            }
        });
        Self { child, seen }
    }

    /// The values seen so far, without repeats in a row.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
