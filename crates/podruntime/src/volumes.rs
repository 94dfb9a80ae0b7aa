//! A pod's volumes as the kubelet sets them up, for the compute container: Secret, ConfigMap, downward-API,
//! projected (service account token via TokenRequest, ConfigMap, Secret, downward API) and emptyDir volumes written under the pod's directory (`volumes/<name>/`, keys as files, `items` honoured, 0600),
//! a persistentVolumeClaim as a link to its bound PV's directory (`local` or `hostPath`),
//! then the container's `volumeMounts` laid out in a directory standing for its filesystem (`rootfs/<mountPath>`:
//! a symlink to the volume, or a copy of one key for a `subPath`). The launcher gets that directory as
//! `--mount-root` and finds everything at the paths it would see in a container. While the pod runs, Secret,
//! ConfigMap and downward-API volumes are refreshed ([`refresh`]), so a rotated key reaches the guest.

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::api::Api;

/// Why a volume could not be set up: the kubelet's `FailedMount` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct MountError {
    /// The pod volume.
    pub volume: String,
    /// Why.
    pub message: String,
}

fn fail(volume: &str, message: impl Into<String>) -> MountError {
    MountError {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// A relative path that stays inside its directory (no `..`, not absolute).
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

fn write_file(dir: &Path, rel: &str, bytes: &[u8], volume: &str) -> Result<(), MountError> {
    let rel = safe_relative(rel).ok_or_else(|| fail(volume, format!("invalid path {rel:?}")))?;
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(volume, e.to_string()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(volume, format!("{}: {e}", path.display())))?;
    std::io::Write::write_all(&mut f, bytes).map_err(|e| fail(volume, e.to_string()))
}

/// Writes `data` (key → bytes) into `dir`, or only `items` (key → path) when given, as the kubelet does.
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    volume: &str,
    what: &str,
) -> Result<(), MountError> {
    match items {
        Some(items) => {
            for i in items {
                let bytes = data.get(&i.key).ok_or_else(|| {
                    // The kubelet's words for each kind.
                    let message = if what == "secret" {
                        format!("references non-existent secret key: {}", i.key)
                    } else {
                        format!("configmap references non-existent config key: {}", i.key)
                    };
                    fail(volume, message)
                })?;
                write_file(dir, &i.path, bytes, volume)?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, volume)?;
            }
        }
    }
    Ok(())
}

fn downward_value(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let map = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                .collect::<String>()
        })
        .unwrap_or_default()
    };
    match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "metadata.labels" => Some(map(m.labels.as_ref())),
        "metadata.annotations" => Some(map(m.annotations.as_ref())),
        p => {
            if let Some(k) = p
                .strip_prefix("metadata.labels['")
                .and_then(|r| r.strip_suffix("']"))
            {
                return m.labels.as_ref().and_then(|l| l.get(k)).cloned();
            }
            p.strip_prefix("metadata.annotations['")
                .and_then(|r| r.strip_suffix("']"))
                .and_then(|k| m.annotations.as_ref().and_then(|a| a.get(k)).cloned())
        }
    }
}

/// A Secret's keys (data and stringData), `None` when it does not exist.
async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    volume: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, MountError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(secret) = api.get_opt(name).await.map_err(|e| fail(volume, e.to_string()))? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Ok(Some(data))
}

/// A ConfigMap's keys (data and binaryData), `None` when it does not exist.
async fn config_map_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    volume: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, MountError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = api.get_opt(name).await.map_err(|e| fail(volume, e.to_string()))? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    Ok(Some(data))
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<k8s_openapi::api::core::v1::DownwardAPIVolumeFile>>,
    dir: &Path,
    volume: &str,
) -> Result<(), MountError> {
    for item in items.into_iter().flatten() {
        let Some(f) = item.field_ref.as_ref() else {
            continue;
        };
        let value = downward_value(pod, &f.field_path).unwrap_or_default();
        write_file(dir, &item.path, value.as_bytes(), volume)?;
    }
    Ok(())
}

/// A token for the pod's service account (the TokenRequest API), as the kubelet fetches one.
async fn account_token(
    client: &kube::Client,
    pod: &Pod,
    src: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    volume: &str,
) -> Result<String, MountError> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: src.audience.clone().into_iter().collect(),
            expiration_seconds: src.expiration_seconds,
            ..Default::default()
        },
        ..Default::default()
    };
    let got = api
        .create_token_request(&sa, &kube::api::PostParams::default(), &req)
        .await
        .map_err(|e| fail(volume, format!("failed to fetch token: {e}")))?;
    got.status
        .map(|s| s.token)
        .ok_or_else(|| fail(volume, "failed to fetch token: the answer has no token"))
}

