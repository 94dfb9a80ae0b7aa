//! The volume, access-credential and cloud-init flags of `virtctl create vm`: containerDisks, PVCs, DataVolume
//! templates (`--volume-import` of every CDI source type upstream offers), sysprep, access credentials and the
//! generated cloud-init user data — each checked and named as upstream's virtctl does.

use serde_json::{Value, json};

use super::builder::{Builder, VmArgs, dns_label, flag_err, params, push, random_suffix, split_prefixed};
use crate::error::Failure;

const CD: &str = "volume-containerdisk";
const PVC: &str = "volume-pvc";
const IMPORT: &str = "volume-import";

/// `--volume-containerdisk src:IMAGE[,name:N][,bootorder:K]`.
pub(crate) fn containerdisks(b: &mut Builder, list: &[String], vm_name: &str) -> Result<(), Failure> {
    for (i, s) in list.iter().enumerate() {
        let p = params(CD, s, &["name", "src", "bootorder"])?;
        let src = p
            .get("src")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| flag_err(CD, "src must be specified"))?;
        let name = p
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("{vm_name}-containerdisk-{i}"));
        dns_label(CD, &name)?;
        b.volume(CD, json!({"name": name, "containerDisk": {"image": src}}))?;
        b.boot_disk(CD, &name, p.get("bootorder"))?;
    }
    Ok(())
}

/// `--volume-pvc src:PVC[,name:N][,bootorder:K]`.
pub(crate) fn pvcs(b: &mut Builder, list: &[String]) -> Result<(), Failure> {
    for s in list {
        let p = params(PVC, s, &["name", "src", "bootorder"])?;
        let src = p
            .get("src")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| flag_err(PVC, "src must be specified"))?;
        let (ns, claim) = split_prefixed(src).map_err(|e| flag_err(PVC, format!("src invalid: {e}")))?;
        if !ns.is_empty() {
            return Err(flag_err(
                PVC,
                format!("not allowed to specify namespace of pvc \"{claim}\""),
            ));
        }
        let name = p.get("name").cloned().unwrap_or_else(|| claim.clone());
        dns_label(PVC, &name)?;
        b.volume(
            PVC,
            json!({"name": name, "persistentVolumeClaim": {"claimName": claim}}),
        )?;
        b.boot_disk(PVC, &name, p.get("bootorder"))?;
    }
    Ok(())
}

const COMMON: &[&str] = &["type", "name", "size", "bootorder"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON.iter().chain(extra).copied().collect()
}

/// A source given as `src:NS/NAME` that must name its namespace (pvc, snapshot).
fn namespaced(p: &std::collections::BTreeMap<String, String>, kind: &str) -> Result<Value, Failure> {
    let src = p
        .get("src")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| flag_err(IMPORT, "src must be specified"))?;
    let (ns, name) = split_prefixed(src).map_err(|e| flag_err(IMPORT, format!("src invalid: {e}")))?;
    if ns.is_empty() {
        return Err(flag_err(
            IMPORT,
            format!("namespace of {kind} \"{name}\" must be specified"),
        ));
    }
    Ok(json!({"name": name, "namespace": ns}))
}

/// Copies the present params `keys` (param name → field name) into an object.
fn fields(p: &std::collections::BTreeMap<String, String>, keys: &[(&str, &str)]) -> Value {
    let mut o = serde_json::Map::new();
    for (param, field) in keys {
        if let Some(v) = p.get(*param) {
            let v = if param.ends_with("headers") {
                json!(v.split(';').collect::<Vec<_>>())
            } else {
                json!(v)
            };
            o.insert((*field).to_string(), v);
        }
    }
    Value::Object(o)
}

