//! VMI spec rules about metadata, compute (resources, memory, CPU, machine type) and probes, and the entry point that runs every VMI spec rule (upstream's `ValidateVirtualMachineInstanceSpec`).

use std::collections::BTreeMap;

use super::{Causes, INVALID, NOT_SUPPORTED, REQUIRED, dns1123_label, dns1123_subdomain, network, storage};
use crate::config::ClusterConfig;
use crate::quantity::{self, Milli};
use crate::v1::{Probe, VirtualMachineInstanceSpec};

pub(super) const RESERVED_LABELS: &[&str] = &[
    "kubevirt.io/created-by",
    "kubevirt.io/migrationJobUID",
    "kubevirt.io/nodeName",
    "kubevirt.io/migrationTargetNodeName",
    "kubevirt.io/schedulable",
    "kubevirt.io/install-strategy",
];

/// Users may not set labels KubeVirt reserves for itself.
pub(super) fn reserved_labels(labels: Option<&BTreeMap<String, String>>, field: &str, c: &mut Causes) {
    if labels.is_some_and(|l| l.keys().any(|k| RESERVED_LABELS.contains(&k.as_str()))) {
        c.push(
            NOT_SUPPORTED,
            field,
            "creation of the following reserved kubevirt.io/ labels on a VMI object is prohibited",
        );
    }
}

/// Annotations that only work with a feature gate on, of the metadata at `meta` (`metadata` for a VMI,
/// `spec.template.metadata` for a VM).
pub(super) fn gated_annotations(
    meta: &str,
    ann: Option<&BTreeMap<String, String>>,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    let Some(ann) = ann else { return };
    let field = format!("{meta}.annotations");
    if ann.get("kubevirt.io/ignitiondata").is_some_and(|v| !v.is_empty())
        && !config.gate("ExperimentalIgnitionSupport")
    {
        c.push(INVALID, &field, format!("ExperimentalIgnitionSupport feature gate is not enabled in kubevirt-config, invalid entry {field}.kubevirt.io/ignitiondata"));
    }
    if ann
        .get("hooks.kubevirt.io/hookSidecars")
        .is_some_and(|v| !v.is_empty())
        && !config.gate("Sidecar")
    {
        c.push(INVALID, &field, format!("sidecar feature gate is not enabled in kubevirt-config, invalid entry {field}.hooks.kubevirt.io/hookSidecars"));
    }
}

/// One of guest memory, hugepages or a memory request must be given (VMI create only).
pub(super) fn memory_required(spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let req = spec
        .domain
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("memory"));
    if quantity::of(req).ok().flatten().is_some_and(|m| m.0 != 0) {
        return;
    }
    let mem = spec.domain.memory.as_ref();
    if mem.is_none_or(|m| m.guest.is_none() && m.hugepages.is_none()) {
        c.push(REQUIRED, "", "no memory requested, at least one of 'spec.domain.memory.guest', 'spec.domain.memory.hugepages.pageSize' or 'spec.domain.resources.requests.memory' must be set");
    }
}

/// Parses a resource quantity, reporting a malformed one at `field`.
fn qty(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    field: &str,
    c: &mut Causes,
) -> Option<Milli> {
    match quantity::of(q) {
        Ok(v) => v,
        Err(e) => {
            c.push(
                INVALID,
                field,
                format!("{field} '{}': {e}", q.map(|q| q.0.as_str()).unwrap_or_default()),
            );
            None
        }
    }
}