/// Writes a Secret's or ConfigMap's keys (`what` is `secret` or `configmap`), or fails as the kubelet does when it
/// is missing and not optional.
fn write_source(
    dir: &Path,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    (volume, what, name): (&str, &str, &str),
) -> Result<(), MountError> {
    match data {
        Some(data) => write_keys(dir, &data, items, volume, what),
        None if optional == Some(true) => Ok(()),
        None => Err(fail(volume, format!("{what} \"{name}\" not found"))),
    }
}

/// Where the PV bound to claim `ns/claim` keeps its files on this node (`local` or `hostPath`).
async fn claim_path(
    client: &kube::Client,
    ns: &str,
    claim: &str,
    volume: &str,
) -> Result<PathBuf, MountError> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .map_err(|e| fail(volume, e.to_string()))?
        .ok_or_else(|| fail(volume, format!("persistentvolumeclaim \"{claim}\" not found")))?;
    let pv_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| fail(volume, format!("persistentvolumeclaim \"{claim}\" is not bound")))?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&pv_name)
        .await
        .map_err(|e| fail(volume, e.to_string()))?
        .ok_or_else(|| fail(volume, format!("persistentvolume \"{pv_name}\" not found")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .local
        .map(|l| l.path)
        .or_else(|| spec.host_path.map(|h| h.path))
        .ok_or_else(|| {
            fail(
                volume,
                format!("persistentvolume \"{pv_name}\" is neither local nor hostPath"),
            )
        })?;
    let path = PathBuf::from(path);
    if !path.is_dir() {
        return Err(fail(
            volume,
            format!("{}: no such directory on this node", path.display()),
        ));
    }
    Ok(path)
}

async fn fill(client: &kube::Client, pod: &Pod, v: &Volume, dir: &Path) -> Result<(), MountError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = v.name.as_str();
    if let Some(s) = &v.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, &ns, &secret_name, name).await?;
        write_source(
            dir,
            data,
            s.items.as_ref(),
            s.optional,
            (name, "secret", &secret_name),
        )?;
    } else if let Some(c) = &v.config_map {
        let data = config_map_data(client, &ns, &c.name, name).await?;
        write_source(
            dir,
            data,
            c.items.as_ref(),
            c.optional,
            (name, "configmap", &c.name),
        )?;
    } else if let Some(d) = &v.downward_api {
        downward_files(pod, d.items.as_ref(), dir, name)?;
    } else if let Some(c) = &v.persistent_volume_claim {
        // The volume is the bound PV's directory on this node.
        let path = claim_path(client, &ns, &c.claim_name, name).await?;
        std::fs::remove_dir(dir).map_err(|e| fail(name, e.to_string()))?;
        std::os::unix::fs::symlink(&path, dir).map_err(|e| fail(name, format!("{}: {e}", path.display())))?;
    } else if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = account_token(client, pod, t, name).await?;
                write_file(dir, &t.path, token.as_bytes(), name)?;
            }
            if let Some(c) = &src.config_map {
                let data = config_map_data(client, &ns, &c.name, name).await?;
                write_source(
                    dir,
                    data,
                    c.items.as_ref(),
                    c.optional,
                    (name, "configmap", &c.name),
                )?;
            }
            if let Some(s) = &src.secret {
                let data = secret_data(client, &ns, &s.name, name).await?;
                write_source(dir, data, s.items.as_ref(), s.optional, (name, "secret", &s.name))?;
            }
            if let Some(d) = &src.downward_api {
                downward_files(pod, d.items.as_ref(), dir, name)?;
            }
        }
    }
    // emptyDir and kinds launcher pods do not use: an empty directory.
    Ok(())
}

