//! A table of invalid objects: at least two per validation rule of kubevirt-inventory.md §3, each asserting the
//! exact field path upstream reports (and a piece of its message).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use serde_json::{Value, json};

fn merge(base: &mut Value, patch: &Value) {
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

fn base(kind: &str) -> Value {
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
fn cluster() -> Cluster {
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

enum Expect {
    Cause {
        field: &'static str,
        message: &'static str,
    },
    BadRequest(&'static str),
}

fn run(kind: &str, patch: Value) -> Outcome {
    let mut obj = base(kind);
    merge(&mut obj, &patch);
    let obj = Object::from_value(obj).unwrap_or_else(|e| panic!("decode: {e}"));
    let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    let mut ids = || "00000000-0000-4000-8000-000000000001".to_string();
    cluster().admit(obj, now, &mut ids)
}

fn check(rule: u32, kind: &str, patch: Value, expect: Expect) {
    let outcome = run(kind, patch.clone());
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

fn cause(field: &'static str, message: &'static str) -> Expect {
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

#[test]
fn compute_rules() {
    // 1 memory required
    check(
        1,
        "vmi",
        json!({"spec": {"domain": {"memory": null}}}),
        cause("", "no memory requested"),
    );
    check(
        1,
        "vmi",
        json!({"spec": {"domain": {"memory": {"guest": null, "maxGuest": "1Gi"}}}}),
        cause("", "at least one of 'spec.domain.memory.guest'"),
    );
    // 2 requests/limits
    check(
        2,
        "vmi",
        json!({"spec": {"domain": {"resources": {"requests": {"memory": "-1Mi"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "must be greater than or equal to 0.",
        ),
    );
    check(
        2,
        "vmi",
        json!({"spec": {"domain": {"resources": {"requests": {"memory": "1k"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "must be greater than or equal to 1M.",
        ),
    );
    check(
        2,
        "vmi",
        json!({"spec": {"domain": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "is greater than spec.domain.resources.limits.memory",
        ),
    );
    check(
        2,
        "vmi",
        json!({"spec": {"domain": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}}),
        cause(
            "spec.domain.resources.requests.cpu",
            "is greater than spec.domain.resources.limits.cpu",
        ),
    );
    check(
        2,
        "vmi",
        json!({"spec": {"domain": {"resources": {"requests": {"memory": "lots"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "quantities must match the regular expression",
        ),
    );
    // 3 guest <= limit (Stage rollout only; see the dedicated test below)
    // 4 hugepages
    check(
        4,
        "vmi",
        json!({"spec": {"domain": {"memory": {"guest": "1Mi", "hugepages": {"pageSize": "2Mi"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "must be equal to or larger than page size",
        ),
    );
    check(
        4,
        "vmi",
        json!({"spec": {"domain": {"memory": {"guest": "3Mi", "hugepages": {"pageSize": "2Mi"}}}}}),
        cause(
            "spec.domain.resources.requests.memory",
            "is not a multiple of the page size",
        ),
    );
    check(
        4,
        "vmi",
        json!({"spec": {"domain": {"memory": {"hugepages": {"pageSize": "huge"}}}}}),
        cause("spec.domain.memory.hugepages.pageSize", "quantities must match"),
    );
    // 5 dedicated CPUs
    check(
        5,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"dedicatedCpuPlacement": true, "cores": 2}, "resources": {"requests": {"cpu": "1500m"}}}}}),
        cause(
            "spec.domain.resources.requests.cpu",
            "provided resources CPU requests must be an interger",
        ),
    );
    check(
        5,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"dedicatedCpuPlacement": true, "threads": 3}}}}),
        cause(
            "spec.domain.cpu.dedicatedCpuPlacement",
            "Not more than two threads",
        ),
    );
    check(
        5,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"isolateEmulatorThread": true}}}}),
        cause(
            "spec.domain.cpu.isolateEmulatorThread",
            "IsolateEmulatorThread should be only set in combination with DedicatedCPUPlacement",
        ),
    );
    check(
        5,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"dedicatedCpuPlacement": true}, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "3"}}}}}),
        cause(
            "spec.domain.cpu.dedicatedCpuPlacement",
            "must be equal when DedicatedCPUPlacement is true",
        ),
    );
    // 6 NUMA / realtime
    check(
        6,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"numa": {"guestMappingPassthrough": {}}}}}}),
        cause(
            "spec.domain.cpu.numa.guestMappingPassthrough",
            "spec.domain.cpu.dedicatedCpuPlacement must be set to true",
        ),
    );
    check(
        6,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"numa": {"guestMappingPassthrough": {}}}}}}),
        cause(
            "spec.domain.cpu.numa.guestMappingPassthrough",
            "spec.domain.memory.hugepages must be requested",
        ),
    );
    check(
        6,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"realtime": {}}}}}),
        cause(
            "spec.domain.cpu.dedicatedCpuPlacement",
            "must be set to true when spec.domain.cpu.realtime is used",
        ),
    );
    check(
        6,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"realtime": {}, "dedicatedCpuPlacement": true, "cores": 1}}}}),
        cause(
            "spec.domain.cpu.numa.guestMappingPassthrough",
            "must be defined when spec.domain.cpu.realtime is used",
        ),
    );
    // 7 CPU features, sockets
    check(
        7,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"features": [{"name": "vmx", "policy": "maybe"}]}}}}),
        cause(
            "spec.domain.cpu.features[0].policy",
            "CPU feature vmx uses policy maybe that is not supported.",
        ),
    );
    check(
        7,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"features": [{"name": "a"}, {"name": "b", "policy": "always"}]}}}}),
        cause("spec.domain.cpu.features[1].policy", "not supported"),
    );
    check(
        7,
        "vmi",
        json!({"spec": {"domain": {"cpu": {"sockets": 4, "maxSockets": 2}}}}),
        cause(
            "spec.domain.cpu.sockets",
            "Number of sockets in CPU topology is greater than the maximum sockets allowed",
        ),
    );
    // 8 machine type
    check(
        8,
        "vmi",
        json!({"spec": {"domain": {"machine": {"type": "pc-i440fx-9.0"}}}}),
        cause(
            "spec.domain.machine.type",
            "spec.domain.machine.type is not supported: pc-i440fx-9.0 (allowed values: [q35* pc-q35*])",
        ),
    );
    check(
        8,
        "vmi",
        json!({"spec": {"domain": {"machine": {"type": "virt"}}}}),
        cause("spec.domain.machine.type", "is not supported: virt"),
    );
    // 9 hostname / subdomain
    check(
        9,
        "vmi",
        json!({"spec": {"hostname": "Bad_Host"}}),
        cause(
            "spec.hostname",
            "does not conform to the kubernetes DNS_LABEL rules",
        ),
    );
    check(
        9,
        "vmi",
        json!({"spec": {"hostname": "a.b"}}),
        cause("spec.hostname", "must not contain dots"),
    );
    check(
        9,
        "vmi",
        json!({"spec": {"subdomain": "-x-"}}),
        cause(
            "spec.subdomain",
            "does not conform to the kubernetes DNS_SUBDOMAIN rules",
        ),
    );
}

