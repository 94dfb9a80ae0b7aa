//! What `virtctl create vm` builds from: its flags ([`VmArgs`]), the helpers that read `key:value,...` flag values
//! with upstream's messages, and the [`Builder`] the VM manifest grows in.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::Failure;

/// `create vm`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct VmArgs {
    /// The VM's name (default: vm- and five random characters).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Always, Manual, Halted, Once or RerunOnFailure.
    #[arg(long)]
    pub(crate) run_strategy: Option<String>,
    /// The termination grace period in seconds.
    #[arg(long, default_value_t = 180)]
    pub(crate) termination_grace_period: i64,
    /// The guest memory.
    #[arg(long, conflicts_with_all = ["instancetype", "infer_instancetype", "infer_instancetype_from"])]
    pub(crate) memory: Option<String>,
    /// An instancetype: NAME (cluster-wide) or KIND/NAME.
    #[arg(long, conflicts_with_all = ["infer_instancetype", "infer_instancetype_from"])]
    pub(crate) instancetype: Option<String>,
    /// Infer the instancetype from the first boot volume (default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
        conflicts_with = "infer_instancetype_from")]
    pub(crate) infer_instancetype: Option<bool>,
    /// The volume to infer the instancetype from.
    #[arg(long)]
    pub(crate) infer_instancetype_from: Option<String>,
    /// A preference: NAME (cluster-wide) or KIND/NAME.
    #[arg(long, conflicts_with_all = ["infer_preference", "infer_preference_from"])]
    pub(crate) preference: Option<String>,
    /// Infer the preference from the first boot volume (default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
        conflicts_with = "infer_preference_from")]
    pub(crate) infer_preference: Option<bool>,
    /// The volume to infer the preference from.
    #[arg(long)]
    pub(crate) infer_preference_from: Option<String>,
    /// A containerDisk (repeatable): src:IMAGE[,name:N][,bootorder:K].
    #[arg(long)]
    pub(crate) volume_containerdisk: Vec<String>,
    /// A PVC used as it is (repeatable): src:PVC[,name:N][,bootorder:K].
    #[arg(long)]
    pub(crate) volume_pvc: Vec<String>,
    /// A DataVolume template (repeatable): type:blank|gcs|http|imageio|pvc|registry|s3|vddk|snapshot|ds,...
    #[arg(long)]
    pub(crate) volume_import: Vec<String>,
    /// Deprecated: --volume-import type:ds,...
    #[arg(long)]
    pub(crate) volume_datasource: Vec<String>,
    /// Deprecated: --volume-import type:pvc,...
    #[arg(long)]
    pub(crate) volume_clone_pvc: Vec<String>,
    /// Deprecated: --volume-import type:blank,...
    #[arg(long)]
    pub(crate) volume_blank: Vec<String>,
    /// A sysprep volume: src:NAME[,type:configmap|secret].
    #[arg(long)]
    pub(crate) volume_sysprep: Option<String>,
    /// The user in the generated cloud-init user data.
    #[arg(long, conflicts_with = "cloud_init_user_data")]
    pub(crate) user: Option<String>,
    /// A file with the password for the generated cloud-init user data.
    #[arg(long, conflicts_with = "cloud_init_user_data")]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// SSH authorized keys for the generated cloud-init user data (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', conflicts_with = "cloud_init_user_data")]
    pub(crate) ssh_key: Vec<String>,
    /// Let the guest agent manage SSH keys (SELinux boolean in the cloud-init user data).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
        conflicts_with = "cloud_init_user_data")]
    pub(crate) ga_manage_ssh: Option<bool>,
    /// An access credential (repeatable): src:SECRET[,type:ssh|password][,method:ga|nocloud|configdrive][,user:U].
    #[arg(long)]
    pub(crate) access_cred: Vec<String>,
    /// The cloud-init data source: nocloud, configdrive or none.
    #[arg(long)]
    pub(crate) cloud_init: Option<String>,
    /// Base64 cloud-init user data.
    #[arg(long)]
    pub(crate) cloud_init_user_data: Option<String>,
    /// Base64 cloud-init network data.
    #[arg(long)]
    pub(crate) cloud_init_network_data: Option<String>,
}