/// The DataVolume spec of one `--volume-import` (without storage) and which params it takes.
fn import_spec(kind: &str, s: &str) -> Result<(Value, std::collections::BTreeMap<String, String>), Failure> {
    let url_required = |p: &std::collections::BTreeMap<String, String>, kind: &str| {
        if p.get("url").is_none_or(String::is_empty) {
            Err(flag_err(
                IMPORT,
                format!("url is required with {kind} volume source"),
            ))
        } else {
            Ok(())
        }
    };
    let (spec, p) = match kind {
        "blank" => (json!({"source": {"blank": {}}}), params(IMPORT, s, &with(&[]))?),
        "gcs" => {
            let p = params(IMPORT, s, &with(&["secretref", "url"]))?;
            url_required(&p, "gcs")?;
            (
                json!({"source": {"gcs": fields(&p, &[("url", "url"), ("secretref", "secretRef")])}}),
                p,
            )
        }
        "http" => {
            let p = params(
                IMPORT,
                s,
                &with(&[
                    "certconfigmap",
                    "extraheaders",
                    "secretextraheaders",
                    "secretref",
                    "url",
                ]),
            )?;
            url_required(&p, "http")?;
            let f = fields(
                &p,
                &[
                    ("url", "url"),
                    ("secretref", "secretRef"),
                    ("certconfigmap", "certConfigMap"),
                    ("extraheaders", "extraHeaders"),
                    ("secretextraheaders", "secretExtraHeaders"),
                ],
            );
            (json!({"source": {"http": f}}), p)
        }
        "imageio" => {
            let p = params(IMPORT, s, &with(&["certconfigmap", "diskid", "secretref", "url"]))?;
            if p.get("url").is_none_or(String::is_empty) || p.get("diskid").is_none_or(String::is_empty) {
                return Err(flag_err(
                    IMPORT,
                    "url and diskid are both required with imageio volume source",
                ));
            }
            let f = fields(
                &p,
                &[
                    ("url", "url"),
                    ("diskid", "diskId"),
                    ("secretref", "secretRef"),
                    ("certconfigmap", "certConfigMap"),
                ],
            );
            (json!({"source": {"imageio": f}}), p)
        }
        "pvc" | "snapshot" => {
            let p = params(IMPORT, s, &with(&["src"]))?;
            (json!({"source": {kind: namespaced(&p, kind)?}}), p)
        }
        "registry" => {
            let p = params(
                IMPORT,
                s,
                &with(&["certconfigmap", "imagestream", "pullmethod", "secretref", "url"]),
            )?;
            if let Some(m) = p.get("pullmethod")
                && !m.is_empty()
                && m != "pod"
                && m != "node"
            {
                return Err(flag_err(IMPORT, "pullmethod must be set to pod or node"));
            }
            let url = p.get("url").is_some_and(|u| !u.is_empty());
            let stream = p.get("imagestream").is_some_and(|u| !u.is_empty());
            if url == stream {
                return Err(flag_err(
                    IMPORT,
                    "exactly one of url or imagestream must be defined",
                ));
            }
            let f = fields(
                &p,
                &[
                    ("url", "url"),
                    ("imagestream", "imageStream"),
                    ("pullmethod", "pullMethod"),
                    ("secretref", "secretRef"),
                    ("certconfigmap", "certConfigMap"),
                ],
            );
            (json!({"source": {"registry": f}}), p)
        }
        "s3" => {
            let p = params(IMPORT, s, &with(&["certconfigmap", "secretref", "url"]))?;
            url_required(&p, "s3")?;
            let f = fields(
                &p,
                &[
                    ("url", "url"),
                    ("certconfigmap", "certConfigMap"),
                    ("secretref", "secretRef"),
                ],
            );
            (json!({"source": {"s3": f}}), p)
        }
        "vddk" => {
            let p = params(
                IMPORT,
                s,
                &with(&[
                    "backingfile",
                    "initimageurl",
                    "secretref",
                    "thumbprint",
                    "url",
                    "uuid",
                ]),
            )?;
            for (k, what) in [
                ("url", "url"),
                ("uuid", "uuid"),
                ("thumbprint", "thumbprint"),
                ("secretref", "secretref"),
                ("backingfile", "backingfile"),
            ] {
                if p.get(k).is_none_or(String::is_empty) {
                    return Err(flag_err(
                        IMPORT,
                        format!("{what} is required with vddk volume source"),
                    ));
                }
            }
            let f = fields(
                &p,
                &[
                    ("url", "url"),
                    ("uuid", "uuid"),
                    ("thumbprint", "thumbprint"),
                    ("secretref", "secretRef"),
                    ("initimageurl", "initImageURL"),
                    ("backingfile", "backingFile"),
                ],
            );
            (json!({"source": {"vddk": f}}), p)
        }
        "ds" => {
            let p = params(IMPORT, s, &with(&["src"]))?;
            let src = p
                .get("src")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| flag_err(IMPORT, "src must be specified"))?;
            let (ns, name) =
                split_prefixed(src).map_err(|e| flag_err(IMPORT, format!("src invalid: {e}")))?;
            let mut r = json!({"kind": "DataSource", "name": name});
            if !ns.is_empty() {
                r["namespace"] = json!(ns);
            }
            (json!({"sourceRef": r}), p)
        }
        other => {
            return Err(flag_err(
                IMPORT,
                format!("invalid volume import type \"{other}\", see help for supported values"),
            ));
        }
    };
    Ok((spec, p))
}

