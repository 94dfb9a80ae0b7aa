//! The launcher pod's volumes and the compute container's mounts for what a VMI reads from the API — Secrets,
//! ConfigMaps, the downward API, cloud-init Secrets and access-credential Secrets — and its disks' claims, at
//! upstream's paths under
//! `/var/run/kubevirt-private` (the launcher finds them there; the kubelet or the box pod runtime puts them there).

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};
use kubevirt_api::v1::VirtualMachineInstance;

/// Where the pod's Secret, ConfigMap and downward-API volumes are mounted.
pub const PRIVATE_DIR: &str = "/var/run/kubevirt-private";

fn secret(name: &str, secret_name: &str, optional: Option<bool>) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name.to_string()),
            optional,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: String, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path,
        sub_path: sub_path.map(str::to_string),
        read_only: Some(true),
        ..Default::default()
    }
}

/// A cloud-init Secret: pod volume `<volume>-<suffix>`, its keys `lower`/`camel` mounted one by one as
/// `secret/<volume>/<key>`.
fn cloud_init_secret(
    out: &mut (Vec<Volume>, Vec<VolumeMount>),
    volume: &str,
    suffix: &str,
    secret_name: &str,
    keys: [&str; 2],
) {
    let pod_volume = format!("{volume}-{suffix}");
    out.0.push(secret(&pod_volume, secret_name, None));
    for key in keys {
        out.1.push(mount(
            &pod_volume,
            format!("{PRIVATE_DIR}/secret/{volume}/{key}"),
            Some(key),
        ));
    }
}