pub(crate) fn flag_err(flag: &str, msg: impl std::fmt::Display) -> Failure {
    format!("failed to parse \"--{flag}\" flag: {msg}")
}

/// `key:value,...` into a map, refusing keys not in `allowed` (upstream's params).
pub(crate) fn params(flag: &str, s: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, Failure> {
    if s.is_empty() {
        return Err(flag_err(flag, "params may not be empty"));
    }
    let mut m = BTreeMap::new();
    for p in s.split(',') {
        let Some((k, v)) = p.split_once(':') else {
            return Err(flag_err(
                flag,
                format!("params need to have at least one colon: {p}"),
            ));
        };
        m.insert(k.to_string(), v.to_string());
    }
    let unknown: Vec<String> = m
        .iter()
        .filter(|(k, _)| !allowed.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    if !unknown.is_empty() {
        return Err(flag_err(flag, format!("unknown param(s): {}", unknown.join(","))));
    }
    if let Some(b) = m.get("bootorder")
        && b.parse::<u32>().is_err()
    {
        return Err(flag_err(
            flag,
            format!("failed to parse param \"bootorder\": invalid syntax: {b}"),
        ));
    }
    if let Some(q) = m.get("size")
        && kubevirt_api::quantity::parse(q).is_err()
    {
        return Err(flag_err(
            flag,
            format!(
                "failed to parse param \"size\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {q}"
            ),
        ));
    }
    Ok(m)
}

/// `prefix/name` → (prefix, name).
pub(crate) fn split_prefixed(s: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (p, n) = match parts.as_slice() {
        [n] => ("", *n),
        [p, n] => (*p, *n),
        _ => {
            return Err(format!(
                "invalid count {} of slashes in prefix/name",
                parts.len() - 1
            ));
        }
    };
    if n.is_empty() {
        return Err("name cannot be empty".into());
    }
    Ok((p.to_string(), n.to_string()))
}

pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut n = h.finish();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
            n /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

pub(crate) fn dns_label(flag: &str, name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(flag_err(
            flag,
            format!(
                "invalid name \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ),
        ))
    }
}

/// The VM being built, and the boot orders handed out.
pub(crate) struct Builder {
    pub(crate) vm: Value,
    pub(crate) boot: BTreeMap<u32, String>,
}

impl Builder {
    pub(crate) fn spec(&mut self) -> &mut Value {
        &mut self.vm["spec"]["template"]["spec"]
    }

    pub(crate) fn has_volume(&self, name: &str) -> bool {
        self.vm["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == name))
    }

    pub(crate) fn volume(&mut self, flag: &str, v: Value) -> Result<(), Failure> {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        if self.has_volume(&name) {
            return Err(flag_err(
                flag,
                format!("there is already a volume with name \"{name}\""),
            ));
        }
        push(&mut self.spec()["volumes"], v);
        Ok(())
    }

    pub(crate) fn boot_disk(
        &mut self,
        flag: &str,
        name: &str,
        order: Option<&String>,
    ) -> Result<(), Failure> {
        let Some(order) = order else { return Ok(()) };
        let order: u32 = order
            .parse()
            .map_err(|_| flag_err(flag, "bootorder must be a number"))?;
        if order == 0 {
            return Err(flag_err(flag, "bootorder must be greater than 0"));
        }
        if self.boot.contains_key(&order) {
            return Err(flag_err(
                flag,
                format!("bootorder {order} was specified multiple times"),
            ));
        }
        self.boot.insert(order, name.to_string());
        push(
            &mut self.spec()["domain"]["devices"]["disks"],
            json!({"name": name, "bootOrder": order}),
        );
        Ok(())
    }
}

pub(crate) fn push(list: &mut Value, v: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}