/// Every rule over a VMI spec rooted at `root` (`spec`, `spec.template.spec`, ...).
pub(super) fn vmi_spec(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty())
        && let Err(e) = dns1123_label(h)
    {
        c.push(
            INVALID,
            format!("{root}.hostname"),
            format!("{h} does not conform to the kubernetes DNS_LABEL rules : {e}"),
        );
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty())
        && let Err(e) = dns1123_subdomain(s)
    {
        c.push(
            INVALID,
            format!("{root}.subdomain"),
            format!("{s} does not conform to the kubernetes DNS_SUBDOMAIN rules : {e}"),
        );
    }
    resources(root, spec, config, c);
    machine_type(root, spec, config, c);
    cpu(root, spec, c);
    if let Some(s) = spec.start_strategy.as_deref() {
        let f = format!("{root}.startStrategy");
        if s != "Paused" {
            c.push(
                INVALID,
                &f,
                format!("{f} is set with an unrecognized option: {s}"),
            );
        } else if spec.liveness_probe.is_some() {
            c.push(INVALID, &f, format!("either {f} or {root}.livenessProbe should be provided.Pausing VMI with LivenessProbe is not supported"));
        }
    }
    network::validate(root, spec, config, c);
    storage::validate(root, spec, config, c);
    for (i, input) in spec.domain.devices.inputs.iter().flatten().enumerate() {
        let f = format!("{root}.domain.devices.inputs[{i}]");
        if !matches!(input.bus.as_deref().unwrap_or(""), "" | "virtio" | "usb") {
            c.push(
                INVALID,
                format!("{f}.bus"),
                "Input device can have only virtio or usb bus.",
            );
        }
        if input.r#type != "tablet" {
            c.push(
                INVALID,
                format!("{f}.type"),
                "Input device can have only tablet type.",
            );
        }
    }
    if let Some(p) = spec.domain.io_threads_policy.as_deref() {
        if !matches!(p, "shared" | "auto" | "supplementalPool") {
            c.push(
                INVALID,
                format!("{root}.domain.ioThreadsPolicy"),
                format!("Invalid IOThreadsPolicy ({p})"),
            );
        } else if p == "supplementalPool"
            && spec
                .domain
                .io_threads
                .as_ref()
                .and_then(|t| t.supplemental_pool_thread_count)
                .is_none_or(|n| n < 1)
        {
            c.push(
                INVALID,
                format!("{root}.domain.ioThreads.count"),
                "the number of iothreads needs to be set and positive for the dedicated policy",
            );
        }
    }
    let has_pod = spec.networks.iter().flatten().any(|n| n.pod.is_some());
    probe(root, "readinessProbe", spec.readiness_probe.as_ref(), has_pod, c);
    probe(root, "livenessProbe", spec.liveness_probe.as_ref(), has_pod, c);
    super::devices::firmware(root, spec, c);
    super::devices::dns(root, spec, c);
    if let Some(e) = spec.eviction_strategy.as_deref()
        && !matches!(e, "LiveMigrate" | "LiveMigrateIfPossible" | "None" | "External")
    {
        let f = format!("{root}.evictionStrategy");
        c.push(
            INVALID,
            &f,
            format!("{f} is set with an unrecognized option: {e}"),
        );
    }
    super::devices::devices(root, spec, config, c);
    super::grace::spec(root, spec, config, c);
    super::devices::gated_storage(root, spec, config, c);
    super::scheduling::scheduling(root, spec, c);
    if let Some(sa) = spec.service_account_name.as_deref().filter(|s| !s.is_empty()) {
        if let Err(e) = dns1123_subdomain(sa) {
            c.push(
                INVALID,
                format!("{root}.serviceAccountName"),
                format!("{sa} is not a valid service account name: {e}"),
            );
        }
        let vol = spec
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.service_account.as_ref()?.service_account_name.clone());
        if let Some(v) = vol.filter(|v| v != sa) {
            c.push(INVALID, format!("{root}.serviceAccountName"), format!("spec.serviceAccountName {sa:?} and serviceAccount volume {v:?} must reference the same service account"));
        }
    }
}

