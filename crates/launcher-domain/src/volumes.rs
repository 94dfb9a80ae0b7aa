//! The volume plan: for each VMI volume, the file QEMU will open and what the launcher must do first to make it
//! (pure — the launcher carries the plan out). Layout under the runtime directory:
//!
//! | volume | QEMU opens | made by |
//! |---|---|---|
//! | containerDisk | `disks/<name>.qcow2` | a qcow2 overlay on the local image (never written: ephemeral) |
//! | ephemeral | `disks/<name>.qcow2` | a qcow2 overlay on the PVC's `disk.img` |
//! | emptyDisk | `empty-disks/<name>.qcow2` | a sparse qcow2 of `capacity` |
//! | persistentVolumeClaim, dataVolume | `<source>/disk.img`, or `<source>` if a block device | nothing |
//! | hostDisk | `path` | created sparse for `DiskOrCreate` if missing |
//! | cloudInitNoCloud / ConfigDrive | `cloud-init/noCloud.iso` / `cloud-init/configdrive.iso` | an ISO |
//! | configMap, secret, downwardAPI, serviceAccount | `config/<name>.iso` | an ISO of the source directory's files |
//!
//! `sources` maps volume names to local paths: the image file (or unpacked image directory) of a containerDisk,
//! the directory or block device of a PVC/DataVolume, the directory of files of a configMap/secret/…, the directory
//! holding the resolved secret (`userdata`/`networkdata`) of a cloud-init `secretRef`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kubevirt_api::quantity;
use kubevirt_api::v1::{CloudInitNoCloudSource, VirtualMachineInstance};

use crate::model::Format;
use crate::{DomainError, ResolvedVolume};

/// Cloud-init flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudInitKind {
    /// ISO label `cidata`.
    NoCloud,
    /// ISO label `config-2`.
    ConfigDrive,
}

/// Data given inline or to be read from a resolved secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// The bytes.
    Inline(Vec<u8>),
    /// A directory holding the secret's keys as files; the first of `keys` present is used.
    Secret {
        /// The directory.
        dir: PathBuf,
        /// Candidate file names.
        keys: [&'static str; 2],
    },
}

/// A cloud-init disk to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudInit {
    /// NoCloud or ConfigDrive.
    pub kind: CloudInitKind,
    /// `user-data`.
    pub user_data: Option<Data>,
    /// `network-config`.
    pub network_data: Option<Data>,
    /// Firmware UUID (NoCloud instance-id, ConfigDrive uuid).
    pub uuid: String,
    /// VMI name and namespace (ConfigDrive instance_id is `<name>.<namespace>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Guest hostname.
    pub hostname: String,
    /// Directories of access-credential Secrets whose SSH public keys go into the meta data (`accessCredentials`
    /// propagated by this kind of cloud-init), in the VMI's order.
    pub ssh_key_dirs: Vec<PathBuf>,
}

