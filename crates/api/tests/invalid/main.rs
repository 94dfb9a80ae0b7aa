//! A table of invalid objects: at least two per validation rule of kubevirt-inventory.md §3, each asserting the
//! exact field path upstream reports (and a piece of its message).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod compute;
mod devices;
mod kinds;
mod network;
mod ported;
mod storage;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use serde_json::{Value, json};

pub(crate) fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub(crate) fn base(kind: &str) -> Value {
    let vmi_spec = json!({
        "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]}, "memory": {"guest": "128Mi"}},
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/kubevirt/cirros:v1"}}]
    });
    match kind {
        "vmi" => json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "t", "namespace": "default"}, "spec": vmi_spec}),
        "vm" => json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"runStrategy": "Halted", "template": {"metadata": {"labels": {"app": "t"}}, "spec": vmi_spec}}}),
        "vmirs" => json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "t"}},
                "template": {"metadata": {"labels": {"app": "t"}}, "spec": vmi_spec}}}),
        "pool" => json!({"apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "t"}},
                "virtualMachineTemplate": {"metadata": {"labels": {"app": "t"}},
                    "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"app": "t"}}, "spec": vmi_spec}}}}}),
        "vmim" => json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "m", "namespace": "default"}, "spec": {"vmiName": "running"}}),
        "it" => {
            json!({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineInstancetype",
            "metadata": {"name": "it", "namespace": "default"}, "spec": {"cpu": {"guest": 2}, "memory": {"guest": "1Gi"}}})
        }
        "pref" => {
            json!({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachinePreference",
            "metadata": {"name": "pref", "namespace": "default"}, "spec": {}})
        }
        "mp" => json!({"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": "mp"}, "spec": {"selectors": {}}}),
        "dv" => json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "dv", "namespace": "default"},
            "spec": {"source": {"http": {"url": "http://127.0.0.1/disk.img"}},
                "pvc": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}),
        other => panic!("no base for {other}"),
    }
}

/// A cluster holding a running VMI `running`, one with an in-flight migration, and instancetype `it`.
pub(crate) fn cluster() -> Cluster {
    let mut c = Cluster::default();
    let mut vmi = base("vmi");
    merge(
        &mut vmi,
        &json!({"metadata": {"name": "running"}, "status": {"phase": "Running"}}),
    );
    c.record(&Object::from_value(vmi).unwrap());
    let mut done = base("vmi");
    merge(
        &mut done,
        &json!({"metadata": {"name": "done"}, "status": {"phase": "Succeeded"}}),
    );
    c.record(&Object::from_value(done).unwrap());
    let mut busy = base("vmi");
    merge(
        &mut busy,
        &json!({"metadata": {"name": "busy"}, "status": {"phase": "Running"}}),
    );
    c.record(&Object::from_value(busy).unwrap());
    let mut inflight = base("vmim");
    merge(
        &mut inflight,
        &json!({"metadata": {"name": "first", "uid": "uid-1"}, "spec": {"vmiName": "busy"}, "status": {"phase": "Running"}}),
    );
    c.record(&Object::from_value(inflight).unwrap());
    c.record(&Object::from_value(base("it")).unwrap());
    let mut spread = base("pref");
    merge(
        &mut spread,
        &json!({"metadata": {"name": "spread"}, "spec": {"cpu": {"preferredCPUTopology": "spread", "spreadOptions": {"ratio": 3}}}}),
    );
    c.record(&Object::from_value(spread).unwrap());
    c
}

pub(crate) enum Expect {
    Cause {
        field: &'static str,
        message: &'static str,
    },
    BadRequest(&'static str),
}

/// The standard cluster, configured by a KubeVirt CR with this `spec.configuration`.
pub(crate) fn configured(configuration: Value) -> Cluster {
    let mut c = cluster();
    let kv = json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"}, "spec": {"configuration": configuration}});
    c.record(&Object::from_value(kv).unwrap());
    c
}

pub(crate) fn run_in(mut cluster: Cluster, kind: &str, patch: Value) -> Outcome {
    let mut obj = base(kind);
    merge(&mut obj, &patch);
    let obj = Object::from_value(obj).unwrap_or_else(|e| panic!("decode: {e}"));
    let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    let mut ids = || "00000000-0000-4000-8000-000000000001".to_string();
    cluster.admit(obj, now, &mut ids)
}

pub(crate) fn run(kind: &str, patch: Value) -> Outcome {
    run_in(cluster(), kind, patch)
}

pub(crate) fn check(rule: u32, kind: &str, patch: Value, expect: Expect) {
    check_in(cluster(), rule, kind, patch, expect);
}

/// Admits `kind`'s base object with `patch` merged in, in `cluster`, and asserts the expected refusal.
pub(crate) fn check_in(cluster: Cluster, rule: u32, kind: &str, patch: Value, expect: Expect) {
    let outcome = run_in(cluster, kind, patch.clone());
    match (&outcome, &expect) {
        (Outcome::Invalid(causes), Expect::Cause { field, message }) => {
            let hit = causes.iter().any(|c: &StatusCause| {
                c.field.as_deref().unwrap_or("") == *field
                    && c.message.as_deref().unwrap_or("").contains(message)
            });
            assert!(
                hit,
                "rule {rule}: {patch}: no cause at {field:?} containing {message:?}; got {causes:#?}"
            );
        }
        (Outcome::BadRequest(m), Expect::BadRequest(want)) => {
            assert!(
                m.contains(want),
                "rule {rule}: {patch}: message {m:?} lacks {want:?}"
            );
        }
        _ => panic!("rule {rule}: {patch}: unexpected outcome {outcome:?}"),
    }
}

pub(crate) fn cause(field: &'static str, message: &'static str) -> Expect {
    Expect::Cause { field, message }
}

#[test]
fn the_bases_are_valid() {
    for kind in ["vmi", "vm", "vmirs", "pool", "vmim", "it", "pref", "mp", "dv"] {
        match run(kind, json!({})) {
            Outcome::Admitted { .. } => {}
            other => panic!("{kind}: {other:?}"),
        }
    }
}