/// `--volume-import type:T,...` (and the deprecated aliases): DataVolume templates with their volumes.
pub(crate) fn imports(b: &mut Builder, list: &[String]) -> Result<(), Failure> {
    for s in list {
        let kind = s
            .split(',')
            .find_map(|p| p.strip_prefix("type:"))
            .ok_or_else(|| flag_err(IMPORT, "type must be specified"))?
            .to_string();
        let (mut spec, p) = import_spec(&kind, s)?;
        let size = p.get("size");
        if size.is_none() && !matches!(kind.as_str(), "pvc" | "snapshot" | "ds") {
            return Err(flag_err(IMPORT, "size must be specified"));
        }
        let name = p
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("imported-volume-{}", random_suffix()));
        dns_label(IMPORT, &name)?;
        if b.has_volume(&name) {
            return Err(flag_err(
                IMPORT,
                format!("there is already a volume with name \"{name}\""),
            ));
        }
        spec["storage"] = match size {
            Some(s) => json!({"resources": {"requests": {"storage": s}}}),
            None => json!({}),
        };
        push(
            &mut b.vm["spec"]["dataVolumeTemplates"],
            json!({"metadata": {"name": name}, "spec": spec}),
        );
        b.volume(IMPORT, json!({"name": name, "dataVolume": {"name": name}}))?;
        b.boot_disk(IMPORT, &name, p.get("bootorder"))?;
    }
    Ok(())
}

/// `--volume-sysprep src:NAME[,type:configmap|secret]`.
pub(crate) fn sysprep(b: &mut Builder, s: &str) -> Result<(), Failure> {
    const F: &str = "volume-sysprep";
    let p = params(F, s, &["src", "type"])?;
    let src = p
        .get("src")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| flag_err(F, "src must be specified"))?;
    let (ns, name) = split_prefixed(src).map_err(|e| flag_err(F, format!("src invalid: {e}")))?;
    if !ns.is_empty() {
        return Err(flag_err(
            F,
            format!("not allowed to specify namespace of configmap or secret \"{name}\""),
        ));
    }
    let kind = p
        .get("type")
        .map_or("configmap".to_string(), |t| t.to_lowercase());
    let source = match kind.as_str() {
        "configmap" => json!({"configMap": {"name": src}}),
        "secret" => json!({"secret": {"name": src}}),
        other => {
            return Err(flag_err(
                F,
                format!("invalid sysprep source type \"{other}\", supported values are: configmap, secret"),
            ));
        }
    };
    b.volume(F, json!({"name": "sysprepdisk", "sysprep": source}))
}

/// The cloud-init settings access credentials may adjust.
#[derive(Debug)]
pub(crate) struct CloudInit {
    pub(crate) kind: Option<String>,
    pub(crate) ga_manage_ssh: Option<bool>,
}

/// One `--access-cred`.
pub(crate) fn access_cred(s: &str, user: Option<&str>, cloud: &mut CloudInit) -> Result<Value, Failure> {
    const F: &str = "access-cred";
    let p = params(F, s, &["type", "src", "method", "user"])?;
    let src = p
        .get("src")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| flag_err(F, "src must be specified"))?;
    let (ns, secret) = split_prefixed(src).map_err(|e| flag_err(F, format!("src invalid: {e}")))?;
    if !ns.is_empty() {
        return Err(flag_err(
            F,
            format!("not allowed to specify namespace of secret \"{secret}\""),
        ));
    }
    let method = p.get("method").map(|m| m.to_lowercase()).unwrap_or_default();
    let cred_user = p.get("user").filter(|u| !u.is_empty());
    let source = json!({"secret": {"secretName": secret}});
    match p
        .get("type")
        .map(|t| t.to_lowercase())
        .unwrap_or_default()
        .as_str()
    {
        "ssh" | "" => {
            let propagation = match method.as_str() {
                "ga" | "" => {
                    let Some(u) = cred_user.map(String::as_str).or(user) else {
                        return Err(flag_err(
                            F,
                            "user must be specified with access credential ssh method ga (\"--user\" flag or param \"user\")",
                        ));
                    };
                    if cloud.ga_manage_ssh.is_none() {
                        cloud.ga_manage_ssh = Some(true);
                    }
                    json!({"qemuGuestAgent": {"users": [u]}})
                }
                m @ ("nocloud" | "configdrive") => {
                    if cred_user.is_some() {
                        return Err(flag_err(
                            F,
                            "user cannot be specified with selected access credential type and method",
                        ));
                    }
                    let current = cloud.kind.get_or_insert_with(|| m.to_string());
                    if !current.eq_ignore_ascii_case(m) {
                        return Err(flag_err(
                            F,
                            format!(
                                "method param and value passed to --cloud-init have to match: {m} vs {current}"
                            ),
                        ));
                    }
                    if m == "nocloud" {
                        json!({"noCloud": {}})
                    } else {
                        json!({"configDrive": {}})
                    }
                }
                other => {
                    return Err(flag_err(
                        F,
                        format!(
                            "invalid access credentials ssh method \"{other}\", supported values are: ga, nocloud, configdrive"
                        ),
                    ));
                }
            };
            Ok(json!({"sshPublicKey": {"source": source, "propagationMethod": propagation}}))
        }
        "password" => {
            if !method.is_empty() && method != "ga" {
                return Err(flag_err(
                    F,
                    format!(
                        "invalid access credentials password method \"{method}\", supported values are: ga"
                    ),
                ));
            }
            if cred_user.is_some() {
                return Err(flag_err(
                    F,
                    "user cannot be specified with selected access credential type and method",
                ));
            }
            Ok(json!({"userPassword": {"source": source, "propagationMethod": {"qemuGuestAgent": {}}}}))
        }
        other => Err(flag_err(
            F,
            format!("invalid access credential type \"{other}\", supported values are: ssh, password"),
        )),
    }
}

