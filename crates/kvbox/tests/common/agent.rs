//! A `kvbox agent` node joining a test's `kvbox server`: its own data dir, bridge `kvbt<idx>` and pod subnet
//! `10.251.<idx>.0/24`; dropping it kills the agent and cleans its node up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::node::{self, NodeBox, cleanup_node, import_test_guest};

pub(crate) struct Agent {
    pub(crate) child: Option<Child>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bridge: String,
}

impl Agent {
    /// Starts `kvbox agent` as node `name` of `server`, on bridge `kvbt<idx>` and subnet `10.251.<idx>.0/24`.
    pub(crate) fn start(server: &NodeBox, name: &str, idx: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        import_test_guest(dir.path());
        let mut a = Self {
            child: None,
            dir,
            bridge: format!("kvbt{idx}"),
        };
        a.run(server, name, idx);
        a
    }

    /// (Re)starts the agent process on the same data dir.
    pub(crate) fn run(&mut self, server: &NodeBox, name: &str, idx: u8) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kvbox"))
            .args(["agent", "--server", &server_url(server.dir()), "--emulation"])
            .args(["--node-name", name])
            .arg("--token-file")
            .arg(server.dir().join("admin.token"))
            .arg("--ca-file")
            .arg(server.dir().join("ca.crt"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--cni-bridge", &self.bridge])
            .args(["--pod-cidr", &format!("10.251.{idx}.0/24")])
            .args(["--heartbeat-interval", "1s"])
            // Names outside the cluster go nowhere (a closed port on loopback), never to the host's resolvers.
            .args(["--dns-upstream", "127.0.0.1:9"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pid of the QEMU running the VMI with `uid` on this node.
    pub(crate) fn qemu_pid(&self, uid: &str) -> Option<u32> {
        node::qemu_pid_in(self.dir.path(), uid)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        cleanup_node(self.dir.path(), &self.bridge);
    }
}

pub(crate) fn server_url(dir: &Path) -> String {
    let kubeconfig = std::fs::read_to_string(dir.join("kubeconfig.yaml")).unwrap();
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string()
}
