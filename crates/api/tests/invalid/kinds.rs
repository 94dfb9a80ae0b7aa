//! VMI update, VM, migration, replica set, pool, instancetype, preference, policy and DataVolume rules (34–36 and more).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{Expect, base, cause, check, check_in, configured};

#[test]
fn vmi_update_rules() {
    use kubevirt_api::v1::VirtualMachineInstance;
    use kubevirt_api::validate::vmi_update;
    // 34: a user may change neither the spec nor the reserved labels; KubeVirt may, within the hotplug rules.
    let config = kubevirt_api::config::ClusterConfig::default();
    let old: VirtualMachineInstance = serde_json::from_value(base("vmi")).unwrap();
    let messages_in = |config: &kubevirt_api::config::ClusterConfig,
                       old: &VirtualMachineInstance,
                       new: &VirtualMachineInstance,
                       kubevirt: bool|
     -> Vec<String> {
        vmi_update(old, new, kubevirt, config)
            .into_iter()
            .map(|c| {
                format!(
                    "{}|{}",
                    c.field.unwrap_or_default(),
                    c.message.unwrap_or_default()
                )
            })
            .collect()
    };
    let messages = |old: &VirtualMachineInstance, new: &VirtualMachineInstance, kubevirt: bool| {
        messages_in(&config, old, new, kubevirt)
    };
    let mut changed = old.clone();
    changed.spec.hostname = Some("other".into());
    assert_eq!(
        messages(&old, &changed, false),
        ["|update of VMI object is restricted"]
    );
    assert!(messages(&old, &changed, true).is_empty());
    assert!(messages(&old, &old, false).is_empty());
    let mut labelled = old.clone();
    labelled.metadata.labels = Some([("kubevirt.io/nodeName".to_string(), "n1".to_string())].into());
    assert_eq!(
        messages(&old, &labelled, false),
        ["|modification of the following reserved kubevirt.io/ labels on a VMI object is prohibited"]
    );
    assert!(messages(&old, &labelled, true).is_empty());
    let mut other = old.clone();
    other.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    assert!(messages(&old, &other, false).is_empty());

    let with = |patch: serde_json::Value| -> VirtualMachineInstance {
        let mut v = base("vmi");
        crate::merge(&mut v, &patch);
        serde_json::from_value(v).unwrap()
    };
    let sockets = with(json!({"spec": {"domain": {"cpu": {"sockets": 1, "maxSockets": 4}}}}));
    let more = with(json!({"spec": {"domain": {"cpu": {"sockets": 2, "maxSockets": 8}}}}));
    assert_eq!(
        messages(&sockets, &more, true),
        ["|CPU topology maxSockets changed"]
    );
    let mem = with(json!({"spec": {"domain": {"memory": {"guest": "1Gi", "maxGuest": "4Gi"}}}}));
    let same = with(json!({"spec": {"domain": {"memory": {"guest": "2Gi", "maxGuest": "4096Mi"}}}}));
    let bigger = with(json!({"spec": {"domain": {"memory": {"guest": "2Gi", "maxGuest": "8Gi"}}}}));
    assert!(messages(&mem, &same, true).is_empty());
    assert_eq!(messages(&mem, &bigger, true), ["|Memory maxGuest changed"]);

    let utility = json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "pvc"}]}});
    assert_eq!(
        messages(&old, &with(utility.clone()), true),
        ["spec.utilityVolumes|UtilityVolumes feature gate is not enabled"]
    );
    let gated = kubevirt_api::config::ClusterConfig::from_kubevirt(Some(
        &serde_json::from_value(json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
            "metadata": {"name": "kubevirt"},
            "spec": {"configuration": {"developerConfiguration": {"featureGates": ["UtilityVolumes"]}}}}))
        .unwrap(),
    ));
    let gm = |old: &VirtualMachineInstance, new: &VirtualMachineInstance| messages_in(&gated, old, new, true);
    assert!(gm(&old, &with(utility.clone())).is_empty());
    let bad = with(json!({"spec": {"utilityVolumes": [
        {"name": "root", "claimName": "a"}, {"name": "root", "claimName": ""}]}}));
    assert_eq!(
        gm(&old, &bad),
        [
            "spec.utilityVolumes[0].name|spec.utilityVolumes[0] conflicts with spec.volumes[0]. UtilityVolume names must be unique across both volumes and utilityVolumes.",
            "spec.utilityVolumes[1].name|spec.utilityVolumes[1] and spec.utilityVolumes[0] must not have the same Name.",
            "spec.utilityVolumes[1].name|spec.utilityVolumes[1] conflicts with spec.volumes[0]. UtilityVolume names must be unique across both volumes and utilityVolumes.",
            "spec.utilityVolumes[1].claimName|UtilityVolume PVC 'claimName' must be set",
        ]
    );
    let plugged = with(
        json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "pvc"}]},
        "status": {"volumeStatus": [{"name": "u", "target": "sda"}]}}),
    );
    assert_eq!(
        gm(
            &plugged,
            &with(json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "pvc", "readOnly": true}]}}))
        ),
        ["|utility volume u cannot be a permanent volume, utility volumes must always be hotplug"]
    );
    let hot = with(
        json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "pvc"}]},
        "status": {"volumeStatus": [{"name": "u", "target": "sda", "hotplugVolume": {}}]}}),
    );
    assert_eq!(
        gm(
            &hot,
            &with(json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "other"}]}}))
        ),
        ["|utility volume u has changed"]
    );

    // NodeRestriction for virt-handler.
    use kubevirt_api::validate::handler_node_restriction as restrict;
    let on_a = with(json!({"status": {"nodeName": "a"}}));
    let text = |c: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause>| {
        c.into_iter()
            .map(|c| c.message.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        text(restrict(&on_a, &on_a, None)),
        ["Node restriction failed, virt-handler service account is missing node name"]
    );
    assert!(restrict(&on_a, &on_a, Some("a")).is_empty());
    assert_eq!(
        text(restrict(&on_a, &on_a, Some("b"))),
        ["Node restriction, virt-handler is only allowed to modify VMIs it owns"]
    );
    let migrating = with(json!({"status": {"nodeName": "a", "migrationState": {"targetNode": "b"}}}));
    assert!(restrict(&migrating, &migrating, Some("b")).is_empty());
    let targeted = with(json!({"status": {"nodeName": "a", "migrationState": {"targetNode": "c"}}}));
    assert_eq!(
        text(restrict(&on_a, &targeted, Some("a"))),
        ["Node restriction, virt-handler is not allowed to set target node"]
    );
    assert!(kubevirt_api::validate::kubevirt_account(
        "system:serviceaccount:kubevirt:kubevirt-handler",
        "kubevirt"
    ));
    assert!(!kubevirt_api::validate::kubevirt_account(
        "system:serviceaccount:default:kubevirt-handler",
        "kubevirt"
    ));
    assert!(!kubevirt_api::validate::kubevirt_account(
        "kvbox-admin",
        "kubevirt"
    ));
}

