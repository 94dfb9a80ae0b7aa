//! Test helpers: starting `kvbox server` as a child process (the rest comes from the `testing` crate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    testing::eventually("kvbox server's kubeconfig", Duration::from_secs(30), || {
        dir.join("kubeconfig.yaml").exists()
    });
    child
}

/// `shared/fixtures/upstream-examples`.
pub fn examples() -> std::path::PathBuf {
    testing::examples()
}