#[test]
fn storage_rules() {
    let img = json!({"image": "cirros"});
    // 10 volumes
    check(
        10,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "root", "emptyDisk": {"capacity": "1Gi"}}]}}),
        cause(
            "spec.volumes[1].name",
            "spec.volumes[1] and spec.volumes[0] must not have the same Name.",
        ),
    );
    check(
        10,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root"}, {"name": "data"}]}}}}),
        cause(
            "spec.domain.devices.disks[1].name",
            "spec.domain.devices.disks[1].Name 'data' not found.",
        ),
    );
    check(
        10,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img, "emptyDisk": {"capacity": "1Gi"}}]}}),
        cause("spec.volumes[0]", "must have exactly one source type set"),
    );
    check(
        10,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root"}]}}),
        cause("spec.volumes[0]", "must have exactly one source type set"),
    );
    // 11 cloud-init
    let big = "x".repeat(2049);
    check(
        11,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "ci", "cloudInitNoCloud": {"userData": big}}]}}),
        cause(
            "spec.volumes[1].cloudInitNoCloud",
            "userdata exceeds 2048 byte limit",
        ),
    );
    check(
        11,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "ci", "cloudInitNoCloud": {"userDataBase64": "%%%"}}]}}),
        cause(
            "spec.volumes[1].cloudInitNoCloud.userDataBase64",
            "is not a valid base64 value.",
        ),
    );
    check(
        11,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "ci", "cloudInitConfigDrive": {}}]}}),
        cause(
            "spec.volumes[1].cloudInitConfigDrive",
            "must have at least one userdatasource or one networkdatasource set.",
        ),
    );
    check(
        11,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "ci", "cloudInitNoCloud": {"userData": "a", "secretRef": {"name": "s"}}}]}}),
        cause(
            "spec.volumes[1].cloudInitNoCloud",
            "must have only one userdatasource set.",
        ),
    );
    // 12 hostDisk (gate off by default)
    check(
        12,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "hostDisk": {"path": "/tmp/x.img", "type": "Disk"}}]}}),
        cause("spec.volumes[0]", "HostDisk feature gate is not enabled"),
    );
    check(
        12,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "h", "hostDisk": {"path": "", "type": "Bogus"}}]}}),
        cause("spec.volumes[1]", "HostDisk feature gate is not enabled"),
    );
    // 13 configMap / secret / serviceAccount / singletons
    check(
        13,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "cm", "configMap": {}}]}}),
        cause(
            "spec.volumes[1].configMap.name",
            "spec.volumes[1].configMap.name is a required field",
        ),
    );
    check(
        13,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "s", "secret": {}}]}}),
        cause("spec.volumes[1].secret.secretName", "is a required field"),
    );
    check(
        13,
        "vmi",
        json!({"spec": {"volumes": [{"name": "root", "containerDisk": img}, {"name": "a", "serviceAccount": {"serviceAccountName": "x"}}, {"name": "b", "serviceAccount": {"serviceAccountName": "x"}}]}}),
        cause(
            "spec.volumes",
            "spec.volumes must have max one serviceAccount volume set",
        ),
    );
    check(
        13,
        "vmi",
        json!({"spec": {"serviceAccountName": "y", "volumes": [{"name": "root", "containerDisk": img}, {"name": "a", "serviceAccount": {"serviceAccountName": "x"}}]}}),
        cause(
            "spec.serviceAccountName",
            "must reference the same service account",
        ),
    );
    // 14 boot order
    check(
        14,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "bootOrder": 0}]}}}}),
        cause(
            "spec.domain.devices.disks[0].bootOrder",
            "spec.domain.devices.disks[0] must have a boot order > 0, if supplied",
        ),
    );
    check(
        14,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "bootOrder": 1}, {"name": "d2", "bootOrder": 1}]}}, "volumes": [{"name": "root", "containerDisk": img}, {"name": "d2", "emptyDisk": {"capacity": "1Gi"}}]}}),
        cause(
            "spec.domain.devices.disks[1].bootOrder",
            "Boot order for spec.domain.devices.disks[1].bootOrder already set for a different device.",
        ),
    );
    check(
        14,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "bootOrder": 1}], "interfaces": [{"name": "default", "masquerade": {}, "bootOrder": 1}]}}, "networks": [{"name": "default", "pod": {}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].bootOrder",
            "already set for a different device",
        ),
    );
    // 15 LUN only on PVC/DV
    check(
        15,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "lun": {}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].lun",
            "can only be mapped to a DataVolume or PersistentVolumeClaim volume.",
        ),
    );
    check(
        15,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root"}, {"name": "e", "lun": {"bus": "scsi"}}]}}, "volumes": [{"name": "root", "containerDisk": img}, {"name": "e", "emptyDisk": {"capacity": "1Gi"}}]}}),
        cause("spec.domain.devices.disks[1].lun", "can only be mapped"),
    );
    // 16 disk device rules
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "ide"}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].disk.bus",
            "IDE bus is not supported",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "cdrom": {"bus": "virtio"}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].cdrom.bus",
            "Bus type virtio is invalid for CD-ROM device",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "sata", "readonly": true}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].disk.bus",
            "sata hard-disks do not support read-only.",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "nvme"}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].disk.bus",
            "is set with an unrecognized bus nvme, must be one of: [virtio scsi sata usb]",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "cache": "unsafe"}]}}}}),
        cause("spec.domain.devices.disks[0].cache", "has invalid value unsafe"),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "serial": "has space"}]}}}}),
        cause(
            "spec.domain.devices.disks[0].serial",
            "must be made up of the following characters [A-Za-z0-9_.+-], if specified",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}, "blockSize": {"custom": {"logical": 1000, "physical": 1000}}}]}}}}),
        cause(
            "spec.domain.devices.disks[0].blockSize.custom.logical",
            "Provided size of 1000 is not a power of 2",
        ),
    );
    check(
        16,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "io": "uring"}]}}}}),
        cause(
            "spec.domain.devices.disks.domain.devices.disks[0].io",
            "Supported modes are: native, threads.",
        ),
    );
    // 17 dedicatedIOThread / ioThreadsPolicy
    check(
        17,
        "vmi",
        json!({"spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "sata"}, "dedicatedIOThread": true}]}}}}),
        cause(
            "spec.domain.devices.disks.domain.devices.disks[0]",
            "IOThreads are not supported for disks on a sata bus",
        ),
    );
    check(
        17,
        "vmi",
        json!({"spec": {"domain": {"ioThreadsPolicy": "lots"}}}),
        cause("spec.domain.ioThreadsPolicy", "Invalid IOThreadsPolicy (lots)"),
    );
    check(
        17,
        "vmi",
        json!({"spec": {"domain": {"ioThreadsPolicy": "supplementalPool"}}}),
        cause(
            "spec.domain.ioThreads.count",
            "the number of iothreads needs to be set and positive",
        ),
    );
}

#[test]
fn network_rules() {
    let pod = json!([{"name": "default", "pod": {}}]);
    // 18 bindings and name matching
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0]",
            "logical default interface must have exactly one binding method or binding plugin",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "other", "masquerade": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "spec.domain.devices.interfaces[0].name 'other' not found.",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "other", "masquerade": {}}]}}, "networks": pod}}),
        cause(
            "spec.networks[0].name",
            "spec.networks[0].name 'default' not found.",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}]}}, "networks": [{"name": "default", "pod": {}}, {"name": "default", "pod": {}}]}}),
        cause(
            "spec.networks[1].name",
            "Network with name \"default\" already exists",
        ),
    );
    check(
        18,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "bad name", "bridge": {}}]}}, "networks": [{"name": "bad name", "pod": {}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "Network interface name can only contain",
        ),
    );
    // 19 binding vs network type
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "m", "masquerade": {}}]}}, "networks": [{"name": "m", "multus": {"networkName": "nad"}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "Masquerade interface only implemented with pod network",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "slirp": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].slirp",
            "Slirp interface support has been discontinued since v1.3",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "macvtap": {}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macvtap",
            "Macvtap network binding has been discontinued since v1.3",
        ),
    );
    check(
        19,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "p", "passtBinding": {}}]}}, "networks": [{"name": "p", "multus": {"networkName": "nad"}}]}}),
        cause(
            "spec.domain.devices.interfaces[0].name",
            "PasstBinding interface only implemented with pod network",
        ),
    );
    // 20 model / MAC / PCI
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "model": "vmxnet3"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].model",
            "interface spec.domain.devices.interfaces[0].name uses model vmxnet3 that is not supported.",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "macAddress": "zz:00:00:00:00:00"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macAddress",
            "has malformed MAC address",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:00"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].macAddress",
            "reserved for the in-pod bridge",
        ),
    );
    check(
        20,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "pciAddress": "0000:00:1"}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].pciAddress",
            "has malformed PCI address (0000:00:1).",
        ),
    );
    // 21 ports
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 0}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].port",
            "Port field is mandatory.",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 70000}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].port",
            "Port field must be in range 0 < x < 65536.",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 80, "protocol": "SCTP"}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[0].protocol",
            "Unknown protocol, only TCP or UDP allowed",
        ),
    );
    check(
        21,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}, "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].ports[1].name",
            "Duplicate name of the port: http",
        ),
    );
    // 22 DHCP
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"privateOptions": [{"option": 100, "value": "x"}]}}]}}, "networks": pod}}),
        cause(
            "spec",
            "provided DHCPPrivateOptions are out of range, must be in range 224 to 254",
        ),
    );
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"privateOptions": [{"option": 240, "value": "x"}, {"option": 240, "value": "y"}]}}]}}, "networks": pod}}),
        cause(
            "spec",
            "Found Duplicates: you have provided duplicate DHCPPrivateOptions",
        ),
    );
    check(
        22,
        "vmi",
        json!({"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "dhcpOptions": {"ntpServers": ["::1"]}}]}}, "networks": pod}}),
        cause(
            "spec.domain.devices.interfaces[0].dhcpOptions.ntpServers[0]",
            "NTP servers must be a list of valid IPv4 addresses.",
        ),
    );
    // 23 probes
    check(
        23,
        "vmi",
        json!({"spec": {"readinessProbe": {"exec": {"command": ["true"]}, "guestAgentPing": {}}}}),
        cause(
            "spec.readinessProbe",
            "spec.readinessProbe must have exactly one probe type set",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"livenessProbe": {"periodSeconds": 3}}}),
        cause(
            "spec.livenessProbe",
            "either spec.livenessProbe.tcpSocket, spec.livenessProbe.exec or spec.livenessProbe.httpGet must be set",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachPodInterface": false}}, "readinessProbe": {"tcpSocket": {"port": 22}}}}),
        cause(
            "spec.readinessProbe.tcpSocket",
            "is only allowed if the Pod Network is attached",
        ),
    );
    check(
        23,
        "vmi",
        json!({"spec": {"startStrategy": "Paused", "livenessProbe": {"guestAgentPing": {}}}}),
        cause(
            "spec.startStrategy",
            "Pausing VMI with LivenessProbe is not supported",
        ),
    );
    // 24 DNS
    check(
        24,
        "vmi",
        json!({"spec": {"dnsPolicy": "Sometimes"}}),
        cause("spec.dnsPolicy", "DNSPolicy: Sometimes is not supported"),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsPolicy": "None"}}),
        cause(
            "spec.dnsConfig",
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}}),
        cause("nameservers", "must not have more than 3 nameservers"),
    );
    check(
        24,
        "vmi",
        json!({"spec": {"dnsConfig": {"nameservers": ["not-an-ip"]}}}),
        cause("nameservers", "must be valid IP address: not-an-ip"),
    );
}