#[test]
fn vm_rules() {
    // 35
    check(
        35,
        "vm",
        json!({"spec": {"running": true}}),
        cause("spec.running", "Running and RunStrategy are mutually exclusive"),
    );
    check(
        35,
        "vm",
        json!({"spec": {"runStrategy": null}}),
        cause("spec.running", "RunStrategy must be specified"),
    );
    check(
        35,
        "vm",
        json!({"spec": {"runStrategy": "Sometimes"}}),
        cause("spec.runStrategy", "Invalid RunStrategy (Sometimes)"),
    );
    check(
        35,
        "vm",
        json!({"spec": {"dataVolumeTemplates": [{"metadata": {"name": "dv"}, "spec": {"source": {"blank": {}}, "storage": {}}}]}}),
        cause(
            "spec.dataVolumeTemplate[0]",
            "DataVolumeTemplate entry spec.dataVolumeTemplate[0] must be referenced in the VMI template's 'volumes' list",
        ),
    );
    check(
        35,
        "vm",
        json!({"spec": {"dataVolumeTemplates": [{"metadata": {"name": "root"}, "spec": {"source": {"blank": {}}}}]}}),
        cause(
            "spec.dataVolumeTemplate[0].PVC.Storage",
            "Missing Data volume PVC or Storage",
        ),
    );
    check(
        35,
        "vm",
        json!({"spec": {"template": {"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "ide"}}]}}}}}}),
        cause(
            "spec.template.spec.domain.devices.disks[0].disk.bus",
            "IDE bus is not supported",
        ),
    );
    // instancetype conflicts (VM webhook applies the instancetype to a copy)
    check(
        35,
        "vm",
        json!({"spec": {"instancetype": {"name": "it", "kind": "VirtualMachineInstancetype"}}}),
        cause(
            "spec.template.spec.domain.memory.guest",
            "VM field(s) spec.template.spec.domain.memory.guest conflicts with selected instance type",
        ),
    );
    check(
        35,
        "vm",
        json!({"spec": {"instancetype": {"name": "it", "kind": "VirtualMachineInstancetype"}, "template": {"spec": {"domain": {"memory": null, "cpu": {"sockets": 2}}}}}}),
        cause(
            "spec.template.spec.domain.cpu.sockets",
            "conflicts with selected instance type",
        ),
    );
    check(
        35,
        "vm",
        json!({"spec": {"instancetype": {"name": "it", "kind": "VirtualMachineInstancetype"}, "preference": {"name": "spread", "kind": "VirtualMachinePreference"}, "template": {"spec": {"domain": {"memory": null}}}}}),
        cause(
            "instancetype.spec.cpu.guest",
            "2 vCPUs provided by the instance type are not divisible",
        ),
    );
}

#[test]
fn migration_rules() {
    // 36
    check(
        36,
        "vmim",
        json!({"spec": {"vmiName": "missing"}}),
        Expect::BadRequest("the VMI \"default/missing\" does not exist"),
    );
    check(
        36,
        "vmim",
        json!({"spec": {"vmiName": "done"}}),
        Expect::BadRequest("Cannot migrate VMI in finalized state."),
    );
    check(
        36,
        "vmim",
        json!({"spec": {"vmiName": "busy"}}),
        Expect::BadRequest("in-flight migration detected. Active migration job (uid-1)"),
    );
    check(
        36,
        "vmim",
        json!({"spec": {"vmiName": null}}),
        cause("spec.vmiName", "vmiName is missing"),
    );
}

#[test]
fn replicaset_and_pool_rules() {
    check(
        0,
        "vmirs",
        json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}),
        cause("spec.selector", "selector does not match labels."),
    );
    check(
        0,
        "vmirs",
        json!({"spec": {"template": {"spec": {"domain": {"machine": {"type": "pc"}}}}}}),
        cause("spec.template.spec.domain.machine.type", "is not supported: pc"),
    );
    check(
        0,
        "pool",
        json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}),
        cause("spec.selector", "selector does not match labels."),
    );
    check(
        0,
        "pool",
        json!({"spec": {"maxUnavailable": "120%"}}),
        cause(
            "spec.maxUnavailable",
            "maxUnavailable percentage value 120 must be between 1 and 100",
        ),
    );
    check(
        0,
        "pool",
        json!({"spec": {"virtualMachineTemplate": {"spec": {"runStrategy": null}}}}),
        cause(
            "spec.virtualMachineTemplate.spec.running",
            "RunStrategy must be specified",
        ),
    );
}

