//! The box-mode image store: containerDisk and kernelBoot images as local files under `<data-dir>/images/`, where
//! the pod runtime resolves a VMI's `image:` (pulling from registries is a later issue).
//!
//! Layout: one directory per image, named by the SHA-1 of its normalised reference, holding `meta.json` and the
//! disk as imported (`disk.qcow2` or `disk.raw`). References are normalised as a container runtime would:
//! no tag means `:latest` (a digest `@sha256:…` is kept as is).

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
    /// `qcow2` or `raw`.
    pub(crate) format: String,
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

    /// Imports `file` as `reference`, replacing an image of the same reference.
    pub(crate) fn import(&self, reference: &str, file: &Path) -> Result<Image, ImageError> {
        let reference = normalise(reference)?;
        let out = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(file)
            .output()
            .map_err(|e| {
                ImageError::NotADisk(format!("cannot run qemu-img (Debian package qemu-utils): {e}"))
            })?;
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
        let slot = self.slot(&reference);
        let staging = slot.with_extension("importing");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let disk = staging.join(format!("disk.{format}"));
        let copied = std::fs::copy(file, &disk).map_err(io(file));
        let size = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let image = Image {
            reference,
            format,
            size,
            imported: jiff::Timestamp::now().to_string(),
        };
        let meta = staging.join("meta.json");
        std::fs::write(&meta, serde_json::to_vec_pretty(&image).unwrap_or_default()).map_err(io(&meta))?;
        let _ = std::fs::remove_dir_all(&slot);
        std::fs::rename(&staging, &slot).map_err(io(&slot))?;
        Ok(image)
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

    /// The disk file of `reference`.
    pub(crate) fn resolve(&self, reference: &str) -> Result<PathBuf, ImageError> {
        let reference = normalise(reference)?;
        let slot = self.slot(&reference);
        for f in ["disk.qcow2", "disk.raw"] {
            if slot.join(f).is_file() {
                return Ok(slot.join(f));
            }
        }
        Err(ImageError::NotFound(reference))
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