/// The directories of the Secrets of `accessCredentials` whose keys are propagated by `kind`: each is the source
/// named `<secret>-access-cred` (the launcher pod's volume).
fn ssh_key_dirs(
    vmi: &VirtualMachineInstance,
    kind: CloudInitKind,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<Vec<PathBuf>, DomainError> {
    let mut out = Vec::new();
    for (i, c) in vmi.spec.access_credentials.iter().flatten().enumerate() {
        let Some(key) = c.ssh_public_key.as_ref() else {
            continue;
        };
        let method = &key.propagation_method;
        let mine = match kind {
            CloudInitKind::NoCloud => method.no_cloud.is_some(),
            CloudInitKind::ConfigDrive => method.config_drive.is_some(),
        };
        let Some(secret) = key.source.secret.as_ref().filter(|_| mine) else {
            continue;
        };
        let volume = format!("{}-access-cred", secret.secret_name);
        out.push(
            source(
                sources,
                &volume,
                &format!("spec.accessCredentials[{i}].sshPublicKey.source.secret"),
                &format!("the secret {:?}", secret.secret_name),
            )?
            .to_path_buf(),
        );
    }
    Ok(out)
}

/// What the launcher does before QEMU can open a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepare {
    /// Nothing: open the file as it is.
    Use,
    /// Resolve a PVC source: `disk.img` in a directory, or the block device itself.
    Pvc {
        /// The directory or device.
        source: PathBuf,
        /// The size of a `disk.img` to create when the directory has none (upstream's empty claim as a blank
        /// disk), from the VMI's `volumeStatus`; `None`: a missing `disk.img` is an error.
        create: Option<u64>,
    },
    /// A qcow2 overlay over `base` (a file, or an unpacked image directory holding one disk).
    Overlay {
        /// The base image or directory.
        base: PathBuf,
        /// The disk's path inside an unpacked image directory.
        inner: Option<String>,
    },
    /// A sparse qcow2 of this many bytes.
    Empty {
        /// Virtual size.
        bytes: u64,
    },
    /// A sparse raw file of this many bytes if missing (hostDisk `DiskOrCreate`).
    CreateIfMissing {
        /// Virtual size.
        bytes: u64,
    },
    /// A cloud-init ISO.
    CloudInit(Box<CloudInit>),
    /// An ISO of the files in `dir`, with this volume label.
    FilesIso {
        /// The directory.
        dir: PathBuf,
        /// ISO volume label.
        label: String,
    },
}

/// One volume's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVolume {
    /// Volume name.
    pub name: String,
    /// What to do first.
    pub prepare: Prepare,
    /// What QEMU will open (the launcher may correct `block`/`direct_io` after looking at the file).
    pub resolved: ResolvedVolume,
}

fn file(path: PathBuf, format: Format) -> ResolvedVolume {
    ResolvedVolume {
        path,
        format,
        block: false,
        direct_io: true,
    }
}

fn source<'a>(
    sources: &'a BTreeMap<String, PathBuf>,
    name: &str,
    field: &str,
    what: &str,
) -> Result<&'a Path, DomainError> {
    sources.get(name).map(PathBuf::as_path).ok_or_else(|| {
        DomainError::invalid(
            field,
            format!("no local source for {what} (give one with --volume-source {name}=PATH)"),
        )
    })
}

fn inline(text: Option<&String>, b64: Option<&String>, field: &str) -> Result<Option<Data>, DomainError> {
    if let Some(t) = text {
        return Ok(Some(Data::Inline(t.clone().into_bytes())));
    }
    if let Some(b) = b64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| DomainError::invalid(field, format!("not base64: {e}")))?;
        return Ok(Some(Data::Inline(bytes)));
    }
    Ok(None)
}

fn cloud_init_data(
    src: &CloudInitNoCloudSource,
    at: &str,
    name: &str,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<(Option<Data>, Option<Data>), DomainError> {
    let secret = |field: &str, keys| -> Result<Data, DomainError> {
        Ok(Data::Secret {
            dir: source(sources, name, field, "the referenced secret")?.to_path_buf(),
            keys,
        })
    };
    let user = match inline(
        src.user_data.as_ref(),
        src.user_data_base64.as_ref(),
        &format!("{at}.userDataBase64"),
    )? {
        Some(d) => Some(d),
        None if src.secret_ref.is_some() => {
            Some(secret(&format!("{at}.secretRef"), ["userdata", "userData"])?)
        }
        None => None,
    };
    let network = match inline(
        src.network_data.as_ref(),
        src.network_data_base64.as_ref(),
        &format!("{at}.networkDataBase64"),
    )? {
        Some(d) => Some(d),
        None if src.network_data_secret_ref.is_some() => Some(secret(
            &format!("{at}.networkDataSecretRef"),
            ["networkdata", "networkData"],
        )?),
        None => None,
    };
    Ok((user, network))
}

fn bytes_of(
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    field: &str,
) -> Result<u64, DomainError> {
    let v = quantity::parse(&q.0)
        .map_err(|e| DomainError::invalid(field, e.to_string()))?
        .value();
    u64::try_from(v)
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(|| DomainError::invalid(field, format!("{} is not a positive size", q.0)))
}

/// The size of a blank `disk.img` for claim volume `name`, as upstream's handler sizes it: the claim's request
/// when smaller than its capacity, else the capacity, aligned down to 1 MiB (from `status.volumeStatus`).
#[must_use]
pub fn blank_size(vmi: &VirtualMachineInstance, name: &str) -> Option<u64> {
    let info = vmi
        .status
        .as_ref()?
        .volume_status
        .as_ref()?
        .iter()
        .find(|s| s.name == name)?
        .persistent_volume_claim_info
        .as_ref()?;
    let of = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        m.and_then(|m| m.get("storage"))
            .and_then(|q| quantity::parse(&q.0).ok())
            .and_then(|q| u64::try_from(q.value()).ok())
    };
    let capacity = of(info.capacity.as_ref());
    let request = of(info.requests.as_ref());
    let size = match (request, capacity) {
        (Some(r), Some(c)) if r < c => r,
        (_, Some(c)) => c,
        (Some(r), None) => r,
        (None, None) => return None,
    };
    Some(size / (1 << 20) * (1 << 20))
}