/// Sets up every volume of `pod` under `pod_dir` and lays out the compute container's mounts; returns the directory
/// standing for the container's filesystem.
///
/// # Errors
/// The first volume that cannot be set up (a missing Secret or ConfigMap that is not optional, a missing key).
pub async fn set_up(client: &kube::Client, pod: &Pod, pod_dir: &Path) -> Result<PathBuf, MountError> {
    let volumes_dir = pod_dir.join("volumes");
    let root = pod_dir.join("rootfs");
    // Fresh every start: a Secret may have changed since the last attempt.
    let _ = std::fs::remove_dir_all(&volumes_dir);
    let _ = std::fs::remove_dir_all(&root);
    let private = |p: &Path| -> Result<(), MountError> {
        std::fs::create_dir_all(p).map_err(|e| fail("", format!("{}: {e}", p.display())))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("", e.to_string()))
    };
    private(&volumes_dir)?;
    private(&root)?;
    let spec = pod.spec.as_ref();
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let dir = volumes_dir.join(&v.name);
        std::fs::create_dir_all(&dir).map_err(|e| fail(&v.name, e.to_string()))?;
        fill(client, pod, v, &dir).await?;
    }
    let mounts = crate::command::main_container(pod)
        .into_iter()
        .flat_map(|c| c.volume_mounts.iter().flatten());
    for m in mounts {
        let source = volumes_dir.join(&m.name);
        if !source.is_dir() {
            return Err(fail(&m.name, "no such volume in the pod"));
        }
        let target_rel = m.mount_path.trim_start_matches('/');
        let target = root.join(
            safe_relative(target_rel)
                .ok_or_else(|| fail(&m.name, format!("invalid mountPath {:?}", m.mount_path)))?,
        );
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(&m.name, e.to_string()))?;
        }
        match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let from = source.join(
                    safe_relative(sub).ok_or_else(|| fail(&m.name, format!("invalid subPath {sub:?}")))?,
                );
                // A key the Secret does not have: the kubelet mounts an empty directory there.
                if from.is_file() {
                    std::fs::copy(&from, &target).map_err(|e| fail(&m.name, e.to_string()))?;
                } else {
                    std::fs::create_dir_all(&target).map_err(|e| fail(&m.name, e.to_string()))?;
                }
            }
            None => std::os::unix::fs::symlink(&source, &target)
                .map_err(|e| fail(&m.name, format!("{}: {e}", target.display())))?,
        }
    }
    Ok(root)
}

/// How often a running pod's Secret, ConfigMap and downward-API volumes are brought up to date (the kubelet's sync
/// period is a minute).
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// Brings a running pod's Secret, ConfigMap, downward-API and projected volumes up to date (a projected
/// service-account token when it is due), as the kubelet does: each is
/// written anew beside the old one and swapped in (the container's mounts link to it; `subPath` copies stay as they
/// were, as with the kubelet). A volume whose source is gone keeps its last contents.
pub async fn refresh(client: &kube::Client, pod: &Pod, pod_dir: &Path) {
    let volumes_dir = pod_dir.join("volumes");
    let now = std::time::SystemTime::now();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let live = volumes_dir.join(&v.name);
        let due = match &v.projected {
            Some(p) => projected_due(p, &live, now),
            None => v.secret.is_some() || v.config_map.is_some() || v.downward_api.is_some(),
        };
        if !due {
            continue;
        }
        let fresh = volumes_dir.join(format!(".{}.new", v.name));
        let old = volumes_dir.join(format!(".{}.old", v.name));
        let _ = std::fs::remove_dir_all(&fresh);
        let _ = std::fs::remove_dir_all(&old);
        if std::fs::create_dir_all(&fresh).is_err() {
            continue;
        }
        match fill(client, pod, v, &fresh).await {
            Ok(()) if !same_files(&live, &fresh) => {
                if std::fs::rename(&live, &old).is_ok() && std::fs::rename(&fresh, &live).is_ok() {
                    tracing::info!(volume = %v.name, "volume updated");
                }
                let _ = std::fs::remove_dir_all(&old);
            }
            Ok(()) => {}
            Err(e) => tracing::debug!(volume = %v.name, error = %e, "volume refresh"),
        }
        let _ = std::fs::remove_dir_all(&fresh);
    }
}

/// Whether a projected volume is refreshed now: always without a service-account token; with one only when the
/// token is due, as the kubelet renews it (at 80% of its lifetime, or after a day), since every fill fetches a new one.
fn projected_due(
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    live: &Path,
    now: std::time::SystemTime,
) -> bool {
    let tokens: Vec<_> = p
        .sources
        .iter()
        .flatten()
        .filter_map(|s| s.service_account_token.as_ref())
        .collect();
    if tokens.is_empty() {
        return true;
    }
    tokens.iter().any(|t| {
        let written = std::fs::metadata(live.join(&t.path))
            .and_then(|m| m.modified())
            .ok();
        let age = written.and_then(|w| now.duration_since(w).ok());
        token_due(age, t.expiration_seconds.unwrap_or(3600))
    })
}

