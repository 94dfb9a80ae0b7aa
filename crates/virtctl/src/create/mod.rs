//! `virtctl create vm`: a VirtualMachine manifest printed as YAML (nothing is sent to the cluster), built from
//! upstream's flags with upstream's defaults (a random `vm-xxxxx` name, runStrategy Always, 180 s grace period, 512Mi
//! guest memory, instancetype/preference inferred from the first boot volume when it can be, NoCloud cloud-init)
//! and its `key:value,...` volume parameters, validations and messages.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::Failure;

mod builder;
mod volumes;

pub(crate) use builder::VmArgs;
use builder::{Builder, flag_err, push, random_suffix, split_prefixed};

const RUN_STRATEGIES: &[&str] = &["Always", "Manual", "Halted", "Once", "RerunOnFailure"];

/// Builds the manifest.
pub(crate) fn build(a: &VmArgs, namespace: Option<&str>) -> Result<Value, Failure> {
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("vm-{}", random_suffix()));
    let memory = a.memory.clone().unwrap_or_else(|| "512Mi".into());
    if kubevirt_api::quantity::parse(&memory).is_err() {
        return Err(flag_err(
            "memory",
            format!(
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {memory}"
            ),
        ));
    }
    let mut b = Builder {
        vm: json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {
                "runStrategy": "Always",
                "template": {"spec": {
                    "terminationGracePeriodSeconds": a.termination_grace_period,
                    "domain": {"devices": {}, "memory": {"guest": memory}},
                }},
            },
        }),
        boot: BTreeMap::new(),
    };
    if let Some(ns) = namespace {
        b.vm["metadata"]["namespace"] = json!(ns);
    }
    if let Some(rs) = &a.run_strategy {
        let Some(s) = RUN_STRATEGIES.iter().find(|s| s.eq_ignore_ascii_case(rs)) else {
            return Err(flag_err(
                "run-strategy",
                format!(
                    "invalid run strategy \"{rs}\", supported values are: {}",
                    RUN_STRATEGIES.join(", ")
                ),
            ));
        };
        b.vm["spec"]["runStrategy"] = json!(s);
    }
    if let Some(it) = &a.instancetype {
        let (kind, n) = split_prefixed(it).map_err(|e| flag_err("instancetype", e))?;
        let kind = kind.to_lowercase();
        if !matches!(
            kind.as_str(),
            "" | "virtualmachineinstancetype" | "virtualmachineclusterinstancetype"
        ) {
            return Err(flag_err(
                "instancetype",
                format!(
                    "invalid instancetype kind \"{kind}\", supported values are: virtualmachineinstancetype, virtualmachineclusterinstancetype"
                ),
            ));
        }
        b.spec()["domain"].as_object_mut().map(|d| d.remove("memory"));
        b.vm["spec"]["instancetype"] = matcher(&n, &kind);
    }
    if let Some(p) = &a.preference {
        let (kind, n) = split_prefixed(p).map_err(|e| flag_err("preference", e))?;
        let kind = kind.to_lowercase();
        if !matches!(
            kind.as_str(),
            "" | "virtualmachinepreference" | "virtualmachineclusterpreference"
        ) {
            return Err(flag_err(
                "preference",
                format!(
                    "invalid preference kind \"{kind}\", supported values are: virtualmachinepreference, virtualmachineclusterpreference"
                ),
            ));
        }
        b.vm["spec"]["preference"] = matcher(&n, &kind);
    }
    volumes::containerdisks(&mut b, &a.volume_containerdisk, &name)?;
    volumes::pvcs(&mut b, &a.volume_pvc)?;
    let mut imports = a.volume_import.clone();
    for (flag, kind, list) in [
        ("volume-datasource", "ds", &a.volume_datasource),
        ("volume-clone-pvc", "pvc", &a.volume_clone_pvc),
        ("volume-blank", "blank", &a.volume_blank),
    ] {
        if !list.is_empty() {
            eprintln!("Flag --{flag} has been deprecated, use flag --volume-import instead");
        }
        for v in list {
            if v.is_empty() {
                return Err(flag_err("volume-import", "params may not be empty"));
            }
            imports.insert(0, format!("type:{kind},{v}"));
        }
    }
    volumes::imports(&mut b, &imports)?;
    if let Some(s) = &a.volume_sysprep {
        volumes::sysprep(&mut b, s)?;
    }
    let mut cloud = volumes::CloudInit {
        kind: a.cloud_init.clone(),
        ga_manage_ssh: a.ga_manage_ssh,
    };
    for cred in &a.access_cred {
        let c = volumes::access_cred(cred, a.user.as_deref(), &mut cloud)?;
        push(&mut b.spec()["accessCredentials"], c);
    }
    volumes::cloud_init(&mut b, a, &cloud)?;
    infer(&mut b, a)?;
    Ok(b.vm)
}