/// The cloud-init volume, when any cloud-init flag was given (or an access credential set one).
pub(crate) fn cloud_init(b: &mut Builder, a: &VmArgs, cloud: &CloudInit) -> Result<(), Failure> {
    let changed = a.user.is_some()
        || a.password_file.is_some()
        || !a.ssh_key.is_empty()
        || cloud.ga_manage_ssh.is_some()
        || cloud.kind.is_some()
        || a.cloud_init_user_data.is_some()
        || a.cloud_init_network_data.is_some();
    if !changed {
        return Ok(());
    }
    if a.password_file.is_some() {
        eprintln!("WARNING: --password-file: The password is stored in cleartext in the VM definition!");
    }
    if b.has_volume("cloudinitdisk") {
        return Err("there is already a volume with name \"cloudinitdisk\"".into());
    }
    let kind = cloud
        .kind
        .clone()
        .unwrap_or_else(|| "nocloud".into())
        .to_lowercase();
    let field = match kind.as_str() {
        "nocloud" => "cloudInitNoCloud",
        "configdrive" => "cloudInitConfigDrive",
        "none" => {
            if a.password_file.is_some()
                || !a.ssh_key.is_empty()
                || cloud.ga_manage_ssh.is_some()
                || a.cloud_init_user_data.is_some()
                || a.cloud_init_network_data.is_some()
            {
                eprintln!(
                    "WARNING: --cloud-init: was set to none, not creating a data source although other cloud-init options were set"
                );
            }
            return Ok(());
        }
        other => {
            return Err(flag_err(
                "cloud-init",
                format!(
                    "invalid cloud-init data source type \"{other}\", supported values are: nocloud, configdrive, none"
                ),
            ));
        }
    };
    let mut src = json!({});
    if let Some(n) = &a.cloud_init_network_data {
        src["networkDataBase64"] = json!(n);
    }
    if let Some(u) = &a.cloud_init_user_data {
        src["userDataBase64"] = json!(u);
    } else {
        let mut config = "#cloud-config".to_string();
        if let Some(u) = &a.user {
            config.push_str(&format!("\nuser: {u}"));
        }
        if let Some(f) = &a.password_file {
            let pw = std::fs::read_to_string(f).map_err(|e| flag_err("password-file", e))?;
            let pw = pw.trim();
            if !pw.is_empty() {
                config.push_str(&format!("\npassword: {pw}\nchpasswd: {{ expire: False }}"));
            }
        }
        if !a.ssh_key.is_empty() {
            config.push_str("\nssh_authorized_keys:");
            for k in &a.ssh_key {
                config.push_str(&format!("\n  - {k}"));
            }
        }
        if cloud.ga_manage_ssh == Some(true) {
            config.push_str("\nruncmd:\n  - [ setsebool, -P, 'virt_qemu_ga_manage_ssh', 'on' ]");
        }
        // Nothing but the header and no data source asked for: no volume (upstream's rule).
        if config == "#cloud-config" && a.cloud_init_network_data.is_none() && cloud.kind.is_none() {
            return Ok(());
        }
        src["userData"] = json!(config);
    }
    b.volume("cloud-init", json!({"name": "cloudinitdisk", field: src}))
}
