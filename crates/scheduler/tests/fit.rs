//! Scheduling decisions: selectors, affinity, taints, resources, readiness, and kube-scheduler-like reasons.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Node, Pod};
use scheduler::{Decision, schedule};
use serde_json::{Value, json};

fn node(name: &str, labels: Value, memory: &str, extra: Value) -> Node {
    let mut n = json!({"metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": "2", "memory": memory, "pods": "110", "devices.kubevirt.io/kvm": "1k",
            "devices.kubevirt.io/tun": "1k", "devices.kubevirt.io/vhost-net": "1k"},
            "conditions": [{"type": "Ready", "status": "True"}]}});
    for (k, v) in extra.as_object().unwrap() {
        n[k] = v.clone();
    }
    serde_json::from_value(n).unwrap()
}

fn pod(spec: Value, memory: &str) -> Pod {
    let mut s = json!({"containers": [{"name": "compute", "resources": {
        "requests": {"cpu": "100m", "memory": memory},
        "limits": {"devices.kubevirt.io/kvm": "1"}}}]});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": s})).unwrap()
}

fn bound(node: &str, memory: &str) -> Pod {
    let mut p = pod(json!({"nodeName": node}), memory);
    p.metadata.name = Some(format!("on-{node}"));
    p
}

fn schedulable() -> Value {
    json!({"kubevirt.io/schedulable": "true"})
}

#[test]
fn selectors_affinity_and_free_memory_pick_the_node() {
    let nodes = [
        node("a", schedulable(), "4Gi", json!({})),
        node(
            "b",
            json!({"kubevirt.io/schedulable": "true", "zone": "z2"}),
            "8Gi",
            json!({}),
        ),
    ];
    let p = pod(
        json!({"nodeSelector": {"kubevirt.io/schedulable": "true"}}),
        "1Gi",
    );
    assert_eq!(
        schedule(&p, &nodes, &[]),
        Decision::Bind("b".into()),
        "most free memory"
    );
    // b is busier now.
    assert_eq!(
        schedule(&p, &nodes, &[bound("b", "6Gi")]),
        Decision::Bind("a".into())
    );
    // Finished pods free their resources.
    let mut done = bound("b", "6Gi");
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    assert_eq!(schedule(&p, &nodes, &[done]), Decision::Bind("b".into()));

    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z2"]}]}]}}}});
    assert_eq!(
        schedule(&pod(affinity, "1Gi"), &nodes, &[]),
        Decision::Bind("a".into())
    );
    let by_name = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}});
    assert_eq!(
        schedule(&pod(by_name, "1Gi"), &nodes, &[]),
        Decision::Bind("a".into())
    );
}

#[test]
fn unschedulable_pods_get_kube_scheduler_like_reasons() {
    let nodes = [
        node("a", schedulable(), "1Gi", json!({})),
        node("b", json!({}), "8Gi", json!({})),
        node(
            "c",
            schedulable(),
            "8Gi",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
        node(
            "d",
            schedulable(),
            "8Gi",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ),
    ];
    let p = pod(
        json!({"nodeSelector": {"kubevirt.io/schedulable": "true"}}),
        "2Gi",
    );
    assert_eq!(
        schedule(&p, &nodes, &[]),
        Decision::Unschedulable(
            "0/4 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were not ready."
                .into()
        )
    );
    // A toleration opens c.
    let tolerant = pod(
        json!({"nodeSelector": {"kubevirt.io/schedulable": "true"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        "2Gi",
    );
    assert_eq!(schedule(&tolerant, &nodes, &[]), Decision::Bind("c".into()));
    // A node without the KVM device cannot take a pod that asks for it.
    let mut no_kvm = node("e", schedulable(), "8Gi", json!({}));
    no_kvm
        .status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .remove("devices.kubevirt.io/kvm");
    assert_eq!(
        schedule(&p, &[no_kvm], &[]),
        Decision::Unschedulable("0/1 nodes are available: 1 Insufficient devices.kubevirt.io/kvm.".into())
    );
    assert_eq!(
        schedule(&p, &[], &[]),
        Decision::Unschedulable("0/0 nodes are available.".into())
    );
}