#[test]
fn instancetype_preference_policy_and_datavolume_rules() {
    check(
        0,
        "it",
        json!({"spec": {"memory": {"overcommitPercent": 150}}}),
        cause(
            "spec.memory.overcommitPercent",
            "must be in range between 0 and 100.",
        ),
    );
    check(
        0,
        "it",
        json!({"spec": {"memory": {"overcommitPercent": 10, "hugepages": {"pageSize": "2Mi"}}}}),
        cause(
            "spec.memory.overcommitPercent",
            "should not be requested together.",
        ),
    );
    check(
        0,
        "pref",
        json!({"spec": {"cpu": {"preferredCPUTopology": "diagonal"}}}),
        cause(
            "spec.cpu.preferredCPUTopology",
            "unknown preferredCPUTopology diagonal",
        ),
    );
    check(
        0,
        "pref",
        json!({"spec": {"cpu": {"preferredCPUTopology": "spread", "spreadOptions": {"across": "Everywhere"}}}}),
        cause(
            "spec.cpu.spreadOptions.across",
            "across Everywhere is not supported",
        ),
    );
    check(
        0,
        "mp",
        json!({"spec": {"completionTimeoutPerGiB": -1}}),
        cause("spec.completionTimeoutPerGiB", "must not be negative"),
    );
    check(
        0,
        "mp",
        json!({"spec": {"bandwidthPerMigration": "-5Mi"}}),
        cause("spec.bandwidthPerMigration", "must not be negative"),
    );
    check(
        0,
        "dv",
        json!({"spec": {"pvc": null}}),
        cause("spec.PVC", "Missing Data volume PVC"),
    );
    check(
        0,
        "dv",
        json!({"spec": {"source": {"http": {"url": "http://127.0.0.1/a"}, "blank": {}}}}),
        cause("spec.source", "Multiple Data volume sources"),
    );
    check(
        0,
        "dv",
        json!({"spec": {"pvc": {"resources": {"requests": {"storage": "1Ki"}}}}}),
        cause(
            "spec.PVC.resources.requests.size",
            "PVC size should be at least 1MiB",
        ),
    );
    check(
        0,
        "dv",
        json!({"spec": {"source": {"http": {"url": "ftp://127.0.0.1/a"}}}}),
        cause("spec.source.HTTP.url", "Invalid source URL scheme: ftp"),
    );
}