/// The kubelet's rotation rule for a token of `age` (`None`: unknown) that lives `expiration_seconds`.
fn token_due(age: Option<std::time::Duration>, expiration_seconds: i64) -> bool {
    let Some(age) = age else { return true };
    let lifetime = u64::try_from(expiration_seconds).unwrap_or(3600);
    age.as_secs() * 10 >= lifetime * 8 || age.as_secs() >= 24 * 3600
}

/// Whether two volume directories hold the same files with the same contents.
fn same_files(a: &Path, b: &Path) -> bool {
    fn read(d: &Path) -> Option<BTreeMap<PathBuf, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.strip_prefix(d).ok()?.to_path_buf(), std::fs::read(&p).ok()?);
                }
            }
        }
        Some(out)
    }
    match (read(a), read(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_renewed_at_80_percent_of_their_life() {
        use std::time::Duration;
        assert!(!token_due(Some(Duration::from_secs(2879)), 3600));
        assert!(token_due(Some(Duration::from_secs(2880)), 3600));
        assert!(token_due(None, 3600));
        assert!(token_due(Some(Duration::from_secs(86_400)), 1_000_000));
        let dir = tempfile::tempdir().unwrap();
        let p: k8s_openapi::api::core::v1::ProjectedVolumeSource = serde_json::from_value(serde_json::json!(
            {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}))
        .unwrap();
        assert!(
            projected_due(&p, dir.path(), std::time::SystemTime::now()),
            "no token yet"
        );
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let now = std::time::SystemTime::now();
        assert!(!projected_due(&p, dir.path(), now));
        assert!(projected_due(&p, dir.path(), now + Duration::from_secs(2900)));
        let plain: k8s_openapi::api::core::v1::ProjectedVolumeSource =
            serde_json::from_value(serde_json::json!({"sources": [{"configMap": {"name": "c"}}]})).unwrap();
        assert!(projected_due(&plain, dir.path(), now));
    }

    #[test]
    fn volume_contents_compare_by_file() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("k"), "1").unwrap();
        std::fs::write(b.path().join("k"), "1").unwrap();
        assert!(same_files(a.path(), b.path()));
        std::fs::write(b.path().join("k"), "2").unwrap();
        assert!(!same_files(a.path(), b.path()));
        std::fs::write(b.path().join("k"), "1").unwrap();
        std::fs::write(b.path().join("extra"), "").unwrap();
        assert!(!same_files(a.path(), b.path()));
    }

    #[test]
    fn paths_stay_inside() {
        assert!(safe_relative("a/b").is_some());
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("").is_none());
    }

    #[test]
    fn keys_and_items_are_written_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([
            ("userdata".to_string(), b"#cloud-config\n".to_vec()),
            ("other".to_string(), b"x".to_vec()),
        ]);
        write_keys(dir.path(), &data, None, "v", "secret").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("userdata")).unwrap(),
            b"#cloud-config\n"
        );
        let mode = std::fs::metadata(dir.path().join("other"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let items = vec![KeyToPath {
            key: "other".into(),
            path: "sub/renamed".into(),
            mode: None,
        }];
        let d2 = tempfile::tempdir().unwrap();
        write_keys(d2.path(), &data, Some(&items), "v", "secret").unwrap();
        assert_eq!(std::fs::read(d2.path().join("sub/renamed")).unwrap(), b"x");
        assert!(!d2.path().join("userdata").exists());
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "p".into(),
            mode: None,
        }];
        let e = write_keys(d2.path(), &data, Some(&missing), "v", "secret").unwrap_err();
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"v\" : references non-existent secret key: nope"
        );
    }

    #[test]
    fn downward_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1", "b": "2"}}
        }))
        .unwrap();
        assert_eq!(downward_value(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(
            downward_value(&pod, "metadata.labels").unwrap(),
            "a=\"1\"\nb=\"2\"\n"
        );
        assert_eq!(downward_value(&pod, "metadata.labels['b']").unwrap(), "2");
    }
}