#[test]
fn firmware_and_device_rules() {
    // 25 bootloader / secure boot / ACPI
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"bootloader": {"bios": {}, "efi": {"secureBoot": false}}}}}}),
        cause(
            "spec.domain.firmware.bootloader",
            "has both EFI and BIOS configured, but they are mutually exclusive.",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"bootloader": {"efi": {}}}}}}),
        cause(
            "spec.domain",
            "spec.domain has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled.",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"acpi": {}}}}}),
        cause(
            "spec.acpi",
            "ACPI was set but no SLIC nor MSDM volume reference was set",
        ),
    );
    check(
        25,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"acpi": {"slicNameRef": "root"}}}}}),
        cause(
            "spec.acpi.slicNameRef",
            "spec.acpi refers to Volume of unsupported type.",
        ),
    );
    // 26 kernel boot
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"kernelArgs": "console=ttyS0"}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.kernelArgs",
            "kernel arguments cannot be provided without an external kernel",
        ),
    );
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"container": {"image": "k"}}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.container",
            "must be defined with at least one of the following: kernelPath, initrdPath",
        ),
    );
    check(
        26,
        "vmi",
        json!({"spec": {"domain": {"firmware": {"kernelBoot": {"container": {"image": "k", "kernelPath": "boot/../vmlinuz"}}}}}}),
        cause(
            "spec.domain.firmware.kernelBoot.container.kernelPath",
            "must be an absolute path to a file without relative components",
        ),
    );
    // 27 access credentials
    let secret = json!({"secret": {"secretName": "keys"}});
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{"sshPublicKey": {"source": secret, "propagationMethod": {"noCloud": {}}}}]}}),
        cause(
            "spec.accessCredentials[0].sshPublicKey.propagationMethod",
            "requires a noCloud volume to exist",
        ),
    );
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{"sshPublicKey": {"source": secret, "propagationMethod": {"qemuGuestAgent": {"users": []}}}}]}}),
        cause(
            "spec.accessCredentials[0].sshPublicKey.propagationMethod.qemuGuestAgent.users",
            "requires at least one user",
        ),
    );
    check(
        27,
        "vmi",
        json!({"spec": {"accessCredentials": [{}]}}),
        cause(
            "spec.accessCredentials[0]",
            "must have exactly one access credential type set",
        ),
    );
    // 28 eviction / start strategy
    check(
        28,
        "vmi",
        json!({"spec": {"evictionStrategy": "Sometimes"}}),
        cause(
            "spec.evictionStrategy",
            "spec.evictionStrategy is set with an unrecognized option: Sometimes",
        ),
    );
    check(
        28,
        "vmi",
        json!({"spec": {"startStrategy": "Running"}}),
        cause(
            "spec.startStrategy",
            "spec.startStrategy is set with an unrecognized option: Running",
        ),
    );
    // 29 inputs / sound / panic
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"inputs": [{"name": "t", "type": "tablet", "bus": "ps2"}]}}}}),
        cause(
            "spec.domain.devices.inputs[0].bus",
            "Input device can have only virtio or usb bus.",
        ),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"inputs": [{"name": "k", "type": "keyboard"}]}}}}),
        cause(
            "spec.domain.devices.inputs[0].type",
            "Input device can have only tablet type.",
        ),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"sound": {"name": "s", "model": "sb16"}}}}}),
        cause("spec.Sound", "Sound device type is not supported."),
    );
    check(
        29,
        "vmi",
        json!({"spec": {"domain": {"devices": {"panicDevices": [{"model": "crashy"}]}}}}),
        cause(
            "spec.domain.devices.panicDevices[0].model",
            "invalid PanicDeviceModel(crashy)",
        ),
    );
    // 30 feature gates
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"hostDevices": [{"name": "h", "deviceName": "x/y"}]}}}}),
        cause(
            "spec.HostDevices",
            "Host Devices feature gate is not enabled in kubevirt-config",
        ),
    );
    check(
        30,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachVSOCK": true}}}}),
        cause(
            "spec.domain.devices.autoattachVSOCK",
            "VSOCK feature gate is not enabled in kubevirt-config",
        ),
    );
    check(
        30,
        "vmi",
        json!({"metadata": {"annotations": {"hooks.kubevirt.io/hookSidecars": "[]"}}}),
        cause("metadata.annotations", "sidecar feature gate is not enabled"),
    );
    // 31 reserved labels
    check(
        31,
        "vmi",
        json!({"metadata": {"labels": {"kubevirt.io/nodeName": "n1"}}}),
        cause(
            "metadata.labels",
            "creation of the following reserved kubevirt.io/ labels on a VMI object is prohibited",
        ),
    );
    check(
        31,
        "vm",
        json!({"spec": {"template": {"metadata": {"labels": {"kubevirt.io/created-by": "me"}}}}}),
        cause("spec.template.metadata.labels", "reserved kubevirt.io/ labels"),
    );
    // 32 ramfb / video / launchSecurity
    let gpu = |n: &str| json!({"name": n, "deviceName": "v/gpu", "virtualGPUOptions": {"display": {}}});
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"devices": {"gpus": [gpu("a"), gpu("b")]}}}}),
        cause(
            "spec.GPUs",
            "configuring multiple displays with ramfb is not valid",
        ),
    );
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"devices": {"autoattachGraphicsDevice": false, "video": {"type": "vga"}}}}}),
        cause(
            "spec.video",
            "Video configuration is not allowed when autoattachGraphicsDevice is set to false",
        ),
    );
    check(
        32,
        "vmi",
        json!({"spec": {"domain": {"launchSecurity": {}}}}),
        cause(
            "spec.launchSecurity",
            "One and only one launchSecurity type can be set",
        ),
    );
    // 33 utility volumes / architecture
    check(
        33,
        "vmi",
        json!({"spec": {"utilityVolumes": [{"name": "u", "claimName": "c"}]}}),
        cause(
            "spec.utilityVolumes",
            "cannot create VMI with utility volumes in spec",
        ),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"architecture": "riscv64"}}),
        cause("spec.architecture", "unsupported architecture: riscv64"),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}),
        cause(
            "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            "must have at least one node selector term",
        ),
    );
    check(
        33,
        "vmi",
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}}),
        cause(
            "spec.topologySpreadConstraints[0].maxSkew",
            "must be greater than zero",
        ),
    );
}