#[test]
fn decentralized_migrations_follow_their_gate() {
    check_in(
        configured(
            json!({"developerConfiguration": {"disabledFeatureGates": ["DecentralizedLiveMigration"]}}),
        ),
        36,
        "vmim",
        json!({"spec": {"receive": {"migrationID": "m1"}}}),
        cause(
            "",
            "DecentralizedLiveMigration feature gate is not enabled in kubevirt resource",
        ),
    );
    check(
        36,
        "vmim",
        json!({"spec": {"receive": {"migrationID": "m1"}, "sendTo": {"migrationID": "m2", "connectURL": "127.0.0.1:1"}}}),
        cause("", "sendTo migrationID m2 does not match receive migrationID m1"),
    );
}

#[test]
fn preference_requirements() {
    let mut cluster = crate::cluster();
    let pref = json!({"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachinePreference",
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"requirements": {"cpu": {"guest": 4}, "memory": {"guest": "2Gi"}}}});
    cluster.record(&kubevirt_api::object::Object::from_value(pref).unwrap());
    // With the instancetype (2 vCPU, 1Gi) the CPU requirement fails first.
    check_in(
        cluster.clone(),
        35,
        "vm",
        json!({"spec": {"instancetype": {"name": "it", "kind": "VirtualMachineInstancetype"},
            "preference": {"name": "big", "kind": "VirtualMachinePreference"},
            "template": {"spec": {"domain": {"memory": null}}}}}),
        cause(
            "spec.instancetype",
            "failure checking preference requirements: insufficient CPU resources of 2 vCPU provided by instance type, preference requires 4 vCPU",
        ),
    );
    // Without an instancetype, the VM's own sockets are compared.
    check_in(
        cluster,
        35,
        "vm",
        json!({"spec": {"preference": {"name": "big", "kind": "VirtualMachinePreference"},
            "template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}}),
        cause(
            "spec.template.spec.domain.cpu.sockets",
            "insufficient CPU resources of 2 vCPU provided by VirtualMachine, preference requires 4 vCPU provided as sockets",
        ),
    );
}
