//! cloud-init disks as upstream KubeVirt builds them: the file tree ([`nocloud_files`], [`configdrive_files`]) and an
//! ISO 9660 image of a file tree ([`write_iso`], via Debian's `xorrisofs`, as upstream does).
//!
//! NoCloud: label `cidata`; `meta-data` (JSON: `instance-id` = firmware UUID, `local-hostname`, `public-keys` from
//! access credentials), `user-data`, and
//! `network-config` only when network data is given. ConfigDrive: label `config-2`;
//! `openstack/latest/meta_data.json` (`instance_id` = `<name>.<namespace>`, `uuid`, `hostname`), `user_data`,
//! `network_data.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

/// Why an ISO could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// Staging the files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `xorrisofs` is missing or failed.
    #[error("xorrisofs: {0}")]
    Tool(String),
}

/// What the guest is told about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Firmware UUID.
    pub uuid: String,
    /// VMI name.
    pub name: String,
    /// VMI namespace.
    pub namespace: String,
    /// Guest hostname.
    pub hostname: String,
    /// SSH public keys from access credentials (meta data `public-keys` / `public_keys`, keyed "0", "1", ...).
    pub public_keys: Vec<String>,
}

fn keyed(keys: &[String]) -> serde_json::Map<String, serde_json::Value> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (i.to_string(), json!(k)))
        .collect()
}

/// A file of the disk: path relative to the root, contents.
pub type File = (String, Vec<u8>);

/// The NoCloud tree.
#[must_use]
pub fn nocloud_files(id: &Identity, user_data: Option<&[u8]>, network_data: Option<&[u8]>) -> Vec<File> {
    let mut meta = json!({"instance-id": id.uuid, "local-hostname": id.hostname});
    if !id.public_keys.is_empty() {
        meta["public-keys"] = json!(keyed(&id.public_keys));
    }
    let mut files = vec![
        ("meta-data".to_string(), meta.to_string().into_bytes()),
        ("user-data".to_string(), user_data.unwrap_or_default().to_vec()),
    ];
    if let Some(n) = network_data {
        files.push(("network-config".to_string(), n.to_vec()));
    }
    files
}

/// The ConfigDrive tree.
#[must_use]
pub fn configdrive_files(id: &Identity, user_data: Option<&[u8]>, network_data: Option<&[u8]>) -> Vec<File> {
    let mut meta = json!({
        "instance_id": format!("{}.{}", id.name, id.namespace),
        "uuid": id.uuid,
        "hostname": id.hostname,
    });
    if !id.public_keys.is_empty() {
        meta["public_keys"] = json!(keyed(&id.public_keys));
    }
    let mut files = vec![(
        "openstack/latest/meta_data.json".to_string(),
        meta.to_string().into_bytes(),
    )];
    if let Some(u) = user_data {
        files.push(("openstack/latest/user_data".to_string(), u.to_vec()));
    }
    if let Some(n) = network_data {
        files.push(("openstack/latest/network_data.json".to_string(), n.to_vec()));
    }
    files
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IsoError + '_ {
    move |source| IsoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `files` as an ISO with volume label `label` to `out`: staged beside it, then renamed into place.
///
/// # Errors
/// [`IsoError`] when staging fails or `xorrisofs` is missing, fails, or runs over 10 seconds.
pub fn write_iso(files: &[File], label: &str, out: &Path) -> Result<(), IsoError> {
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let staging = dir.join(format!(
        ".{}.staging",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("iso")
    ));
    let _ = std::fs::remove_dir_all(&staging);
    for (rel, data) in files {
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(IsoError::Tool(format!("refusing file name {rel:?}")));
        }
        let p = staging.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, data).map_err(io(&p))?;
    }
    let tmp = out.with_extension("iso.tmp");
    let result = run_xorrisofs(&staging, label, &tmp);
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(io(out))
}

fn run_xorrisofs(dir: &Path, label: &str, out: &Path) -> Result<(), IsoError> {
    let mut child = Command::new("xorrisofs")
        .arg("-output")
        .arg(out)
        .args(["-volid", label, "-joliet", "-rock", "-partition_cyl_align", "on"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| IsoError::Tool(format!("cannot run xorrisofs (Debian package xorriso): {e}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(IsoError::Tool(format!("{status}: {}", err.trim())));
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(IsoError::Tool("timed out after 10 s".into()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(IsoError::Tool(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            uuid: "u-1".into(),
            name: "vm".into(),
            namespace: "ns".into(),
            hostname: "host".into(),
            public_keys: Vec::new(),
        }
    }

    #[test]
    fn access_credential_keys_are_in_the_meta_data() {
        let mut i = id();
        i.public_keys = vec!["ssh-ed25519 AAA a".into(), "ssh-rsa BBB b".into()];
        let f = nocloud_files(&i, None, None);
        let meta: serde_json::Value = serde_json::from_slice(&f[0].1).unwrap();
        assert_eq!(
            meta["public-keys"],
            json!({"0": "ssh-ed25519 AAA a", "1": "ssh-rsa BBB b"})
        );
        let f = configdrive_files(&i, None, None);
        let meta: serde_json::Value = serde_json::from_slice(&f[0].1).unwrap();
        assert_eq!(meta["public_keys"]["1"], "ssh-rsa BBB b");
    }

    #[test]
    fn nocloud_meta_data_and_optional_network_config() {
        let f = nocloud_files(&id(), Some(b"#cloud-config\n"), None);
        assert_eq!(f[0].0, "meta-data");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&f[0].1).unwrap(),
            json!({"instance-id": "u-1", "local-hostname": "host"})
        );
        assert_eq!(f.len(), 2);
        assert_eq!(nocloud_files(&id(), None, Some(b"v2")).len(), 3);
    }

    #[test]
    fn configdrive_instance_id_is_name_dot_namespace() {
        let f = configdrive_files(&id(), Some(b"u"), Some(b"{}"));
        let meta: serde_json::Value = serde_json::from_slice(&f[0].1).unwrap();
        assert_eq!(meta["instance_id"], "vm.ns");
        assert_eq!(meta["uuid"], "u-1");
        assert_eq!(
            f.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            [
                "openstack/latest/meta_data.json",
                "openstack/latest/user_data",
                "openstack/latest/network_data.json"
            ]
        );
    }

    #[test]
    fn iso_has_the_label_and_files() {
        assert!(
            Command::new("xorrisofs").arg("-version").output().is_ok(),
            "xorrisofs missing: scripts/test installs the xorriso package"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cloud-init/noCloud.iso");
        write_iso(&nocloud_files(&id(), Some(b"hello"), None), "cidata", &out).unwrap();
        let iso = std::fs::read(&out).unwrap();
        // The primary volume descriptor (sector 16) holds the label at offset 40.
        assert_eq!(&iso[16 * 2048 + 40..16 * 2048 + 46], b"cidata");
        assert!(iso.windows(5).any(|w| w == b"hello"));
        assert!(!dir.path().join("cloud-init/.noCloud.iso.staging").exists());
    }
}