/// Where a launcher in a pod finds the data of volumes its VMI reads from the API, at upstream's paths under the
/// container filesystem `root` (`/` in a cluster, the box pod runtime's `--mount-root`): Secrets, ConfigMaps and
/// the downward API under `var/run/kubevirt-private/{secret,config-map,downwardapi}/<volume>`, cloud-init Secrets
/// under `secret/<volume>/`, a serviceAccount's token under `var/run/secrets/kubernetes.io/serviceaccount`. Only
/// paths that exist are returned. Access-credential Secrets are there as `<secret>-access-cred`.
#[must_use]
pub fn pod_sources(vmi: &VirtualMachineInstance, root: &Path) -> BTreeMap<String, PathBuf> {
    let private = root.join("var/run/kubevirt-private");
    let mut out = BTreeMap::new();
    for v in vmi.spec.volumes.iter().flatten() {
        if v.persistent_volume_claim.is_some() || v.data_volume.is_some() {
            let dir = private.join("vmi-disks").join(&v.name);
            if dir.is_dir() {
                out.insert(v.name.clone(), dir);
            }
            continue;
        }
        let cloud_init_secret = v
            .cloud_init_no_cloud
            .as_ref()
            .is_some_and(|c| c.secret_ref.is_some() || c.network_data_secret_ref.is_some())
            || v.cloud_init_config_drive
                .as_ref()
                .is_some_and(|c| c.secret_ref.is_some() || c.network_data_secret_ref.is_some());
        let dir = if v.secret.is_some() || cloud_init_secret {
            private.join("secret").join(&v.name)
        } else if v.config_map.is_some() {
            private.join("config-map").join(&v.name)
        } else if v.downward_api.is_some() {
            private.join("downwardapi").join(&v.name)
        } else if v.service_account.is_some() {
            root.join("var/run/secrets/kubernetes.io/serviceaccount")
        } else {
            continue;
        };
        if dir.is_dir() {
            out.insert(v.name.clone(), dir);
        }
    }
    for c in vmi.spec.access_credentials.iter().flatten() {
        let secret = c
            .ssh_public_key
            .as_ref()
            .and_then(|k| k.source.secret.as_ref())
            .or_else(|| c.user_password.as_ref().and_then(|p| p.source.secret.as_ref()))
            .map(|s| s.secret_name.clone());
        if let Some(volume) = secret.map(|s| format!("{s}-access-cred")) {
            let dir = private.join("secret").join(&volume);
            if dir.is_dir() {
                out.insert(volume, dir);
            }
        }
    }
    out
}

