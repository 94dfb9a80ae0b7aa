//! Volume, disk, cloud-init and boot-order rules (10–17).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{cause, check, check_in, configured};

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
fn host_disk_rules_with_the_gate_on() {
    // 12, past the gate.
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
        check_in(
            configured(json!({"developerConfiguration": {"featureGates": ["HostDisk"]}})),
            12,
            "vmi",
            json!({"spec": {"volumes": [{"name": "root", "hostDisk": hd}]}}),
            cause(field, message),
        );
    }
}
