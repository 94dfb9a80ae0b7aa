//! Container images for tests, made as a build tool would: an OCI image layout (one gzip layer holding the given
//! files, a config, a manifest, an index), optionally packed into a tar (an OCI archive), or a `docker save` tar.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gzip-compressed layer tar of `files` (path in the image, file on the host).
pub(crate) fn layer(files: &[(&str, &Path)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (inside, host) in files {
        b.append_path_with_name(host, inside.trim_start_matches('/'))
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// Writes an OCI image layout at `layout` with one layer of `files`.
pub(crate) fn layout(layout: &Path, files: &[(&str, &Path)]) {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = layer(files);
    let layer_digest = put_blob(layout, &layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}})
    .to_string();
    let config_digest = put_blob(layout, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let manifest_digest = put_blob(layout, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

/// Packs the directory `dir` into the tar `out`.
pub(crate) fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// An OCI archive (a tar of a layout) of `files` at `out`.
pub(crate) fn archive(out: &Path, files: &[(&str, &Path)]) {
    let tmp = tempfile::tempdir().unwrap();
    layout(tmp.path(), files);
    tar_dir(tmp.path(), out);
}

/// A `docker save` archive of `files` at `out` (layers as `<id>/layer.tar`, uncompressed, as docker writes them).
pub(crate) fn docker_archive(out: &Path, files: &[(&str, &Path)]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (inside, host) in files {
        b.append_path_with_name(host, inside.trim_start_matches('/'))
            .unwrap();
    }
    let layer = b.into_inner().unwrap();
    let id = sha256(&layer);
    std::fs::create_dir_all(tmp.path().join(&id)).unwrap();
    std::fs::write(tmp.path().join(&id).join("layer.tar"), &layer).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"architecture":"amd64","os":"linux"}"#,
    )
    .unwrap();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["test:latest"],
        "Layers": [format!("{id}/layer.tar")]}]);
    std::fs::write(tmp.path().join("manifest.json"), manifest.to_string()).unwrap();
    tar_dir(tmp.path(), out);
}

/// Where the test guest's kernel and initramfs are (scripts/build-test-images).
pub(crate) fn test_images() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images")
}
