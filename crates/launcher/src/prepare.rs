//! Carrying out the volume plan: qcow2 overlays, empty disks, PVC resolution, host disks, cloud-init and config
//! ISOs. Every file made here lives under the runtime directory (except a `DiskOrCreate` host disk, which is the
//! user's), so removing that directory undoes it.

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use launcher_domain::volumes::{CloudInitKind, Data, PlannedVolume, Prepare};
use launcher_domain::{Format, ResolvedVolume};

/// Why a volume could not be prepared; names the volume.
#[derive(Debug, thiserror::Error)]
#[error("volume {volume:?}: {message}")]
pub struct PrepareError {
    /// Volume name.
    pub volume: String,
    /// What failed.
    pub message: String,
}

fn fail(volume: &str, message: impl Into<String>) -> PrepareError {
    PrepareError {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// `qemu-img info` of an image: its format, after checking it is readable and not corrupt.
fn image_format(volume: &str, path: &Path) -> Result<Format, PrepareError> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .map_err(|e| {
            fail(
                volume,
                format!("cannot run qemu-img (Debian package qemu-utils): {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(fail(
            volume,
            format!(
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(volume, format!("qemu-img info: {e}")))?;
    match info.get("format").and_then(serde_json::Value::as_str) {
        Some("qcow2") => {
            let check = Command::new("qemu-img")
                .args(["check", "-q"])
                .arg(path)
                .output()
                .map_err(|e| fail(volume, e.to_string()))?;
            if check.status.success() {
                Ok(Format::Qcow2)
            } else {
                Err(fail(
                    volume,
                    format!(
                        "{} is a corrupt qcow2 image: {}",
                        path.display(),
                        String::from_utf8_lossy(&check.stderr).trim()
                    ),
                ))
            }
        }
        Some("raw") => Ok(Format::Raw),
        Some(other) => Err(fail(
            volume,
            format!("{}: unsupported image format {other}", path.display()),
        )),
        None => Err(fail(
            volume,
            format!("{}: qemu-img reported no format", path.display()),
        )),
    }
}

fn qemu_img(volume: &str, args: &[&str]) -> Result<(), PrepareError> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| fail(volume, format!("cannot run qemu-img: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            volume,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn mkdir_parent(volume: &str, path: &Path) -> Result<(), PrepareError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| fail(volume, format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

/// Whether files in `dir` can be opened with O_DIRECT (tmpfs cannot).
fn supports_direct_io(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .is_ok()
}

/// The image file of a containerDisk source: the file itself, or inside an unpacked image directory `inner` or
/// the single file under `disk/`.
fn base_image(volume: &str, base: &Path, inner: Option<&str>) -> Result<PathBuf, PrepareError> {
    let meta = std::fs::metadata(base).map_err(|e| fail(volume, format!("{}: {e}", base.display())))?;
    if !meta.is_dir() {
        return Ok(base.to_path_buf());
    }
    if let Some(i) = inner {
        // `containerDisk.path`: a file of the image, never outside it.
        let rel = Path::new(i.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
        {
            return Err(fail(volume, format!("containerDisk.path {i:?} leaves the image")));
        }
        let file = base.join(rel);
        if !file.is_file() {
            return Err(fail(
                volume,
                format!("containerDisk.path {i:?} is not a file in the image"),
            ));
        }
        return Ok(file);
    }
    let disk = base.join("disk");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&disk)
        .map_err(|e| fail(volume, format!("{}: {e}", disk.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    match files.len() {
        1 => Ok(files.remove(0)),
        n => Err(fail(
            volume,
            format!(
                "{} holds {n} files; a container disk has exactly one",
                disk.display()
            ),
        )),
    }
}

fn read_data(volume: &str, d: &Data) -> Result<Vec<u8>, PrepareError> {
    match d {
        Data::Inline(b) => Ok(b.clone()),
        Data::Secret { dir, keys } => keys
            .iter()
            .find_map(|k| std::fs::read(dir.join(k)).ok())
            .ok_or_else(|| fail(volume, format!("{} has none of {keys:?}", dir.display()))),
    }
}

/// The SSH public keys in access-credential Secret directories, as upstream reads them: every non-empty file of
/// each Secret ([`crate::credentials::secret_files`]), directories in order.
fn public_keys(volume: &str, dirs: &[PathBuf]) -> Result<Vec<String>, PrepareError> {
    let mut keys = Vec::new();
    for dir in dirs {
        let files = crate::credentials::secret_files(dir)
            .map_err(|e| fail(volume, format!("Unable to read public keys found at volume: {e}")))?;
        keys.extend(files.into_iter().map(|(_, text)| text).filter(|t| !t.is_empty()));
    }
    Ok(keys)
}

/// Prepares one volume; returns what QEMU will open.
///
/// # Errors
/// [`PrepareError`] naming the volume and the cause (missing file, corrupt image, tool failure).
pub fn prepare(v: &PlannedVolume) -> Result<ResolvedVolume, PrepareError> {
    let name = v.name.as_str();
    let mut r = v.resolved.clone();
    match &v.prepare {
        Prepare::Use => {
            let meta =
                std::fs::metadata(&r.path).map_err(|e| fail(name, format!("{}: {e}", r.path.display())))?;
            r.block = meta.file_type().is_block_device();
        }
        Prepare::Pvc { source, create } => {
            let meta =
                std::fs::metadata(source).map_err(|e| fail(name, format!("{}: {e}", source.display())))?;
            if meta.file_type().is_block_device() {
                r.path.clone_from(source);
                r.block = true;
            } else if !r.path.is_file() {
                // An empty claim is a blank disk (upstream's handler makes it): sparse, the claim's size.
                let Some(size) = create.filter(|s| *s >= 1 << 20) else {
                    return Err(fail(name, format!("{} has no disk.img", source.display())));
                };
                std::fs::File::create_new(&r.path)
                    .and_then(|f| f.set_len(size))
                    .map_err(|e| fail(name, format!("creating {}: {e}", r.path.display())))?;
                tracing::info!(volume = name, size, "blank disk.img created");
            }
        }
        Prepare::Overlay { base, inner } => {
            let base = base_image(name, base, inner.as_deref())?;
            let fmt = image_format(name, &base)?;
            let base =
                std::fs::canonicalize(&base).map_err(|e| fail(name, format!("{}: {e}", base.display())))?;
            mkdir_parent(name, &r.path)?;
            let _ = std::fs::remove_file(&r.path);
            let fmt = match fmt {
                Format::Raw => "raw",
                Format::Qcow2 => "qcow2",
            };
            let (b, o) = (base.display().to_string(), r.path.display().to_string());
            qemu_img(name, &["create", "-q", "-f", "qcow2", "-F", fmt, "-b", &b, &o])?;
        }
        Prepare::Empty { bytes } => {
            mkdir_parent(name, &r.path)?;
            let (o, size) = (r.path.display().to_string(), bytes.to_string());
            qemu_img(name, &["create", "-q", "-f", "qcow2", &o, &size])?;
        }
        Prepare::CreateIfMissing { bytes } => {
            if !r.path.exists() {
                mkdir_parent(name, &r.path)?;
                let f = std::fs::File::create(&r.path)
                    .map_err(|e| fail(name, format!("{}: {e}", r.path.display())))?;
                f.set_len(*bytes).map_err(|e| fail(name, e.to_string()))?;
            }
        }
        Prepare::CloudInit(ci) => {
            let user = ci.user_data.as_ref().map(|d| read_data(name, d)).transpose()?;
            let network = ci.network_data.as_ref().map(|d| read_data(name, d)).transpose()?;
            let id = cloudinit::Identity {
                uuid: ci.uuid.clone(),
                name: ci.name.clone(),
                namespace: ci.namespace.clone(),
                hostname: ci.hostname.clone(),
                public_keys: public_keys(name, &ci.ssh_key_dirs)?,
            };
            let (files, label) = match ci.kind {
                CloudInitKind::NoCloud => (
                    cloudinit::nocloud_files(&id, user.as_deref(), network.as_deref()),
                    "cidata",
                ),
                CloudInitKind::ConfigDrive => (
                    cloudinit::configdrive_files(&id, user.as_deref(), network.as_deref()),
                    "config-2",
                ),
            };
            cloudinit::write_iso(&files, label, &r.path).map_err(|e| fail(name, e.to_string()))?;
        }
        Prepare::FilesIso { dir, label } => {
            let mut files = Vec::new();
            let entries =
                std::fs::read_dir(dir).map_err(|e| fail(name, format!("{}: {e}", dir.display())))?;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() {
                    let data = std::fs::read(&p).map_err(|e| fail(name, format!("{}: {e}", p.display())))?;
                    files.push((e.file_name().to_string_lossy().into_owned(), data));
                }
            }
            cloudinit::write_iso(&files, label, &r.path).map_err(|e| fail(name, e.to_string()))?;
        }
    }
    if !r.block {
        r.direct_io = supports_direct_io(&r.path);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_disk_paths_stay_inside_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("disk")).unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("disk/a.qcow2"), b"x").unwrap();
        std::fs::write(dir.path().join("images/b.qcow2"), b"x").unwrap();
        assert_eq!(
            base_image("v", dir.path(), None).unwrap(),
            dir.path().join("disk/a.qcow2")
        );
        assert_eq!(
            base_image("v", dir.path(), Some("/images/b.qcow2")).unwrap(),
            dir.path().join("images/b.qcow2")
        );
        let e = base_image("v", dir.path(), Some("/images/../../etc/passwd")).unwrap_err();
        assert!(e.message.contains("leaves the image"), "{}", e.message);
        let e = base_image("v", dir.path(), Some("/images")).unwrap_err();
        assert!(e.message.contains("is not a file"), "{}", e.message);
    }
}
