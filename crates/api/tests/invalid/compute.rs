//! Compute rules (1–9) and the guest-memory limit of a staged rollout (3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::{cause, check, check_in, configured};

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
fn guest_memory_above_limit_is_refused_with_staged_rollout() {
    // 3: only checked when the cluster uses the Stage rollout strategy.
    for (guest, limit) in [("2Gi", "1Gi"), ("1025Mi", "1Gi")] {
        check_in(
            configured(json!({"vmRolloutStrategy": "Stage"})),
            3,
            "vmi",
            json!({"spec": {"domain": {"memory": {"guest": guest}, "resources": {"limits": {"memory": limit}}}}}),
            cause(
                "spec.domain.memory.guest",
                "must be equal to or less than the memory limit",
            ),
        );
    }
}