fn resources(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let res = spec.domain.resources.clone().unwrap_or_default();
    let rp = format!("{root}.domain.resources.requests");
    let lp = format!("{root}.domain.resources.limits");
    let get = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               k: &str| m.as_ref().and_then(|m| m.get(k)).cloned();
    let (req_mem_q, lim_mem_q) = (get(&res.requests, "memory"), get(&res.limits, "memory"));
    let (req_cpu_q, lim_cpu_q) = (get(&res.requests, "cpu"), get(&res.limits, "cpu"));
    let req_mem = qty(req_mem_q.as_ref(), &format!("{rp}.memory"), c);
    let lim_mem = qty(lim_mem_q.as_ref(), &format!("{lp}.memory"), c);
    let req_cpu = qty(req_cpu_q.as_ref(), &format!("{rp}.cpu"), c);
    let lim_cpu = qty(lim_cpu_q.as_ref(), &format!("{lp}.cpu"), c);
    let text = |q: &Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.as_ref().map(|q| q.0.clone()).unwrap_or_default()
    };
    if let Some(m) = req_mem {
        let f = format!("{rp}.memory");
        if m.0 < 0 {
            c.push(
                INVALID,
                &f,
                format!("{f} '{}': must be greater than or equal to 0.", text(&req_mem_q)),
            );
        } else if m.0 > 0 && m.0 < 1_000_000_000 {
            c.push(
                INVALID,
                &f,
                format!("{f} '{}': must be greater than or equal to 1M.", text(&req_mem_q)),
            );
        }
    }
    if let Some(m) = lim_mem {
        let f = format!("{lp}.memory");
        if m.0 < 0 {
            c.push(
                INVALID,
                &f,
                format!("{f} '{}': must be greater than or equal to 0.", text(&lim_mem_q)),
            );
        }
        if let Some(r) = req_mem.filter(|r| m.0 > 0 && *r > m) {
            let _ = r;
            c.push(
                INVALID,
                format!("{rp}.memory"),
                format!(
                    "{rp}.memory '{}' is greater than {lp}.memory '{}'",
                    text(&req_mem_q),
                    text(&lim_mem_q)
                ),
            );
        }
    }
    for (v, f, q) in [
        (req_cpu, format!("{rp}.cpu"), &req_cpu_q),
        (lim_cpu, format!("{lp}.cpu"), &lim_cpu_q),
    ] {
        if v.is_some_and(|v| v.0 < 0) {
            c.push(
                INVALID,
                &f,
                format!("{f} '{}': must be greater than or equal to 0.", text(q)),
            );
        }
    }
    if let (Some(r), Some(l)) = (req_cpu, lim_cpu)
        && l.0 > 0
        && r > l
    {
        c.push(
            INVALID,
            format!("{rp}.cpu"),
            format!(
                "{rp}.cpu '{}' is greater than {lp}.cpu '{}'",
                text(&req_cpu_q),
                text(&lim_cpu_q)
            ),
        );
    }
    let mem = spec.domain.memory.clone().unwrap_or_default();
    let guest = qty(mem.guest.as_ref(), &format!("{root}.domain.memory.guest"), c);
    if let Some(page) = mem.hugepages.as_ref().and_then(|h| h.page_size.clone()) {
        let pf = format!("{root}.domain.memory.hugepages.pageSize");
        match quantity::parse(&page) {
            Err(e) => c.push(INVALID, &pf, format!("{pf} '{page}': {e}")),
            Ok(size) => {
                let vm_mem = req_mem
                    .filter(|m| m.0 != 0)
                    .or(guest.filter(|m| m.0 != 0))
                    .or(lim_mem.filter(|m| m.0 != 0));
                if let Some(v) = vm_mem.filter(|_| size.0 > 0) {
                    let f = format!("{rp}.memory");
                    if v < size {
                        c.push(
                            INVALID,
                            &f,
                            format!(
                                "{f} '{}' must be equal to or larger than page size {pf} '{page}'",
                                text(&req_mem_q)
                            ),
                        );
                    } else if v.0 % size.0 != 0 {
                        c.push(
                            INVALID,
                            &f,
                            format!(
                                "{f} '{}' is not a multiple of the page size {pf} '{page}'",
                                text(&req_mem_q)
                            ),
                        );
                    }
                }
            }
        }
    }
    if !config.live_update()
        && let (Some(g), Some(l)) = (guest, lim_mem)
        && l.0 != 0
        && l < g
    {
        let gf = format!("{root}.domain.memory.guest");
        c.push(
            INVALID,
            &gf,
            format!(
                "{gf} '{}' must be equal to or less than the memory limit {lp}.memory '{}'",
                mem.guest.map(|q| q.0).unwrap_or_default(),
                text(&lim_mem_q)
            ),
        );
    }
    if let Some(cpu) = spec
        .domain
        .cpu
        .as_ref()
        .filter(|c| c.dedicated_cpu_placement == Some(true))
    {
        let df = format!("{root}.domain.cpu.dedicatedCpuPlacement");
        if lim_mem.is_none() && req_mem.is_none() && mem.hugepages.is_none() && guest.is_none_or(|g| g.0 == 0)
        {
            c.push(INVALID, format!("{lp}.memory"), format!("{rp}.memory, {lp}.memory, {root}.domain.memory.hugepages or {root}.domain.memory.guest should be provided"));
        }
        if req_cpu.is_some_and(|v| v.0 > 0 && !v.is_whole()) {
            c.push(
                INVALID,
                format!("{rp}.cpu"),
                "provided resources CPU requests must be an interger",
            );
        }
        if lim_cpu.is_some_and(|v| v.0 > 0 && !v.is_whole()) {
            c.push(
                INVALID,
                format!("{lp}.cpu"),
                "provided resources CPU limits must be an interger",
            );
        }
        if let (Some(r), Some(l)) = (req_mem, lim_mem)
            && r.0 > 0
            && l.0 > 0
            && r != l
        {
            c.push(
                INVALID,
                format!("{rp}.memory"),
                format!("{rp}.memory must be equal to {lp}.memory"),
            );
        }
        let vcpus: i64 = [cpu.cores, cpu.sockets, cpu.threads]
            .iter()
            .flatten()
            .filter(|v| **v != 0)
            .product::<i64>();
        let vcpus = if [cpu.cores, cpu.sockets, cpu.threads]
            .iter()
            .flatten()
            .all(|v| *v == 0)
        {
            0
        } else {
            vcpus
        };
        let (r, l) = (req_cpu.map_or(0, |v| v.0), lim_cpu.map_or(0, |v| v.0));
        if r == 0 && l == 0 && vcpus == 0 {
            c.push(INVALID, &df, format!("either {rp}.cpu or {lp}.cpu or {root}.domain.cpu.cores must be provided when DedicatedCPUPlacement is true "));
        } else if r > 0 && l > 0 && r != l {
            c.push(
                INVALID,
                &df,
                format!("{rp}.cpu or {lp}.cpu must be equal when DedicatedCPUPlacement is true "),
            );
        } else if (r > 0 || l > 0)
            && vcpus > 0
            && r != i128::from(vcpus) * 1000
            && l != i128::from(vcpus) * 1000
        {
            c.push(INVALID, &df, format!("{rp}.cpu or {lp}.cpu must not be provided at the same time with {root}.domain.cpu.cores when DedicatedCPUPlacement is true "));
        }
        if cpu.threads.unwrap_or(0) > 2 {
            c.push(INVALID, &df, format!("Not more than two threads must be provided at {root}.domain.cpu.threads (got {}) when DedicatedCPUPlacement is true", cpu.threads.unwrap_or(0)));
        }
    }
}