fn matcher(name: &str, kind: &str) -> Value {
    let mut m = json!({"name": name});
    if !kind.is_empty() {
        m["kind"] = json!(kind);
    }
    m
}

/// Instancetype and preference inference from a volume (errors only count when inference was asked for).
fn infer(b: &mut Builder, a: &VmArgs) -> Result<(), Failure> {
    let explicit_it = a.infer_instancetype.is_some() || a.infer_instancetype_from.is_some();
    if a.infer_instancetype.unwrap_or(true) && a.instancetype.is_none() && a.memory.is_none() {
        match inferable(b, a.infer_instancetype_from.as_deref()) {
            Ok(vol) => {
                let mut m = json!({"inferFromVolume": vol});
                if explicit_it {
                    b.spec()["domain"].as_object_mut().map(|d| d.remove("memory"));
                } else {
                    m["inferFromVolumeFailurePolicy"] = json!("Ignore");
                }
                b.vm["spec"]["instancetype"] = m;
            }
            Err(e) if explicit_it => return Err(e),
            Err(_) => {}
        }
    }
    let explicit_p = a.infer_preference.is_some() || a.infer_preference_from.is_some();
    if a.infer_preference.unwrap_or(true) && a.preference.is_none() {
        match inferable(b, a.infer_preference_from.as_deref()) {
            Ok(vol) => {
                let mut m = json!({"inferFromVolume": vol});
                if !explicit_p {
                    m["inferFromVolumeFailurePolicy"] = json!("Ignore");
                }
                b.vm["spec"]["preference"] = m;
            }
            Err(e) if explicit_p => return Err(e),
            Err(_) => {}
        }
    }
    Ok(())
}

/// The volume to infer from (`from`, else the first boot disk, else the first volume), if it can be inferred from.
fn inferable(b: &Builder, from: Option<&str>) -> Result<String, Failure> {
    let spec = &b.vm["spec"]["template"]["spec"];
    let vols = spec["volumes"].as_array().cloned().unwrap_or_default();
    let name = match from {
        Some(f) => f.to_string(),
        None if vols.is_empty() => {
            return Err("at least one volume is needed to infer an instance type or preference".into());
        }
        None => match b.boot.values().next() {
            Some(n) => n.clone(),
            None => vols[0]["name"].as_str().unwrap_or_default().to_string(),
        },
    };
    let Some(vol) = vols.iter().find(|v| v["name"] == name.as_str()) else {
        return Err(format!("there is no volume with name \"{name}\""));
    };
    if vol.get("persistentVolumeClaim").is_some() {
        return Ok(name);
    }
    if let Some(dv) = vol.get("dataVolume") {
        let dvts = b.vm["spec"]["dataVolumeTemplates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(t) = dvts.iter().find(|t| t["metadata"]["name"] == dv["name"]) else {
            return Ok(name);
        };
        let src = &t["spec"]["source"];
        if src.get("pvc").is_some() || src.get("registry").is_some() || src.get("snapshot").is_some() {
            return Ok(name);
        }
        if t["spec"]["sourceRef"]["kind"] == "DataSource" {
            return Ok(name);
        }
        return Err("this datavolume is not valid to infer an instancetype or preference from (source needs to be PVC, Registry or Snapshot, sourceRef needs to be DataSource)".into());
    }
    Err("inference of instancetype or preference works only with datasources, datavolumes or pvcs".into())
}

