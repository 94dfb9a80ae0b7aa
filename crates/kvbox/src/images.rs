//! The box-mode image store: containerDisk and kernelBoot images as local files under `<data-dir>/images/`, where
//! the pod runtime resolves a VMI's `image:` (pulling from registries is a later issue).
//!
//! Layout: one directory per image, named by the SHA-1 of its normalised reference, holding `meta.json` and either
//! the disk as imported (`disk.qcow2` or `disk.raw`) or, for a container image (OCI layout or archive, `docker
//! save` archive; see [`crate::oci`]), its unpacked root file system `rootfs/`. A container image serves
//! containerDisk volumes with the one disk under its `/disk/` (upstream's convention) and kernelBoot with its files
//! (`kernelPath`, `initrdPath`). References are normalised as a container runtime would: no tag means `:latest` (a
//! digest `@sha256:…` is kept as is).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    /// Reading or writing the store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a disk image QEMU can use.
    #[error("{0}")]
    NotADisk(String),
    /// The container image could not be unpacked.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// The image has no disk (a kernelBoot image used as a containerDisk).
    #[error("image {0:?} holds no disk under /disk/ (a kernelBoot image?)")]
    NoDisk(String),
    /// The image is a bare disk (used as a kernelBoot container).
    #[error(
        "image {0:?} is a bare disk, without files: kernelBoot needs a container image holding the kernel"
    )]
    NoFiles(String),
    /// No such image.
    #[error("image {0:?} not found (import it with `kvbox images import {0} FILE`)")]
    NotFound(String),
    /// The reference does not parse.
    #[error("invalid image reference {0:?}")]
    BadReference(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One stored image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Image {
    /// The normalised reference (`registry:5000/kubevirt/fedora:devel`).
    pub(crate) reference: String,
    /// The disk's format, `qcow2` or `raw`; `none` for a container image without a disk.
    pub(crate) format: String,
    /// The disk, relative to the image's directory (absent in stores written before container images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) disk: Option<String>,
    /// A container image: its files are under `rootfs/`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) rootfs: bool,
    /// Bytes on disk.
    pub(crate) size: u64,
    /// When it was imported (RFC 3339).
    pub(crate) imported: String,
}

/// `name[:tag]` or `name@digest` → the reference the store keys by.
pub(crate) fn normalise(reference: &str) -> Result<String, ImageError> {
    let r = reference.trim();
    let bad = || ImageError::BadReference(reference.to_string());
    if r.is_empty()
        || r.chars().any(|c| c.is_whitespace() || c.is_control())
        || r.ends_with(':')
        || r.ends_with('/')
    {
        return Err(bad());
    }
    if r.contains('@') {
        return Ok(r.to_string());
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    Ok(if last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    })
}

/// The store under a data directory.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("images"),
        }
    }

    fn slot(&self, reference: &str) -> PathBuf {
        self.dir
            .join(sha1_smol::Sha1::from(reference).digest().to_string())
    }

    /// Imports `file` (a disk, or a container image layout or archive) as `reference`, replacing an image of the
    /// same reference. Nothing is left behind when it fails.
    pub(crate) fn import(&self, reference: &str, file: &Path) -> Result<Image, ImageError> {
        let reference = normalise(reference)?;
        std::fs::metadata(file).map_err(io(file))?;
        let slot = self.slot(&reference);
        let staging = slot.with_extension("importing");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let staged = stage(&reference, file, &staging);
        let image = match staged {
            Ok(i) => i,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let meta = staging.join("meta.json");
        std::fs::write(&meta, serde_json::to_vec_pretty(&image).unwrap_or_default()).map_err(io(&meta))?;
        let _ = std::fs::remove_dir_all(&slot);
        std::fs::rename(&staging, &slot).map_err(io(&slot))?;
        Ok(image)
    }
}

