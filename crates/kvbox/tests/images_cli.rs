//! `kvbox images`: import qcow2/raw disks, list, resolve, remove; bad input is refused with the cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn kvbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn qemu_img(args: &[&str]) {
    assert!(Command::new("qemu-img").args(args).status().unwrap().success());
}

#[test]
fn import_list_resolve_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let raw = tmp.path().join("disk.raw");
    let qcow = tmp.path().join("disk.qcow2");
    qemu_img(&["create", "-q", "-f", "raw", raw.to_str().unwrap(), "1M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", qcow.to_str().unwrap(), "64M"]);

    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "test/disk",
        raw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("imported test/disk:latest (raw, 1.0MiB)"),
        "{}",
        out(&o)
    );
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "registry:5000/kubevirt/fedora:devel",
        qcow.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));

    let ls = out(&kvbox(&["images", "--data-dir", d, "ls"]));
    let rows: Vec<&str> = ls.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert!(
        rows[0].starts_with("registry:5000/kubevirt/fedora:devel") && rows[0].contains("qcow2"),
        "{ls}"
    );
    assert!(
        rows[1].starts_with("test/disk:latest") && rows[1].contains("raw"),
        "{ls}"
    );

    // The stored copy is independent of the source file.
    let path = out(&kvbox(&["images", "--data-dir", d, "path", "test/disk"]));
    let path = path.trim();
    assert!(path.starts_with(d) && path.ends_with("disk.raw"), "{path}");
    std::fs::remove_file(&raw).unwrap();
    assert!(std::path::Path::new(path).is_file());

    let o = kvbox(&["images", "--data-dir", d, "rm", "test/disk:latest"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = kvbox(&["images", "--data-dir", d, "path", "test/disk"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out(&o).contains("image \"test/disk:latest\" not found"),
        "{}",
        out(&o)
    );
}

#[test]
fn bad_imports_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let missing = kvbox(&["images", "--data-dir", d, "import", "x", "/nonexistent/disk.img"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        out(&missing).contains("/nonexistent/disk.img"),
        "{}",
        out(&missing)
    );
    // An overlay would depend on a file outside the store.
    let base = tmp.path().join("base.qcow2");
    let overlay = tmp.path().join("overlay.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "8M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        overlay.to_str().unwrap(),
    ]);
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "x",
        overlay.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("backing file"), "{}", out(&o));
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "bad ref",
        base.to_str().unwrap(),
    ]);
    assert!(out(&o).contains("invalid image reference"), "{}", out(&o));
    let ls = out(&kvbox(&["images", "--data-dir", d, "ls"]));
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");
}
