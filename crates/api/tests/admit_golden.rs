//! `Cluster::admit` on upstream examples equals the hand-checked golden output (what upstream's webhooks produce).
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the files; then read every diff against upstream's rules before committing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;

const GOLDEN: &[&str] = &[
    "vmi-ephemeral",
    "vmi-sata",
    "vmi-nocloud",
    "vmi-fedora",
    "vmi-alpine-efi",
    "vmi-windows",
    "vmi-masquerade",
    "vmi-kernel-boot",
    "vmi-host-disk",
    "vm-cirros",
    "vm-alpine-datavolume",
    "vmi-replicaset-cirros",
    "migration-job",
];

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z")).unwrap()
}

/// A cluster with the gates upstream's example cluster enables, and `vmi-migratable` existing (for the migration).
fn cluster() -> Cluster {
    let mut c = Cluster::default();
    let gates = testing::load_docs(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubevirt-gates.yaml"),
    );
    for d in gates {
        c.record(&Object::from_value(d).unwrap());
    }
    let dir = testing::shared_dir().join("fixtures/upstream-examples");
    for d in testing::load_docs(&dir.join("vmi-migratable.yaml")) {
        c.record(&Object::from_value(d).unwrap());
    }
    c
}

fn admit_file(name: &str) -> String {
    let path = testing::shared_dir().join(format!("fixtures/upstream-examples/{name}.yaml"));
    let mut cluster = cluster();
    let mut n = 0u32;
    let mut out = String::new();
    for doc in testing::load_docs(&path) {
        let obj = Object::from_value(doc).unwrap();
        let mut ids = || {
            n += 1;
            format!("00000000-0000-4000-8000-{n:012}")
        };
        match cluster.admit(obj, now(), &mut ids) {
            Outcome::Admitted { object, .. } => {
                out.push_str("---\n");
                out.push_str(&serde_norway::to_string(&object).unwrap());
            }
            other => panic!("{name}: not admitted: {other:?}"),
        }
    }
    out
}

#[test]
fn admitted_examples_match_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for name in GOLDEN {
        let got = admit_file(name);
        let file = dir.join(format!("{name}.yaml"));
        if update {
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        pretty_assertions::assert_eq!(
            want,
            got,
            "{name}: admitted output differs from {}",
            file.display()
        );
    }
}

#[test]
fn every_upstream_example_is_admitted() {
    let mut cluster = cluster();
    let mut admitted = 0;
    let mut files = testing::example_files();
    // kubectl apply order, with the migration's VMI created before the migration.
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "migration-job.yaml"));
    for path in files {
        for doc in testing::load_docs(&path) {
            let obj = Object::from_value(doc).unwrap();
            let mut ids = || uuid_stub();
            match cluster.admit(obj, now(), &mut ids) {
                Outcome::Admitted { .. } => admitted += 1,
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }
    assert_eq!(admitted, 20);
}

fn uuid_stub() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

#[test]
fn vm_with_instancetype_and_preference_is_admitted_and_gets_preferred_defaults() {
    let mut cluster = cluster();
    let dir = testing::shared_dir().join("fixtures/upstream-examples");
    for d in testing::load_docs(&dir.join("csmall.yaml")) {
        cluster.record(&Object::from_value(d).unwrap());
    }
    let pref = serde_json::json!({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterPreference",
        "metadata": {"name": "virtio"},
        "spec": {"devices": {"preferredDiskBus": "virtio"}, "machine": {"preferredMachineType": "pc-q35-9.2"},
            "volumes": {"preferredStorageClassName": "fast"}}});
    cluster.record(&Object::from_value(pref).unwrap());
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "sized", "namespace": "default"},
        "spec": {"runStrategy": "Halted",
            "instancetype": {"kind": "VirtualMachineInstancetype", "name": "csmall"},
            "preference": {"name": "virtio"},
            "dataVolumeTemplates": [{"metadata": {"name": "root"}, "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}],
            "template": {"spec": {"domain": {"devices": {}},
                "volumes": [{"name": "root", "dataVolume": {"name": "root"}}]}}}});
    let mut ids = uuid_stub;
    let Outcome::Admitted { object, warnings } =
        cluster.admit(Object::from_value(vm).unwrap(), now(), &mut ids)
    else {
        panic!("not admitted")
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    let tmpl = &object["spec"]["template"]["spec"];
    assert_eq!(tmpl["domain"]["machine"]["type"], "pc-q35-9.2");
    assert_eq!(
        object["spec"]["dataVolumeTemplates"][0]["spec"]["storage"]["storageClassName"],
        "fast"
    );
    // The instancetype's sizing is not copied into the VM (the controller applies it to the VMI).
    assert!(tmpl["domain"].get("memory").is_none());
    assert_eq!(
        tmpl["domain"]["firmware"]["uuid"],
        kubevirt_api::defaults::vm_firmware_uuid("sized")
    );
}

#[test]
fn a_missing_instancetype_is_a_warning_not_a_refusal() {
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "orphan"},
        "spec": {"runStrategy": "Halted", "instancetype": {"name": "nowhere"},
            "template": {"spec": {"domain": {"devices": {}}}}}});
    let mut ids = uuid_stub;
    match cluster().admit(Object::from_value(vm).unwrap(), now(), &mut ids) {
        Outcome::Admitted { warnings, .. } => assert!(
            warnings[0].contains("when looking for instance type"),
            "{warnings:?}"
        ),
        other => panic!("{other:?}"),
    }
}
