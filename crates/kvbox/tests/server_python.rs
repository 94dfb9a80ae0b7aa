//! The Python `kubernetes` client (pip; `scripts/test` installs it) against `kvbox server`: CRUD + watch on pods and
//! on a KubeVirt custom resource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

#[test]
fn python_client_crud_and_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = common::start_server(&dir, "127.0.0.1:0");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.join("kubeconfig.yaml"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "python client test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