fn machine_type(root: &str, spec: &VirtualMachineInstanceSpec, config: &ClusterConfig, c: &mut Causes) {
    let Some(t) = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.r#type.as_deref())
        .filter(|t| !t.is_empty())
    else {
        return;
    };
    let arch = spec
        .architecture
        .clone()
        .unwrap_or_else(|| config.default_architecture());
    let allowed = config.emulated_machines(&arch);
    if !allowed.iter().any(|g| glob(g, t)) {
        let f = format!("{root}.domain.machine.type");
        c.push(
            INVALID,
            &f,
            format!(
                "{f} is not supported: {t} (allowed values: [{}])",
                allowed.join(" ")
            ),
        );
    }
}

/// Shell-style glob with `*` and `?` (what Go's `filepath.Match` accepts for machine types).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn cpu(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let Some(cpu) = spec.domain.cpu.as_ref() else {
        return;
    };
    let dedicated = cpu.dedicated_cpu_placement == Some(true);
    if let Some(n) = cpu
        .numa
        .as_ref()
        .filter(|n| n.guest_mapping_passthrough.is_some())
    {
        let _ = n;
        let g = format!("{root}.domain.cpu.numa.guestMappingPassthrough");
        if !dedicated {
            c.push(INVALID, &g, format!("{root}.domain.cpu.dedicatedCpuPlacement must be set to true when NUMA topology strategy is set in {g}"));
        }
        if spec
            .domain
            .memory
            .as_ref()
            .and_then(|m| m.hugepages.as_ref())
            .is_none()
        {
            c.push(INVALID, &g, format!("{root}.domain.memory.hugepages must be requested when NUMA topology strategy is set in {g}"));
        }
    }
    if cpu.isolate_emulator_thread == Some(true) && !dedicated {
        c.push(
            INVALID,
            format!("{root}.domain.cpu.isolateEmulatorThread"),
            "IsolateEmulatorThread should be only set in combination with DedicatedCPUPlacement",
        );
    }
    for (i, f) in cpu.features.iter().flatten().enumerate() {
        let policy = f.policy.as_deref().unwrap_or("");
        if !matches!(
            policy,
            "" | "force" | "require" | "optional" | "disable" | "forbid"
        ) {
            c.push(
                NOT_SUPPORTED,
                format!("{root}.domain.cpu.features[{i}].policy"),
                format!(
                    "CPU feature {} uses policy {policy} that is not supported.",
                    f.name
                ),
            );
        }
    }
    sockets_within_max(root, cpu, c);
    if cpu.realtime.is_some() {
        let rt = format!("{root}.domain.cpu.realtime");
        if !dedicated {
            c.push(
                REQUIRED,
                format!("{root}.domain.cpu.dedicatedCpuPlacement"),
                format!("{root}.domain.cpu.dedicatedCpuPlacement must be set to true when {rt} is used"),
            );
        }
        if cpu
            .numa
            .as_ref()
            .and_then(|n| n.guest_mapping_passthrough.as_ref())
            .is_none()
        {
            let g = format!("{root}.domain.cpu.numa.guestMappingPassthrough");
            c.push(REQUIRED, &g, format!("{g} must be defined when {rt} is used"));
        }
    }
}

