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

#[path = "common/oci.rs"]
mod oci;

#[test]
fn container_images_import_from_layouts_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let qcow = tmp.path().join("disk.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", qcow.to_str().unwrap(), "64M"]);
    let kernel = tmp.path().join("vmlinuz");
    std::fs::write(&kernel, b"not really a kernel").unwrap();

    // An OCI layout directory holding a containerDisk (upstream's convention: the disk under /disk/).
    let layout = tmp.path().join("layout");
    oci::layout(&layout, &[("disk/fedora.qcow2", &qcow)]);
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "quay.io/x/disk:1",
        layout.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("imported quay.io/x/disk:1 (oci/qcow2"),
        "{}",
        out(&o)
    );
    let p = out(&kvbox(&["images", "--data-dir", d, "path", "quay.io/x/disk:1"]));
    assert!(p.trim().ends_with("rootfs/disk/fedora.qcow2"), "{p}");
    let info = Command::new("qemu-img")
        .args(["info", p.trim()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("file format: qcow2"));

    // A sparse raw disk stays sparse through the layer (tar writes it as a GNU sparse entry).
    let raw = tmp.path().join("sparse.raw");
    qemu_img(&["create", "-q", "-f", "raw", raw.to_str().unwrap(), "32M"]);
    let sparse = tmp.path().join("sparse-layout");
    oci::layout(&sparse, &[("disk/disk.img", &raw)]);
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "sparse",
        sparse.to_str().unwrap(),
    ]);
    assert!(out(&o).contains("(oci/raw"), "{}", out(&o));
    let p = out(&kvbox(&["images", "--data-dir", d, "path", "sparse"]));
    let m = std::fs::metadata(p.trim()).unwrap();
    assert_eq!(m.len(), 32 << 20);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&m) < 1024,
        "{} blocks",
        std::os::unix::fs::MetadataExt::blocks(&m)
    );

    // An OCI archive with kernel files only: a kernelBoot image, not a containerDisk.
    let archive = tmp.path().join("kernel.tar");
    oci::archive(&archive, &[("boot/vmlinuz-virt", &kernel)]);
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "kb",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let files = out(&kvbox(&["images", "--data-dir", d, "path", "--files", "kb"]));
    let got = std::fs::read(std::path::Path::new(files.trim()).join("boot/vmlinuz-virt")).unwrap();
    assert_eq!(got, b"not really a kernel");
    let o = kvbox(&["images", "--data-dir", d, "path", "kb"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("holds no disk under /disk/"), "{}", out(&o));
    // A bare disk has no files for kernelBoot.
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "bare",
        qcow.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let o = kvbox(&["images", "--data-dir", d, "path", "--files", "bare"]);
    assert!(out(&o).contains("is a bare disk"), "{}", out(&o));

    // A `docker save` archive.
    let docker = tmp.path().join("docker.tar");
    oci::docker_archive(&docker, &[("disk/disk.qcow2", &qcow)]);
    let o = kvbox(&[
        "images",
        "--data-dir",
        d,
        "import",
        "docker/disk",
        docker.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let ls = out(&kvbox(&["images", "--data-dir", d, "ls"]));
    for want in [
        "quay.io/x/disk:1",
        "kb:latest",
        "bare:latest",
        "docker/disk:latest",
    ] {
        assert!(ls.contains(want), "{ls}");
    }
    assert!(
        ls.lines()
            .any(|l| l.starts_with("kb:latest") && l.contains(" oci ")),
        "{ls}"
    );
}

#[test]
fn bad_container_images_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let f = tmp.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    // A corrupt blob: its digest does not match.
    let layout = tmp.path().join("corrupt");
    oci::layout(&layout, &[("disk/a", &f)]);
    let blobs: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .collect();
    let layer = blobs
        .iter()
        .find(|b| std::fs::read(b.path()).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let mut bytes = std::fs::read(layer.path()).unwrap();
    let n = bytes.len();
    bytes[n - 9] ^= 0xff;
    std::fs::write(layer.path(), bytes).unwrap();
    let o = kvbox(&["images", "--data-dir", d, "import", "x", layout.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("is corrupt"), "{}", out(&o));
    // Two files under /disk/: which one would be the disk?
    let two = tmp.path().join("two");
    oci::layout(&two, &[("disk/a", &f), ("disk/b", &f)]);
    let o = kvbox(&["images", "--data-dir", d, "import", "x", two.to_str().unwrap()]);
    assert!(out(&o).contains("2 files under /disk/"), "{}", out(&o));
    // An archive that is neither an OCI layout nor a docker save.
    let plain = tmp.path().join("plain.tar");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), b"hi").unwrap();
    oci::tar_dir(&src, &plain);
    let o = kvbox(&["images", "--data-dir", d, "import", "x", plain.to_str().unwrap()]);
    assert!(
        out(&o).contains("without oci-layout or manifest.json"),
        "{}",
        out(&o)
    );
    let ls = out(&kvbox(&["images", "--data-dir", d, "ls"]));
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");
    let left: Vec<_> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
}
