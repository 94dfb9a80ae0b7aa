//! Preset application on VMI admission, and instancetype/preference application as the VM controller will use it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::defaults::instancetype;
use kubevirt_api::object::Object;
use serde_json::{Value, json};

fn preset(name: &str, labels: Value, domain: Value) -> Object {
    Object::from_value(
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstancePreset",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": labels}, "domain": merged(domain)}}),
    )
    .unwrap()
}

/// Presets' domains need `devices`, as every DomainSpec does (upstream's own preset example has `devices: {}`).
fn merged(mut domain: Value) -> Value {
    domain["devices"] = json!({});
    domain
}

fn vmi(labels: Value, annotations: Value) -> Object {
    Object::from_value(
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "v", "namespace": "default", "labels": labels, "annotations": annotations},
        "spec": {"domain": {"devices": {}}}}),
    )
    .unwrap()
}

fn admit(cluster: &mut Cluster, obj: Object) -> Outcome {
    let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    let mut ids = || "00000000-0000-4000-8000-000000000001".to_string();
    cluster.admit(obj, now, &mut ids)
}

#[test]
fn a_matching_preset_fills_the_vmi_and_is_recorded() {
    let mut cluster = Cluster::default();
    cluster.record(&preset(
        "small",
        json!({"kubevirt.io/size": "small"}),
        json!({"resources": {"requests": {"memory": "128Mi"}}, "cpu": {"cores": 2}}),
    ));
    cluster.record(&preset(
        "other",
        json!({"kubevirt.io/size": "large"}),
        json!({"cpu": {"cores": 8}}),
    ));
    let Outcome::Admitted { object, warnings } =
        admit(&mut cluster, vmi(json!({"kubevirt.io/size": "small"}), json!({})))
    else {
        panic!("refused")
    };
    assert_eq!(
        object["metadata"]["annotations"]["virtualmachinepreset.kubevirt.io/small"],
        "kubevirt.io/v1"
    );
    assert!(
        object["metadata"]["annotations"]
            .get("virtualmachinepreset.kubevirt.io/other")
            .is_none()
    );
    assert_eq!(object["spec"]["domain"]["cpu"]["cores"], 2);
    // Memory comes from the preset's request, then guest memory defaults from it.
    assert_eq!(object["spec"]["domain"]["memory"]["guest"], "128Mi");
    assert_eq!(
        warnings,
        vec!["kubevirt.io/v1 VirtualMachineInstancePresets is now deprecated and will be removed in v2."]
    );
}

#[test]
fn conflicting_presets_refuse_the_vmi_and_exclusion_skips_them() {
    let mut cluster = Cluster::default();
    cluster.record(&preset("a", json!({"app": "x"}), json!({"cpu": {"cores": 2}})));
    cluster.record(&preset("b", json!({"app": "x"}), json!({"cpu": {"cores": 4}})));
    match admit(&mut cluster, vmi(json!({"app": "x"}), json!({}))) {
        Outcome::Invalid(c) => {
            let msg = c[0].message.clone().unwrap();
            assert!(msg.starts_with("VirtualMachinePresets cannot be applied due to conflicts: presets 'a' and 'b' conflict: spec.cpu"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let excluded = vmi(
        json!({"app": "x"}),
        json!({"virtualmachineinstancepresets.admission.kubevirt.io/exclude": "true"}),
    );
    match admit(&mut cluster, excluded) {
        // Without the presets the VMI has no memory at all.
        Outcome::Invalid(c) => assert!(c[0].message.as_deref().unwrap().contains("no memory requested")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn instancetype_and_preference_apply_to_a_vmi_spec() {
    let it: kubevirt_api::v1beta1::VirtualMachineInstancetypeSpec =
        serde_json::from_value(json!({"cpu": {"guest": 4}, "memory": {"guest": "2Gi", "overcommitPercent": 25}, "annotations": {"team": "a"}})).unwrap();
    let pref: kubevirt_api::v1beta1::VirtualMachinePreferenceSpec = serde_json::from_value(json!({
        "cpu": {"preferredCPUTopology": "cores"},
        "devices": {"preferredDiskBus": "virtio", "preferredInterfaceModel": "virtio", "preferredRng": {}},
        "features": {"preferredSmm": {}},
        "firmware": {"preferredUseEfi": true, "preferredUseSecureBoot": true},
        "preferredTerminationGracePeriodSeconds": 5
    }))
    .unwrap();
    let mut spec: kubevirt_api::v1::VirtualMachineInstanceSpec = serde_json::from_value(json!({
        "domain": {"devices": {"disks": [{"name": "root"}, {"name": "cd", "cdrom": {}}],
            "interfaces": [{"name": "default", "masquerade": {}, "model": "e1000"}]}}
    }))
    .unwrap();
    let mut ann = BTreeMap::new();
    instancetype::apply("spec", &mut spec, &mut ann, Some(&it), Some(&pref)).unwrap();
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        v["domain"]["cpu"],
        json!({"sockets": 1, "cores": 4, "threads": 1})
    );
    assert_eq!(v["domain"]["memory"]["guest"], "2Gi");
    assert_eq!(v["domain"]["resources"]["requests"]["memory"], "1536Mi");
    assert_eq!(v["domain"]["devices"]["disks"][0]["disk"]["bus"], "virtio");
    assert!(
        v["domain"]["devices"]["disks"][1]["cdrom"].get("bus").is_none(),
        "cdrom bus is the cdrom preference's"
    );
    assert_eq!(
        v["domain"]["devices"]["interfaces"][0]["model"], "e1000",
        "preferences never override"
    );
    assert_eq!(v["domain"]["devices"]["rng"], json!({}));
    assert_eq!(v["domain"]["features"]["smm"], json!({}));
    assert_eq!(v["domain"]["firmware"]["bootloader"]["efi"]["secureBoot"], true);
    assert_eq!(v["terminationGracePeriodSeconds"], 5);
    assert_eq!(ann.get("team").map(String::as_str), Some("a"));

    // A VMI that already sizes itself conflicts, and nothing of the preference is applied.
    let mut sized: kubevirt_api::v1::VirtualMachineInstanceSpec = serde_json::from_value(json!({
        "domain": {"devices": {}, "cpu": {"cores": 2}, "resources": {"requests": {"memory": "1Gi"}}}
    }))
    .unwrap();
    let err =
        instancetype::apply("spec", &mut sized, &mut BTreeMap::new(), Some(&it), Some(&pref)).unwrap_err();
    let paths: Vec<_> = err.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.domain.cpu.cores", "spec.domain.resources.requests.memory"]
    );
    assert!(sized.termination_grace_period_seconds.is_none());
}