#[test]
fn host_disk_rules_with_the_gate_on() {
    // 12, past the gate.
    let mut cluster = Cluster::default();
    let kv = json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kv", "namespace": "kubevirt"},
        "spec": {"configuration": {"developerConfiguration": {"featureGates": ["HostDisk"]}}}});
    cluster.record(&Object::from_value(kv).unwrap());
    let cases = [
        (
            json!({"path": "", "type": "Disk"}),
            "spec.volumes[0].hostDisk.path",
            "spec.volumes[0].hostDisk.path is required for hostDisk volume",
        ),
        (
            json!({"path": "/d.img", "type": "Block"}),
            "spec.volumes[0].hostDisk.type",
            "has invalid value 'Block', allowed are 'Disk' or 'DiskOrCreate'",
        ),
        (
            json!({"path": "/d.img", "type": "Disk", "capacity": "1Gi"}),
            "spec.volumes[0].hostDisk.capacity",
            "is allowed to pass only with spec.volumes[0].hostDisk.type equal to 'DiskOrCreate'",
        ),
    ];
    for (hd, field, message) in cases {
        let mut vmi = base("vmi");
        merge(
            &mut vmi,
            &json!({"spec": {"volumes": [{"name": "root", "hostDisk": hd}]}}),
        );
        let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        let mut ids = || "x".to_string();
        match cluster.admit(Object::from_value(vmi).unwrap(), now, &mut ids) {
            Outcome::Invalid(c) => assert!(
                c.iter().any(|c| c.field.as_deref() == Some(field)
                    && c.message.as_deref().unwrap_or("").contains(message)),
                "{field}: {c:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn guest_memory_above_limit_is_refused_with_staged_rollout() {
    // 3: only checked when the cluster uses the Stage rollout strategy.
    let mut cluster = Cluster::default();
    let kv = json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kv", "namespace": "kubevirt"},
        "spec": {"configuration": {"vmRolloutStrategy": "Stage"}}});
    cluster.record(&Object::from_value(kv).unwrap());
    for (guest, limit) in [("2Gi", "1Gi"), ("1025Mi", "1Gi")] {
        let mut vmi = base("vmi");
        merge(
            &mut vmi,
            &json!({"spec": {"domain": {"memory": {"guest": guest}, "resources": {"limits": {"memory": limit}}}}}),
        );
        let now = serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        let mut ids = || "x".to_string();
        match cluster.admit(Object::from_value(vmi).unwrap(), now, &mut ids) {
            Outcome::Invalid(c) => assert!(
                c.iter()
                    .any(|c| c.field.as_deref() == Some("spec.domain.memory.guest")
                        && c.message
                            .as_deref()
                            .unwrap_or("")
                            .contains("must be equal to or less than the memory limit")),
                "{c:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn vmi_update_rules() {
    // 34
    let old: kubevirt_api::v1::VirtualMachineInstance = serde_json::from_value(base("vmi")).unwrap();
    let mut changed = old.clone();
    changed.spec.hostname = Some("other".into());
    let causes = kubevirt_api::validate::vmi_update(&old, &changed);
    assert_eq!(
        causes[0].message.as_deref(),
        Some("update of VMI object is restricted")
    );
    let mut changed = old.clone();
    changed.spec.domain.memory = None;
    assert_eq!(kubevirt_api::validate::vmi_update(&old, &changed).len(), 1);
    assert!(kubevirt_api::validate::vmi_update(&old, &old).is_empty());
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
