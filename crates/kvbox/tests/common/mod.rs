//! Test helpers: starting `kvbox server` as a child process, and finding the shared upstream examples.
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

/// Starts `kvbox server` on `listen` with `dir` as its data dir and waits for its kubeconfig.
pub fn start_server(dir: &Path, listen: &str) -> Child {
    start_server_with(dir, listen, &["--no-node"])
}

/// [`start_server`] with extra `kvbox server` flags.
pub fn start_server_with(dir: &Path, listen: &str, extra: &[&str]) -> Child {
    let _ = std::fs::remove_file(dir.join("kubeconfig.yaml"));
    let child = Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(["server", "--data-dir", dir.to_str().unwrap(), "--listen", listen])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("kubeconfig.yaml").exists() {
        assert!(
            Instant::now() < deadline,
            "kvbox server did not write its kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `shared/fixtures/upstream-examples` beside the checkout.
pub fn examples() -> PathBuf {
    if let Ok(d) = std::env::var("KUBEVIRT_RS_SHARED") {
        return PathBuf::from(d).join("fixtures/upstream-examples");
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        for c in [dir.join("shared"), dir.join("../shared")] {
            if c.join("fixtures").is_dir() {
                return c.join("fixtures/upstream-examples");
            }
        }
        assert!(dir.pop(), "no shared/ found");
    }
}