fn probe(root: &str, name: &str, p: Option<&Probe>, has_pod: bool, c: &mut Causes) {
    let Some(p) = p else { return };
    let f = format!("{root}.{name}");
    let n = super::count(&[
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
        p.guest_agent_ping.is_some(),
    ]);
    if n > 1 {
        c.push(INVALID, &f, format!("{f} must have exactly one probe type set"));
    } else if n == 0 {
        c.push(
            REQUIRED,
            &f,
            format!("either {f}.tcpSocket, {f}.exec or {f}.httpGet must be set if a {f} is specified"),
        );
    }
    if !has_pod {
        if p.http_get.is_some() {
            c.push(
                INVALID,
                format!("{f}.httpGet"),
                format!("{f}.httpGet is only allowed if the Pod Network is attached"),
            );
        }
        if p.tcp_socket.is_some() {
            c.push(
                INVALID,
                format!("{f}.tcpSocket"),
                format!("{f}.tcpSocket is only allowed if the Pod Network is attached"),
            );
        }
    }
}

/// `cpu.sockets` may not exceed a set `cpu.maxSockets`.
pub(super) fn sockets_within_max(root: &str, cpu: &crate::v1::CPU, c: &mut Causes) {
    if let (Some(s), Some(max)) = (cpu.sockets, cpu.max_sockets)
        && s != 0
        && max != 0
        && s > max
    {
        c.push(
            INVALID,
            format!("{root}.domain.cpu.sockets"),
            "Number of sockets in CPU topology is greater than the maximum sockets allowed",
        );
    }
}
