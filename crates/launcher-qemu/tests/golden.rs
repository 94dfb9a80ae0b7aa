//! Golden QEMU command lines: every VMI in shared/fixtures/upstream-examples (and the VMI templates of its VMs,
//! replica sets and pools), admitted as the API server would, planned, built into a Domain and rendered under TCG.
//! Examples using what the launcher cannot run yet give a golden `unsupported: <field>` error instead.
//!
//! `UPDATE_GOLDEN=1` rewrites the files; review every diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use launcher_domain::{Accel, NodeFacts, Ovmf};
use serde_json::{Value, json};

fn load_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// VMIs an example file describes: VMIs themselves, and the templates of VMs, replica sets and pools.
fn vmis_of(doc: &Value) -> Vec<Value> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let template = match kind {
        "VirtualMachineInstance" => return vec![doc.clone()],
        "VirtualMachine" | "VirtualMachineInstanceReplicaSet" => doc["spec"]["template"].clone(),
        "VirtualMachinePool" => doc["spec"]["virtualMachineTemplate"]["spec"]["template"].clone(),
        _ => return Vec::new(),
    };
    let mut meta = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
    meta["name"] = json!(name);
    vec![
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": meta, "spec": template["spec"]}),
    ]
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    let gates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures/kubevirt-gates.yaml");
    for d in load_docs(&gates) {
        c.record(&Object::from_value(d).unwrap());
    }
    c
}

fn render(vmi: Value) -> String {
    let mut n = 0u32;
    let mut ids = || {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    };
    let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    let name = vmi["metadata"]["name"].as_str().unwrap().to_string();
    let admitted = match cluster().admit(Object::from_value(vmi).unwrap(), now, &mut ids) {
        Outcome::Admitted { object, .. } => object,
        other => return format!("not admitted: {other:?}\n"),
    };
    let mut vmi: kubevirt_api::v1::VirtualMachineInstance = serde_json::from_value(admitted).unwrap();
    vmi.metadata.namespace = Some("default".into());
    vmi.metadata.uid = Some("00000000-0000-4000-8000-00000000beef".into());
    let runtime = PathBuf::from(format!("/run/kvbox/default_{name}"));
    let sources: BTreeMap<String, PathBuf> = vmi
        .spec
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            (
                v.name.clone(),
                PathBuf::from(format!("/var/lib/kvbox/sources/{}", v.name)),
            )
        })
        .collect();
    let facts = NodeFacts {
        accel: Accel::Tcg,
        ovmf: Ovmf::default(),
        runtime_dir: runtime.clone(),
        nics: vmi
            .spec
            .domain
            .devices
            .interfaces
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, iface)| {
                (
                    iface.name.clone(),
                    launcher_domain::NicBackend::tap(&format!("tap{i}")),
                )
            })
            .collect(),
        vhost_net: false,
        kernel_boot_root: Some(PathBuf::from(format!("/var/lib/kvbox/kernel-boot/{name}"))),
    };
    let plan = match launcher_domain::volumes::plan(&vmi, &runtime, &sources) {
        Ok(p) => p,
        Err(e) => return format!("{e}\n"),
    };
    let volumes = plan.into_iter().map(|p| (p.name, p.resolved)).collect();
    let domain = match launcher_domain::build(&vmi, &facts, &volumes) {
        Ok(d) => d,
        Err(e) => return format!("{e}\n"),
    };
    let cmd = launcher_qemu::render(&domain, &runtime, 1_767_225_600).unwrap();
    let mut out = format!("{}\n", cmd.program.display());
    for a in &cmd.args {
        out.push_str(a);
        out.push('\n');
    }
    for (k, v) in &cmd.env {
        out.push_str(&format!("# env {k}={v}\n"));
    }
    out
}

#[test]
fn every_example_vmi_has_a_golden_command_line_or_error() {
    let dir = testing::examples();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut seen = 0;
    let mut failures = Vec::new();
    for f in files {
        for doc in load_docs(&f) {
            for vmi in vmis_of(&doc) {
                let name = vmi["metadata"]["name"].as_str().unwrap().to_string();
                let got = render(vmi);
                let ext = if got.starts_with("qemu-system") {
                    "argv"
                } else {
                    "err"
                };
                let file = golden.join(format!("{name}.{ext}"));
                seen += 1;
                if update {
                    std::fs::create_dir_all(&golden).unwrap();
                    for e in ["argv", "err"] {
                        let _ = std::fs::remove_file(golden.join(format!("{name}.{e}")));
                    }
                    std::fs::write(&file, &got).unwrap();
                    continue;
                }
                match std::fs::read_to_string(&file) {
                    Ok(want) if want == got => {}
                    Ok(want) => failures.push(format!(
                        "{name}: differs from {}\n{}",
                        file.display(),
                        pretty_assertions::StrComparison::new(&want, &got)
                    )),
                    Err(_) => failures.push(format!("{name}: no golden {} (got:\n{got})", file.display())),
                }
            }
        }
    }
    assert!(seen >= 15, "only {seen} VMIs found in the examples");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