/// Plans every volume of `vmi` under `runtime_dir`.
///
/// # Errors
/// A volume kind this launcher cannot provide, a missing local source, or malformed inline data.
#[allow(clippy::too_many_lines)] // one arm per volume kind reads best as one table
pub fn plan(
    vmi: &VirtualMachineInstance,
    runtime_dir: &Path,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<Vec<PlannedVolume>, DomainError> {
    let mut out = Vec::new();
    let uuid = vmi
        .spec
        .domain
        .firmware
        .as_ref()
        .and_then(|f| f.uuid.clone())
        .or_else(|| vmi.metadata.uid.clone())
        .unwrap_or_default();
    let vmi_name = vmi.metadata.name.clone().unwrap_or_default();
    let namespace = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let hostname = vmi.spec.hostname.clone().unwrap_or_else(|| vmi_name.clone());
    let mut cloud_init_seen = false;
    for (idx, v) in vmi.spec.volumes.as_deref().unwrap_or_default().iter().enumerate() {
        let at = format!("spec.volumes[{idx}]");
        let name = v.name.clone();
        let overlay = runtime_dir.join("disks").join(format!("{name}.qcow2"));
        let (prepare, resolved) = if let Some(cd) = v.container_disk.as_ref() {
            let base = source(
                sources,
                &name,
                &format!("{at}.containerDisk.image"),
                &format!("image {:?}", cd.image),
            )?;
            (
                Prepare::Overlay {
                    base: base.to_path_buf(),
                    inner: cd.path.clone(),
                },
                file(overlay, Format::Qcow2),
            )
        } else if let Some(e) = v.ephemeral.as_ref() {
            let claim = e
                .persistent_volume_claim
                .as_ref()
                .map_or("", |p| p.claim_name.as_str());
            let dir = source(
                sources,
                &name,
                &format!("{at}.ephemeral.persistentVolumeClaim"),
                &format!("claim {claim:?}"),
            )?;
            (
                Prepare::Overlay {
                    base: dir.join("disk.img"),
                    inner: None,
                },
                file(overlay, Format::Qcow2),
            )
        } else if let Some(pvc) = v.persistent_volume_claim.as_ref() {
            let src = source(
                sources,
                &name,
                &format!("{at}.persistentVolumeClaim.claimName"),
                &format!("claim {:?}", pvc.claim_name),
            )?;
            (
                Prepare::Pvc {
                    source: src.to_path_buf(),
                    create: blank_size(vmi, &name),
                },
                file(src.join("disk.img"), Format::Raw),
            )
        } else if let Some(dv) = v.data_volume.as_ref() {
            let src = source(
                sources,
                &name,
                &format!("{at}.dataVolume.name"),
                &format!("data volume {:?}", dv.name),
            )?;
            (
                Prepare::Pvc {
                    source: src.to_path_buf(),
                    create: blank_size(vmi, &name),
                },
                file(src.join("disk.img"), Format::Raw),
            )
        } else if let Some(ed) = v.empty_disk.as_ref() {
            let bytes = bytes_of(&ed.capacity, &format!("{at}.emptyDisk.capacity"))?;
            (
                Prepare::Empty { bytes },
                file(
                    runtime_dir.join("empty-disks").join(format!("{name}.qcow2")),
                    Format::Qcow2,
                ),
            )
        } else if let Some(hd) = v.host_disk.as_ref() {
            let path = PathBuf::from(&hd.path);
            if !path.is_absolute() {
                return Err(DomainError::invalid(
                    format!("{at}.hostDisk.path"),
                    "must be an absolute path",
                ));
            }
            let prepare = match hd.r#type.as_str() {
                "Disk" => Prepare::Use,
                "DiskOrCreate" => {
                    let Some(c) = hd.capacity.as_ref() else {
                        return Err(DomainError::invalid(
                            format!("{at}.hostDisk.capacity"),
                            "required for DiskOrCreate",
                        ));
                    };
                    Prepare::CreateIfMissing {
                        bytes: bytes_of(c, &format!("{at}.hostDisk.capacity"))?,
                    }
                }
                other => {
                    return Err(DomainError::invalid(
                        format!("{at}.hostDisk.type"),
                        format!("{other:?} is not Disk or DiskOrCreate"),
                    ));
                }
            };
            (prepare, file(path, Format::Raw))
        } else if let Some((kind, src, field)) = v
            .cloud_init_no_cloud
            .as_ref()
            .map(|s| (CloudInitKind::NoCloud, s.clone(), "cloudInitNoCloud"))
            .or_else(|| {
                v.cloud_init_config_drive.as_ref().map(|s| {
                    let s = CloudInitNoCloudSource {
                        network_data: s.network_data.clone(),
                        network_data_base64: s.network_data_base64.clone(),
                        network_data_secret_ref: s.network_data_secret_ref.clone(),
                        secret_ref: s.secret_ref.clone(),
                        user_data: s.user_data.clone(),
                        user_data_base64: s.user_data_base64.clone(),
                    };
                    (CloudInitKind::ConfigDrive, s, "cloudInitConfigDrive")
                })
            })
        {
            if std::mem::replace(&mut cloud_init_seen, true) {
                return Err(DomainError::invalid(
                    format!("{at}.{field}"),
                    "only one cloud-init volume is allowed",
                ));
            }
            let (user_data, network_data) = cloud_init_data(&src, &format!("{at}.{field}"), &name, sources)?;
            let iso = match kind {
                CloudInitKind::NoCloud => "noCloud.iso",
                CloudInitKind::ConfigDrive => "configdrive.iso",
            };
            (
                Prepare::CloudInit(Box::new(CloudInit {
                    kind,
                    user_data,
                    network_data,
                    uuid: uuid.clone(),
                    name: vmi_name.clone(),
                    namespace: namespace.clone(),
                    hostname: hostname.clone(),
                    ssh_key_dirs: ssh_key_dirs(vmi, kind, sources)?,
                })),
                file(runtime_dir.join("cloud-init").join(iso), Format::Raw),
            )
        } else if let Some((label, field)) = v
            .config_map
            .as_ref()
            .map(|c| (c.volume_label.clone(), "configMap"))
            .or_else(|| v.secret.as_ref().map(|s| (s.volume_label.clone(), "secret")))
            .or_else(|| {
                v.downward_api
                    .as_ref()
                    .map(|d| (d.volume_label.clone(), "downwardAPI"))
            })
            .or_else(|| v.service_account.as_ref().map(|_| (None, "serviceAccount")))
        {
            let dir = source(
                sources,
                &name,
                &format!("{at}.{field}"),
                &format!("the {field} data"),
            )?;
            let label: String = label.unwrap_or_else(|| name.clone()).chars().take(32).collect();
            (
                Prepare::FilesIso {
                    dir: dir.to_path_buf(),
                    label,
                },
                file(
                    runtime_dir.join("config").join(format!("{name}.iso")),
                    Format::Raw,
                ),
            )
        } else {
            let field = if v.sysprep.is_some() {
                "sysprep"
            } else if v.memory_dump.is_some() {
                "memoryDump"
            } else if v.container_path.is_some() {
                "containerPath"
            } else if v.downward_metrics.is_some() {
                "downwardMetrics"
            } else {
                return Err(DomainError::invalid(at, "the volume has no source"));
            };
            return Err(DomainError::unsupported(
                format!("{at}.{field}"),
                "this volume source",
            ));
        };
        out.push(PlannedVolume {
            name,
            prepare,
            resolved,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::{CloudInitKind, Data, Prepare, plan};
    use crate::testing::vmi;
    use crate::{DomainError, Format};

    fn sources(names: &[&str]) -> BTreeMap<String, PathBuf> {
        names
            .iter()
            .map(|n| ((*n).to_string(), PathBuf::from(format!("/src/{n}"))))
            .collect()
    }

    #[test]
    fn each_volume_kind_has_its_file_and_preparation() {
        let v = vmi(json!({"domain": {"devices": {}}, "hostname": "h", "volumes": [
            {"name": "cd", "containerDisk": {"image": "img"}},
            {"name": "eph", "ephemeral": {"persistentVolumeClaim": {"claimName": "c"}}},
            {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}},
            {"name": "dv", "dataVolume": {"name": "d"}},
            {"name": "empty", "emptyDisk": {"capacity": "1Gi"}},
            {"name": "host", "hostDisk": {"path": "/data/h.img", "type": "DiskOrCreate", "capacity": "2Mi"}},
            {"name": "ci", "cloudInitNoCloud": {"userDataBase64": "aGVsbG8="}},
            {"name": "cm", "configMap": {"name": "m", "volumeLabel": "CFG"}},
        ]}));
        let p = plan(&v, Path::new("/rt"), &sources(&["cd", "eph", "pvc", "dv", "cm"])).unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|x| {
                (
                    x.name.as_str(),
                    x.resolved.path.to_str().unwrap(),
                    x.resolved.format,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("cd", "/rt/disks/cd.qcow2", Format::Qcow2),
                ("eph", "/rt/disks/eph.qcow2", Format::Qcow2),
                ("pvc", "/src/pvc/disk.img", Format::Raw),
                ("dv", "/src/dv/disk.img", Format::Raw),
                ("empty", "/rt/empty-disks/empty.qcow2", Format::Qcow2),
                ("host", "/data/h.img", Format::Raw),
                ("ci", "/rt/cloud-init/noCloud.iso", Format::Raw),
                ("cm", "/rt/config/cm.iso", Format::Raw),
            ]
        );
        assert_eq!(
            p[1].prepare,
            Prepare::Overlay {
                base: PathBuf::from("/src/eph/disk.img"),
                inner: None
            }
        );
        assert_eq!(p[4].prepare, Prepare::Empty { bytes: 1 << 30 });
        assert_eq!(p[5].prepare, Prepare::CreateIfMissing { bytes: 2 << 20 });
        match &p[6].prepare {
            Prepare::CloudInit(ci) => {
                assert_eq!(
                    (ci.kind, ci.user_data.clone(), ci.hostname.as_str()),
                    (CloudInitKind::NoCloud, Some(Data::Inline(b"hello".to_vec())), "h")
                );
                assert_eq!(ci.uuid, "11111111-2222-4333-8444-555555555555");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p[7].prepare,
            Prepare::FilesIso {
                dir: PathBuf::from("/src/cm"),
                label: "CFG".into()
            }
        );
    }

    #[test]
    fn refusals_name_the_volume_field() {
        let cases = [
            (
                json!([{"name": "cd", "containerDisk": {"image": "img"}}]),
                "spec.volumes[0].containerDisk.image",
            ),
            (
                json!([{"name": "ci", "cloudInitNoCloud": {"userDataBase64": "%%%"}}]),
                "spec.volumes[0].cloudInitNoCloud.userDataBase64",
            ),
            (
                json!([{"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "s"}}}]),
                "spec.volumes[0].cloudInitNoCloud.secretRef",
            ),
            (
                json!([{"name": "a", "cloudInitNoCloud": {"userData": "x"}}, {"name": "b", "cloudInitConfigDrive": {"userData": "y"}}]),
                "spec.volumes[1].cloudInitConfigDrive",
            ),
            (
                json!([{"name": "h", "hostDisk": {"path": "rel.img", "type": "Disk"}}]),
                "spec.volumes[0].hostDisk.path",
            ),
            (
                json!([{"name": "s", "sysprep": {"configMap": {"name": "x"}}}]),
                "spec.volumes[0].sysprep",
            ),
        ];
        for (vols, want) in cases {
            let v = vmi(json!({"domain": {"devices": {}}, "volumes": vols}));
            let err = plan(&v, Path::new("/rt"), &BTreeMap::new()).unwrap_err();
            let field = match &err {
                DomainError::Invalid { field, .. } | DomainError::Unsupported { field, .. } => field.clone(),
            };
            assert_eq!(field, want, "{err}");
        }
    }
}
