//! Container images as files: an OCI image layout (directory, or a tar of one — `oci-archive`) or a `docker save`
//! archive, unpacked layer by layer into a root file system the way a container runtime would (whiteouts and opaque
//! directories honoured; hard links, symlinks, files and directories; device nodes skipped). Blobs are checked
//! against their sha256 digests. Nothing may land outside the root: `..`, absolute link targets used as parents and
//! writes through symlinks are refused. Written by hand over the `tar` and `flate2` crates: the formats are small
//! JSON documents and tar streams, and an image registry client would be the wrong tool for local files.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// Why an image could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OciError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image is malformed or uses something we do not unpack.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(m: impl Into<String>) -> OciError {
    OciError::Invalid(m.into())
}

/// What a file holds, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An OCI image layout directory.
    Layout,
    /// A tar archive (OCI layout or `docker save`), possibly gzip-compressed.
    Archive,
    /// Anything else (a disk image, maybe).
    Other,
}

/// Tells an image layout or archive from other files.
pub(crate) fn kind(path: &Path) -> Kind {
    if path.is_dir() {
        return if path.join("oci-layout").is_file() {
            Kind::Layout
        } else {
            Kind::Other
        };
    }
    let mut head = [0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_full(&mut f, &mut head))
        .unwrap_or(0);
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        // Gzip: a compressed tar, or nothing we know (a disk is never gzip-wrapped for QEMU).
        return Kind::Archive;
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Kind::Archive;
    }
    Kind::Other
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A reader that undoes gzip when the stream starts with its magic.
fn maybe_gunzip(path: &Path) -> Result<Box<dyn Read>, OciError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut magic = [0u8; 2];
    let n = read_full(&mut f, &mut magic).map_err(io(path))?;
    let f = std::io::Cursor::new(magic[..n].to_vec()).chain(f);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// A path inside an archive made relative and free of `.`/`..`; `None` when it would leave the root.
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Fails when any existing ancestor of `rel` under `root` is a symlink (a write there could leave the root).
fn no_symlink_parents(root: &Path, rel: &Path) -> Result<(), OciError> {
    let mut at = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(invalid(format!(
                        "layer writes through the symlink /{}",
                        at.strip_prefix(root).unwrap_or(&at).display()
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Applies one layer (a tar stream) on top of `root`.
fn apply_layer(root: &Path, layer: impl Read) -> Result<(), OciError> {
    let mut ar = tar::Archive::new(layer);
    let entries = ar.entries().map_err(io(root))?;
    for entry in entries {
        let mut e = entry.map_err(io(root))?;
        let raw = e.path().map_err(io(root))?.into_owned();
        let Some(rel) = clean(&raw) else {
            return Err(invalid(format!("layer entry {} leaves the root", raw.display())));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        no_symlink_parents(root, &rel)?;
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let dir = rel
            .parent()
            .map(|p| root.join(p))
            .unwrap_or_else(|| root.to_path_buf());
        if name == ".wh..wh..opq" {
            // Opaque directory: what lower layers put there is hidden.
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.flatten() {
                    remove_any(&c.path());
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_any(&dir.join(hidden));
            continue;
        }
        let dest = root.join(&rel);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        let kind = e.header().entry_type();
        if kind.is_dir() {
            if std::fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
                remove_any(&dest);
            }
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            set_mode(&dest, mode | 0o700)?;
        } else if kind.is_file() || kind.is_gnu_sparse() || kind == tar::EntryType::Continuous {
            remove_any(&dest);
            copy_sparse(&mut e, &dest)?;
            set_mode(&dest, mode)?;
        } else if kind.is_symlink() {
            let target = e
                .link_name()
                .map_err(io(&dest))?
                .ok_or_else(|| invalid(format!("symlink /{} has no target", rel.display())))?;
            remove_any(&dest);
            std::os::unix::fs::symlink(&target, &dest).map_err(io(&dest))?;
        } else if kind.is_hard_link() {
            let target = e
                .link_name()
                .map_err(io(&dest))?
                .ok_or_else(|| invalid(format!("hard link /{} has no target", rel.display())))?;
            let Some(t) = clean(&target) else {
                return Err(invalid(format!("hard link /{} leaves the root", rel.display())));
            };
            no_symlink_parents(root, &t)?;
            remove_any(&dest);
            std::fs::hard_link(root.join(&t), &dest).map_err(io(&dest))?;
        }
        // Device nodes, FIFOs and the like are not needed to boot a VM from the image: skipped.
    }
    Ok(())
}

/// Writes `r` to a new file at `dest`, leaving holes where whole blocks are zero (disk images are mostly holes;
/// GNU sparse entries read back as zeros).
fn copy_sparse(r: &mut impl Read, dest: &Path) -> Result<(), OciError> {
    use std::io::{Seek as _, Write as _};
    let mut f = std::fs::File::create(dest).map_err(io(dest))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len: u64 = 0;
    loop {
        let n = read_full(r, &mut buf).map_err(io(dest))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|b| *b == 0) {
            f.seek(std::io::SeekFrom::Current(n as i64)).map_err(io(dest))?;
        } else {
            f.write_all(&buf[..n]).map_err(io(dest))?;
        }
        len += n as u64;
    }
    f.set_len(len).map_err(io(dest))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), OciError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

fn read_json(path: &Path) -> Result<Value, OciError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// The blob of `digest` in a layout, its digest checked.
fn blob(layout: &Path, digest: &str) -> Result<PathBuf, OciError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(format!("malformed digest {digest:?}")))?;
    if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!("unsupported digest {digest:?} (sha256 only)")));
    }
    let path = layout.join("blobs").join(alg).join(hex);
    let mut f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(&path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let got: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if got != hex.to_ascii_lowercase() {
        return Err(invalid(format!("blob {digest} is corrupt (its sha256 is {got})")));
    }
    Ok(path)
}