/// Prints the manifest as YAML.
pub(crate) fn run(a: &VmArgs, namespace: Option<&str>) -> Result<(), Failure> {
    let vm = build(a, namespace)?;
    let yaml = serde_norway::to_string(&vm).map_err(|e| e.to_string())?;
    print!("{yaml}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct T {
        #[command(flatten)]
        a: VmArgs,
    }

    fn vm(args: &[&str]) -> Result<Value, Failure> {
        let t =
            T::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        build(&t.a, None)
    }

    #[test]
    fn defaults_are_upstreams() {
        let v = vm(&[]).unwrap();
        let name = v["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("vm-") && name.len() == 8, "{name}");
        assert_eq!(v["spec"]["runStrategy"], "Always");
        let spec = &v["spec"]["template"]["spec"];
        assert_eq!(spec["terminationGracePeriodSeconds"], 180);
        assert_eq!(spec["domain"]["memory"]["guest"], "512Mi");
        assert!(spec.get("volumes").is_none() && v["spec"].get("instancetype").is_none());
    }

    #[test]
    fn volumes_boot_order_and_inference() {
        let v = vm(&[
            "--name=web",
            "--run-strategy=halted",
            "--volume-containerdisk=src:quay.io/x/y:1",
            "--volume-pvc=src:data,bootorder:1",
            "--volume-import=type:blank,size:1Gi,name:scratch",
            "--volume-import=type:ds,src:os/fedora",
        ])
        .unwrap();
        assert_eq!(v["spec"]["runStrategy"], "Halted");
        let spec = &v["spec"]["template"]["spec"];
        let names: Vec<&str> = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[..3], ["web-containerdisk-0", "data", "scratch"]);
        assert!(names[3].starts_with("imported-volume-"));
        assert_eq!(
            spec["domain"]["devices"]["disks"],
            json!([{"name": "data", "bootOrder": 1}])
        );
        // Inferred from the first boot disk, failures ignored as the user did not ask.
        assert_eq!(
            v["spec"]["instancetype"],
            json!({"inferFromVolume": "data", "inferFromVolumeFailurePolicy": "Ignore"})
        );
        assert_eq!(spec["domain"]["memory"]["guest"], "512Mi");
        let dvts = v["spec"]["dataVolumeTemplates"].as_array().unwrap();
        assert_eq!(
            dvts[0]["spec"],
            json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}})
        );
        assert_eq!(
            dvts[1]["spec"],
            json!({"sourceRef": {"kind": "DataSource", "name": "fedora", "namespace": "os"}, "storage": {}})
        );

        // Asked for explicitly, inference failures are errors and memory goes to the instancetype.
        let v = vm(&["--volume-pvc=src:root", "--infer-instancetype"]).unwrap();
        assert!(v["spec"]["template"]["spec"]["domain"].get("memory").is_none());
        assert_eq!(
            vm(&["--volume-containerdisk=src:img", "--infer-instancetype"]).unwrap_err(),
            "inference of instancetype or preference works only with datasources, datavolumes or pvcs"
        );
        let v = vm(&[
            "--instancetype=virtualmachineinstancetype/u1.small",
            "--preference=fedora",
        ])
        .unwrap();
        assert_eq!(
            v["spec"]["instancetype"],
            json!({"name": "u1.small", "kind": "virtualmachineinstancetype"})
        );
        assert_eq!(v["spec"]["preference"], json!({"name": "fedora"}));
    }

    #[test]
    fn cloud_init_and_access_credentials() {
        let v = vm(&["--user=cloud", "--ssh-key=ssh-ed25519 AAAA k1"]).unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"]["volumes"][0],
            json!({"name": "cloudinitdisk", "cloudInitNoCloud": {
                "userData": "#cloud-config\nuser: cloud\nssh_authorized_keys:\n  - ssh-ed25519 AAAA k1"}})
        );
        let v = vm(&["--access-cred=src:keys,user:me"]).unwrap();
        let spec = &v["spec"]["template"]["spec"];
        assert_eq!(
            spec["accessCredentials"][0]["sshPublicKey"]["propagationMethod"],
            json!({"qemuGuestAgent": {"users": ["me"]}})
        );
        assert!(
            spec["volumes"][0]["cloudInitNoCloud"]["userData"]
                .as_str()
                .unwrap()
                .contains("virt_qemu_ga_manage_ssh")
        );
        let v = vm(&[
            "--cloud-init=configdrive",
            "--cloud-init-user-data=I2Nsb3VkLWNvbmZpZw==",
        ])
        .unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"]["volumes"][0]["cloudInitConfigDrive"],
            json!({"userDataBase64": "I2Nsb3VkLWNvbmZpZw=="})
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let err = |args: &[&str]| vm(args).unwrap_err();
        assert_eq!(
            err(&["--run-strategy=sometimes"]),
            "failed to parse \"--run-strategy\" flag: invalid run strategy \"sometimes\", supported values are: Always, Manual, Halted, Once, RerunOnFailure"
        );
        assert_eq!(
            err(&["--volume-containerdisk=name:x"]),
            "failed to parse \"--volume-containerdisk\" flag: src must be specified"
        );
        assert_eq!(
            err(&["--volume-pvc=src:a,color:blue"]),
            "failed to parse \"--volume-pvc\" flag: unknown param(s): color:blue"
        );
        assert_eq!(
            err(&["--volume-import=type:pvc,src:nsless"]),
            "failed to parse \"--volume-import\" flag: namespace of pvc \"nsless\" must be specified"
        );
        assert_eq!(
            err(&["--volume-import=type:ftp,size:1Gi"]),
            "failed to parse \"--volume-import\" flag: invalid volume import type \"ftp\", see help for supported values"
        );
        assert_eq!(
            err(&["--volume-pvc=src:a,bootorder:1", "--volume-pvc=src:b,bootorder:1"]),
            "failed to parse \"--volume-pvc\" flag: bootorder 1 was specified multiple times"
        );
        assert_eq!(
            err(&["--volume-pvc=src:a", "--volume-pvc=src:a"]),
            "failed to parse \"--volume-pvc\" flag: there is already a volume with name \"a\""
        );
        assert!(err(&["--memory=1Gi", "--instancetype=x"]).contains("cannot be used with"));
    }
}