/// The pod volumes and compute mounts for `vmi`, in upstream's order and names.
#[must_use]
pub fn render(vmi: &VirtualMachineInstance) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut out = (Vec::new(), Vec::new());
    let disks: Vec<&str> = vmi
        .spec
        .domain
        .devices
        .disks
        .iter()
        .flatten()
        .map(|d| d.name.as_str())
        .collect();
    for v in vmi.spec.volumes.iter().flatten() {
        let name = v.name.as_str();
        let on_disk = disks.contains(&name);
        if let Some(s) = &v.secret {
            out.0.push(secret(
                name,
                s.secret_name.as_deref().unwrap_or_default(),
                s.optional,
            ));
            if on_disk {
                out.1
                    .push(mount(name, format!("{PRIVATE_DIR}/secret/{name}"), None));
            }
        }
        if let Some(c) = &v.config_map {
            out.0.push(Volume {
                name: name.to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: c.name.clone().unwrap_or_default(),
                    optional: c.optional,
                    ..Default::default()
                }),
                ..Default::default()
            });
            if on_disk {
                out.1
                    .push(mount(name, format!("{PRIVATE_DIR}/config-map/{name}"), None));
            }
        }
        if let Some(d) = &v.downward_api {
            out.0.push(Volume {
                name: name.to_string(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: d.fields.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            if on_disk {
                out.1
                    .push(mount(name, format!("{PRIVATE_DIR}/downwardapi/{name}"), None));
            }
        }
        // A claim (a DataVolume's is named like it) is the directory holding the disk's `disk.img`.
        let claim = v
            .persistent_volume_claim
            .as_ref()
            .map(|c| (c.claim_name.clone(), c.read_only))
            .or_else(|| v.data_volume.as_ref().map(|d| (d.name.clone(), None)));
        if let Some((claim_name, read_only)) = claim {
            out.0.push(Volume {
                name: name.to_string(),
                persistent_volume_claim: Some(
                    k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                        claim_name,
                        read_only,
                    },
                ),
                ..Default::default()
            });
            out.1.push(VolumeMount {
                name: name.to_string(),
                mount_path: format!("{PRIVATE_DIR}/vmi-disks/{name}"),
                read_only,
                ..Default::default()
            });
        }
        let cloud_init = v
            .cloud_init_no_cloud
            .as_ref()
            .map(|c| (c.secret_ref.as_ref(), c.network_data_secret_ref.as_ref()))
            .or_else(|| {
                v.cloud_init_config_drive
                    .as_ref()
                    .map(|c| (c.secret_ref.as_ref(), c.network_data_secret_ref.as_ref()))
            });
        if let Some((user, network)) = cloud_init {
            if let Some(s) = user {
                cloud_init_secret(&mut out, name, "udata", &s.name, ["userdata", "userData"]);
            }
            if let Some(s) = network {
                cloud_init_secret(&mut out, name, "ndata", &s.name, ["networkdata", "networkData"]);
            }
        }
    }
    for c in vmi.spec.access_credentials.iter().flatten() {
        let secret_name = c
            .ssh_public_key
            .as_ref()
            .and_then(|k| k.source.secret.as_ref())
            .map(|s| s.secret_name.as_str())
            .or_else(|| {
                c.user_password
                    .as_ref()
                    .and_then(|p| p.source.secret.as_ref())
                    .map(|s| s.secret_name.as_str())
            });
        if let Some(secret_name) = secret_name.filter(|s| !s.is_empty()) {
            let volume = format!("{secret_name}-access-cred");
            // One Secret used by two credentials (say NoCloud and the guest agent) is mounted once: a pod cannot
            // hold two volumes of one name (upstream's renderer adds it twice and the pod is refused).
            if out.0.iter().any(|v| v.name == volume) {
                continue;
            }
            out.0.push(secret(&volume, secret_name, None));
            out.1
                .push(mount(&volume, format!("{PRIVATE_DIR}/secret/{volume}"), None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_config_maps_and_cloud_init_are_mounted_where_upstream_mounts_them() {
        let vmi: VirtualMachineInstance = serde_json::from_value(json!({
            "metadata": {"name": "v"},
            "spec": {"domain": {"devices": {"disks": [{"name": "s"}, {"name": "cm"}, {"name": "ci"}]}},
                "volumes": [
                    {"name": "s", "secret": {"secretName": "mysecret"}},
                    {"name": "cm", "configMap": {"name": "app-config", "optional": true}},
                    {"name": "ci", "cloudInitNoCloud": {"secretRef": {"name": "ud"}, "networkDataSecretRef": {"name": "nd"}}}],
                "accessCredentials": [{"sshPublicKey": {"source": {"secret": {"secretName": "keys"}},
                    "propagationMethod": {"noCloud": {}}}},
                    {"sshPublicKey": {"source": {"secret": {"secretName": "keys"}},
                    "propagationMethod": {"qemuGuestAgent": {"users": ["root"]}}}}]}
        }))
        .unwrap();
        let (volumes, mounts) = render(&vmi);
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["s", "cm", "ci-udata", "ci-ndata", "keys-access-cred"]);
        let paths: Vec<(&str, &str, Option<&str>)> = mounts
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.sub_path.as_deref()))
            .collect();
        assert_eq!(
            paths,
            [
                ("s", "/var/run/kubevirt-private/secret/s", None),
                ("cm", "/var/run/kubevirt-private/config-map/cm", None),
                (
                    "ci-udata",
                    "/var/run/kubevirt-private/secret/ci/userdata",
                    Some("userdata")
                ),
                (
                    "ci-udata",
                    "/var/run/kubevirt-private/secret/ci/userData",
                    Some("userData")
                ),
                (
                    "ci-ndata",
                    "/var/run/kubevirt-private/secret/ci/networkdata",
                    Some("networkdata")
                ),
                (
                    "ci-ndata",
                    "/var/run/kubevirt-private/secret/ci/networkData",
                    Some("networkData")
                ),
                (
                    "keys-access-cred",
                    "/var/run/kubevirt-private/secret/keys-access-cred",
                    None
                ),
            ]
        );
        assert_eq!(volumes[1].config_map.as_ref().unwrap().optional, Some(true));
    }
}