/// Fills `staging` with the image from `file`.
fn stage(reference: &str, file: &Path, staging: &Path) -> Result<Image, ImageError> {
    let imported = jiff::Timestamp::now().to_string();
    if crate::oci::kind(file) == crate::oci::Kind::Other {
        let format = disk_format(file)?;
        let disk = staging.join(format!("disk.{format}"));
        let size = std::fs::copy(file, &disk).map_err(io(file))?;
        return Ok(Image {
            reference: reference.to_string(),
            format: format.clone(),
            size,
            imported,
            disk: Some(format!("disk.{format}")),
            rootfs: false,
        });
    }
    let root = staging.join("rootfs");
    let scratch = staging.join("archive");
    let unpacked = crate::oci::unpack(file, &root, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    unpacked?;
    let disk = container_disk(&root)?;
    let format = match &disk {
        Some(d) => disk_format(d)?,
        None => "none".into(),
    };
    Ok(Image {
        reference: reference.to_string(),
        format,
        size: tree_size(&root),
        imported,
        disk: disk.and_then(|d| {
            d.strip_prefix(staging)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        }),
        rootfs: true,
    })
}

impl Store {
    fn meta(&self, reference: &str) -> Result<(PathBuf, Image), ImageError> {
        let slot = self.slot(reference);
        let bytes =
            std::fs::read(slot.join("meta.json")).map_err(|_| ImageError::NotFound(reference.into()))?;
        let image = serde_json::from_slice(&bytes).map_err(|_| ImageError::NotFound(reference.into()))?;
        Ok((slot, image))
    }

    /// Every image, by reference.
    pub(crate) fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for e in entries.flatten() {
            let meta = e.path().join("meta.json");
            if let Ok(bytes) = std::fs::read(&meta)
                && let Ok(img) = serde_json::from_slice::<Image>(&bytes)
            {
                out.push(img);
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// The disk file of `reference` (a containerDisk).
    pub(crate) fn resolve(&self, reference: &str) -> Result<PathBuf, ImageError> {
        let reference = normalise(reference)?;
        let (slot, image) = self.meta(&reference)?;
        let disk = match image.disk {
            Some(d) => slot.join(d),
            None if image.rootfs => return Err(ImageError::NoDisk(reference)),
            // Stores from before container images: the disk by its conventional name.
            None => ["disk.qcow2", "disk.raw"]
                .iter()
                .map(|f| slot.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| ImageError::NotFound(reference.clone()))?,
        };
        if disk.is_file() {
            Ok(disk)
        } else if image.rootfs {
            Err(ImageError::NoDisk(reference))
        } else {
            Err(ImageError::NotFound(reference))
        }
    }

    /// The root file system of `reference` (a kernelBoot container).
    pub(crate) fn resolve_files(&self, reference: &str) -> Result<PathBuf, ImageError> {
        let reference = normalise(reference)?;
        let (slot, image) = self.meta(&reference)?;
        if !image.rootfs {
            return Err(ImageError::NoFiles(reference));
        }
        Ok(slot.join("rootfs"))
    }

    /// Removes `reference`.
    pub(crate) fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let reference = normalise(reference)?;
        let slot = self.slot(&reference);
        if !slot.exists() {
            return Err(ImageError::NotFound(reference));
        }
        std::fs::remove_dir_all(&slot).map_err(io(&slot))
    }
}

/// The format of a disk file (qcow2 or raw, without a backing file), from `qemu-img info`.
fn disk_format(file: &Path) -> Result<String, ImageError> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(file)
        .output()
        .map_err(|e| ImageError::NotADisk(format!("cannot run qemu-img (Debian package qemu-utils): {e}")))?;
    if !out.status.success() {
        return Err(ImageError::NotADisk(format!(
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| ImageError::NotADisk(format!("qemu-img info: {e}")))?;
    let format = match info.get("format").and_then(serde_json::Value::as_str) {
        Some(f @ ("qcow2" | "raw")) => f.to_string(),
        other => {
            return Err(ImageError::NotADisk(format!(
                "{}: format {} (only qcow2 and raw disks)",
                file.display(),
                other.unwrap_or("unknown")
            )));
        }
    };
    if format == "qcow2" && info.get("backing-filename").is_some() {
        return Err(ImageError::NotADisk(format!(
            "{}: has a backing file; flatten it with `qemu-img convert` first",
            file.display()
        )));
    }
    Ok(format)
}

/// The containerDisk of an unpacked image: the one regular file under `/disk/` (none: not a containerDisk image).
fn container_disk(root: &Path) -> Result<Option<PathBuf>, ImageError> {
    let dir = root.join("disk");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    match files.len() {
        0 => Ok(None),
        1 => Ok(files.pop()),
        n => Err(ImageError::NotADisk(format!(
            "the image holds {n} files under /disk/; a containerDisk image holds one"
        ))),
    }
}

/// Bytes of the regular files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_a_container_runtime() {
        assert_eq!(normalise("fedora").unwrap(), "fedora:latest");
        assert_eq!(
            normalise("registry:5000/kubevirt/fedora").unwrap(),
            "registry:5000/kubevirt/fedora:latest"
        );
        assert_eq!(
            normalise("registry:5000/kubevirt/fedora:devel").unwrap(),
            "registry:5000/kubevirt/fedora:devel"
        );
        assert_eq!(normalise("quay.io/x@sha256:abc").unwrap(), "quay.io/x@sha256:abc");
        for bad in ["", "a b", "x:", "x/"] {
            assert!(normalise(bad).is_err(), "{bad:?}");
        }
    }
}
