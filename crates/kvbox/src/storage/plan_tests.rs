//! The volume controllers' decisions, table by table.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn class(name: &str, mode: &str, default: bool) -> Arc<StorageClass> {
    let mut v = json!({"metadata": {"name": name}, "provisioner": "kubevirt-rs.io/local",
        "volumeBindingMode": mode, "reclaimPolicy": "Delete"});
    if default {
        v["metadata"]["annotations"] = json!({DEFAULT_CLASS: "true"});
    }
    obj(v)
}

fn pvc(name: &str, class: Option<&str>, annotations: Value) -> Value {
    let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "annotations": annotations, "finalizers": [PVC_PROTECTION]},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"}});
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    v
}

fn pv(name: &str, claim: Option<&str>, size: &str) -> Value {
    let mut v = json!({"metadata": {"name": name, "finalizers": [PV_PROTECTION]},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
            "persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Filesystem", "local": {"path": "/x"}},
        "status": {"phase": "Available"}});
    if let Some(c) = claim {
        v["spec"]["claimRef"] = json!({"namespace": "ns", "name": c, "uid": format!("uid-{c}")});
    }
    v
}

fn claim(name: &str) -> Claim {
    Claim {
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn run(pvcs: Vec<Value>, pvs: Vec<Value>, pods: Vec<Value>) -> Vec<Step> {
    let pvcs: Vec<Arc<PersistentVolumeClaim>> = pvcs.into_iter().map(obj).collect();
    let pvs: Vec<Arc<PersistentVolume>> = pvs.into_iter().map(obj).collect();
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(obj).collect();
    let classes = [
        class("local", "WaitForFirstConsumer", true),
        class("now", "Immediate", false),
    ];
    plan(
        &pvcs,
        &pvs,
        &classes,
        &pods,
        &["node-a".to_string(), "node-b".to_string()],
    )
}

#[test]
fn a_claim_without_a_class_gets_the_default_then_asks_its_provisioner() {
    assert_eq!(
        run(vec![pvc("a", None, json!({}))], vec![], vec![]),
        [Step::SetClass(claim("a"), "local".into())]
    );
    let asked = Step::Provision {
        claim: claim("a"),
        provisioner: "kubevirt-rs.io/local".into(),
        node: None,
    };
    assert_eq!(
        run(vec![pvc("a", Some("local"), json!({}))], vec![], vec![]),
        [asked]
    );
    // Asked already, waiting for its first consumer: nothing to do.
    let waiting = pvc(
        "a",
        Some("local"),
        json!({STORAGE_PROVISIONER: "kubevirt-rs.io/local"}),
    );
    assert_eq!(run(vec![waiting], vec![], vec![]), []);
}

#[test]
fn an_immediate_claim_is_given_a_node() {
    assert_eq!(
        run(vec![pvc("b", Some("now"), json!({}))], vec![], vec![]),
        [Step::Provision {
            claim: claim("b"),
            provisioner: "kubevirt-rs.io/local".into(),
            node: Some("node-a".into())
        }]
    );
    let placed = pvc(
        "b",
        Some("now"),
        json!({STORAGE_PROVISIONER: "kubevirt-rs.io/local", SELECTED_NODE: "node-b"}),
    );
    assert_eq!(run(vec![placed], vec![], vec![]), []);
}

#[test]
fn a_provisioned_volume_binds_its_claim_and_a_static_one_is_reserved() {
    let steps = run(
        vec![pvc("c", Some("local"), json!({}))],
        vec![pv("pvc-c", Some("c"), "1Gi")],
        vec![],
    );
    assert!(
        matches!(&steps[0], Step::BindClaim { claim: c, pv, .. } if c.name == "c" && pv == "pvc-c"),
        "{steps:?}"
    );
    // A matching available PV (the smallest that fits) is reserved; one too small is not.
    let steps = run(
        vec![pvc("d", Some("local"), json!({}))],
        vec![
            pv("small", None, "512Mi"),
            pv("big", None, "10Gi"),
            pv("fit", None, "2Gi"),
        ],
        vec![],
    );
    assert_eq!(steps[0], Step::ClaimPv("fit".into(), claim("d")));
    // Bound: the PV says so.
    let mut bound = pvc("e", Some("local"), json!({}));
    bound["spec"]["volumeName"] = json!("pvc-e");
    bound["status"]["phase"] = json!("Bound");
    assert_eq!(
        run(vec![bound], vec![pv("pvc-e", Some("e"), "1Gi")], vec![]),
        [Step::PvPhase("pvc-e".into(), "Bound")]
    );
}

#[test]
fn deleted_claims_and_volumes_let_go_when_nothing_holds_them() {
    let mut gone = pvc("f", Some("local"), json!({}));
    gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [],
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "f"}}]}, "status": {"phase": "Running"}});
    assert_eq!(
        run(vec![gone.clone()], vec![], vec![pod.clone()]),
        [],
        "a running pod uses it"
    );
    let mut done = pod;
    done["status"]["phase"] = json!("Succeeded");
    assert_eq!(
        run(vec![gone], vec![], vec![done]),
        [Step::ReleaseClaim(claim("f"))]
    );
    // The claim went: its volume is Released; deleted, it lets go.
    let orphan = pv("pvc-g", Some("g"), "1Gi");
    assert_eq!(
        run(vec![], vec![orphan.clone()], vec![]),
        [Step::PvPhase("pvc-g".into(), "Released")]
    );
    let mut deleted = orphan;
    deleted["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        run(vec![], vec![deleted], vec![]),
        [Step::ReleasePv("pvc-g".into())]
    );
}

#[test]
fn quantities_read_as_kubernetes_writes_them() {
    let q = |s: &str| bytes(&Quantity(s.into()));
    assert_eq!(q("1Gi"), Some(1 << 30));
    assert_eq!(q("500M"), Some(500_000_000));
    assert_eq!(q("1e3"), Some(1000));
    assert_eq!(q("1.5Ki"), Some(1536));
    assert_eq!(q("12"), Some(12));
    assert_eq!(q("lots"), None);
}