/// The layer blobs of the image in an OCI layout, bottom first: the linux/amd64 manifest of an index (or the only
/// one).
fn layout_layers(layout: &Path) -> Result<Vec<PathBuf>, OciError> {
    let mut doc = read_json(&layout.join("index.json"))?;
    for _ in 0..4 {
        if let Some(layers) = doc.get("layers").and_then(Value::as_array) {
            return layers
                .iter()
                .map(|l| {
                    let media = l.get("mediaType").and_then(Value::as_str).unwrap_or_default();
                    if media.contains("zstd") {
                        return Err(invalid(format!(
                            "layer compression {media} is not supported (use gzip)"
                        )));
                    }
                    let digest = l.get("digest").and_then(Value::as_str).unwrap_or_default();
                    blob(layout, digest)
                })
                .collect();
        }
        let manifests = doc
            .get("manifests")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("the image index lists no manifest"))?;
        let pick = manifests
            .iter()
            .find(|m| {
                let p = &m["platform"];
                p["os"] == "linux" && p["architecture"] == "amd64"
            })
            .or_else(|| manifests.iter().find(|m| m.get("platform").is_none()))
            .or(manifests.first())
            .ok_or_else(|| invalid("the image index lists no manifest"))?;
        let digest = pick.get("digest").and_then(Value::as_str).unwrap_or_default();
        doc = read_json(&blob(layout, digest)?)?;
    }
    Err(invalid("image indexes nest too deep"))
}

/// The layers of a `docker save` archive (extracted at `dir`), bottom first.
fn docker_layers(dir: &Path) -> Result<Vec<PathBuf>, OciError> {
    let manifest = read_json(&dir.join("manifest.json"))?;
    let first = manifest
        .as_array()
        .and_then(|m| m.first())
        .ok_or_else(|| invalid("manifest.json lists no image"))?;
    first
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("manifest.json: the image has no Layers"))?
        .iter()
        .map(|l| {
            let rel = l
                .as_str()
                .and_then(|s| clean(Path::new(s)))
                .ok_or_else(|| invalid(format!("manifest.json: bad layer path {l}")))?;
            Ok(dir.join(rel))
        })
        .collect()
}

/// Unpacks the image at `src` (a layout directory or an archive) into `root`, using `scratch` for an archive's
/// contents.
pub(crate) fn unpack(src: &Path, root: &Path, scratch: &Path) -> Result<(), OciError> {
    let layout = match kind(src) {
        Kind::Layout => src.to_path_buf(),
        Kind::Archive => {
            std::fs::create_dir_all(scratch).map_err(io(scratch))?;
            apply_layer(scratch, maybe_gunzip(src)?)?;
            scratch.to_path_buf()
        }
        Kind::Other => {
            return Err(invalid(format!(
                "{}: not an image layout or archive",
                src.display()
            )));
        }
    };
    let layers = if layout.join("oci-layout").is_file() {
        layout_layers(&layout)?
    } else if layout.join("manifest.json").is_file() {
        docker_layers(&layout)?
    } else {
        return Err(invalid(format!(
            "{}: an archive without oci-layout or manifest.json",
            src.display()
        )));
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    for l in &layers {
        apply_layer(root, maybe_gunzip(l)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        for (p, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, p, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_stack_with_whiteouts() {
        let root = tempfile::tempdir().unwrap();
        apply_layer(
            root.path(),
            &tar_of(&[("a/x", b"1"), ("a/y", b"2"), ("b", b"3")], &[])[..],
        )
        .unwrap();
        apply_layer(root.path(), &tar_of(&[("a/.wh.x", b""), ("c", b"4")], &[])[..]).unwrap();
        assert!(!root.path().join("a/x").exists());
        assert!(root.path().join("a/y").exists());
        apply_layer(
            root.path(),
            &tar_of(&[("a/.wh..wh..opq", b""), ("a/z", b"5")], &[])[..],
        )
        .unwrap();
        assert!(!root.path().join("a/y").exists());
        assert_eq!(std::fs::read(root.path().join("a/z")).unwrap(), b"5");
        assert_eq!(std::fs::read(root.path().join("b")).unwrap(), b"3");
    }

    #[test]
    fn nothing_lands_outside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // A symlink to elsewhere, then a file through it.
        let link = tar_of(&[], &[("evil", outside.path().to_str().unwrap())]);
        apply_layer(root.path(), &link[..]).unwrap();
        let through = tar_of(&[("evil/owned", b"x")], &[]);
        let e = apply_layer(root.path(), &through[..]).unwrap_err();
        assert!(e.to_string().contains("symlink /evil"), "{e}");
        assert!(!outside.path().join("owned").exists());
        // `..` in a path is refused (the header is written by hand: tar::Builder refuses such paths itself).
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../../escape";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let e = apply_layer(root.path(), &b.into_inner().unwrap()[..]).unwrap_err();
        assert!(e.to_string().contains("leaves the root"), "{e}");
    }
}
