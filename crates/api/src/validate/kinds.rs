//! Rules for the kinds around the VMI: VM, replica set, pool, migration, instancetype, preference, migration policy
//! and DataVolume.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Causes, FORBIDDEN, INVALID, NOT_FOUND, NOT_SUPPORTED, REQUIRED, network, spec};
use crate::cdi::DataVolume;
use crate::config::ClusterConfig;
use crate::defaults::instancetype;
use crate::selector;
use crate::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration,
    VirtualMachineInstanceReplicaSet, VirtualMachineSpec,
};
use crate::v1alpha1::MigrationPolicy;
use crate::v1beta1::{VirtualMachineInstancetypeSpec, VirtualMachinePool, VirtualMachinePreferenceSpec};

const RUN_STRATEGIES: &[&str] = &["Halted", "Manual", "Always", "RerunOnFailure", "Once"];

/// Validates a VirtualMachine (`create` also refuses discontinued bindings).
#[must_use]
pub fn vm(vm: &VirtualMachine, config: &ClusterConfig, create: bool) -> Vec<StatusCause> {
    let mut c = Causes::default();
    if create && let Some(s) = vm.spec.template.spec.as_ref() {
        network::feature_gates("spec.template.spec", s, config, &mut c);
        if !c.is_empty() {
            return c.0;
        }
        network::discontinued_bindings("spec.template.spec", s, &mut c);
        if !c.is_empty() {
            return c.0;
        }
    }
    vm_spec("spec", &vm.spec, config, &mut c);
    if let Some(ns) = vm.metadata.namespace.as_deref() {
        for (i, t) in vm.spec.data_volume_templates.iter().flatten().enumerate() {
            if let Some(tns) = t.metadata.namespace.as_deref().filter(|t| *t != ns) {
                c.push(
                    INVALID,
                    format!("spec.dataVolumeTemplates[{i}]"),
                    format!("Embedded DataVolume namespace {tns} differs from VM namespace {ns}"),
                );
            }
        }
    }
    c.0
}

fn vm_spec(root: &str, spec: &VirtualMachineSpec, config: &ClusterConfig, c: &mut Causes) {
    let Some(tspec) = spec.template.spec.as_ref() else {
        c.push(
            REQUIRED,
            format!("{root}.template"),
            "missing virtual machine template.",
        );
        return;
    };
    match (spec.running, spec.run_strategy.as_deref()) {
        (Some(_), Some(_)) => c.push(INVALID, format!("{root}.running"), "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"),
        (None, None) => c.push(INVALID, format!("{root}.running"), "RunStrategy must be specified"),
        (None, Some("WaitAsReceiver")) if !config.gate("DecentralizedLiveMigration") => c.push(
            INVALID,
            format!("{root}.runStrategy"),
            "Invalid RunStrategy (WaitAsReceiver), DecentralizedLiveMigration feature gate is not enabled in kubevirt resource",
        ),
        (None, Some(s)) if s != "WaitAsReceiver" && !RUN_STRATEGIES.contains(&s) => {
            c.push(INVALID, format!("{root}.runStrategy"), format!("Invalid RunStrategy ({s})"));
        }
        _ => {}
    }
    for (i, t) in spec.data_volume_templates.iter().flatten().enumerate() {
        let f = format!("{root}.dataVolumeTemplate[{i}]");
        let name = t.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            c.push(
                REQUIRED,
                format!("{f}.name"),
                format!("'name' field must not be empty for DataVolumeTemplate entry {f}.name."),
            );
            continue;
        }
        let s = &t.spec;
        match (s.pvc.is_some(), s.storage.is_some()) {
            (false, false) => c.push(
                INVALID,
                format!("{f}.PVC.Storage"),
                "Missing Data volume PVC or Storage",
            ),
            (true, true) => c.push(
                INVALID,
                format!("{f}.PVC.Storage"),
                "Duplicate storage definition, both target storage and target pvc defined",
            ),
            _ => {}
        }
        let external = s
            .pvc
            .as_ref()
            .is_some_and(|p| p.data_source.is_some() || p.data_source_ref.is_some())
            || s.storage
                .as_ref()
                .is_some_and(|p| p.data_source.is_some() || p.data_source_ref.is_some());
        let sourced = s.source.is_some() || s.source_ref.is_some();
        if external && sourced {
            c.push(
                INVALID,
                format!("{f}.source"),
                "External population is incompatible with Source and SourceRef",
            );
        } else if !external && !sourced {
            c.push(
                INVALID,
                format!("{f}.source.sourceRef"),
                "Data volume should have either Source, SourceRef, or be externally populated",
            );
        }
        if let Some(src) = s.source.as_ref() {
            match dv_source_count(src) {
                0 => c.push(INVALID, format!("{f}.source"), "Missing dataVolume valid source"),
                1 => {}
                _ => c.push(INVALID, format!("{f}.source"), "Multiple dataVolume sources"),
            }
        }
        let referenced = tspec.volumes.iter().flatten().any(|v| {
            v.data_volume.as_ref().is_some_and(|d| d.name == name)
                || v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|p| p.claim_name == name)
        });
        if !referenced {
            c.push(
                REQUIRED,
                &f,
                format!(
                    "DataVolumeTemplate entry {f} must be referenced in the VMI template's 'volumes' list"
                ),
            );
        }
    }
    let troot = format!("{root}.template.spec");
    spec::reserved_labels(
        spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
        &format!("{root}.template.metadata.labels"),
        c,
    );
    let meta = format!("{root}.template.metadata");
    spec::gated_annotations(
        &meta,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
        config,
        c,
    );
    super::grace::annotations(
        &meta,
        tspec,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
        config,
        c,
    );
    spec::vmi_spec(&troot, tspec, config, c);
    super::hotplug::live_update(&troot, tspec, config, c);
}

fn dv_source_count(s: &crate::v1beta1::DataVolumeSource) -> usize {
    super::count(&[
        s.http.is_some(),
        s.s3.is_some(),
        s.gcs.is_some(),
        s.registry.is_some(),
        s.pvc.is_some(),
        s.upload.is_some(),
        s.blank.is_some(),
        s.imageio.is_some(),
        s.vddk.is_some(),
        s.snapshot.is_some(),
    ])
}

/// Checks a VM against the instancetype and preference it references (applied to a copy, as upstream's webhook).
#[must_use]
pub fn vm_instancetype(
    vm: &VirtualMachine,
    it: Option<&VirtualMachineInstancetypeSpec>,
    pref: Option<&VirtualMachinePreferenceSpec>,
) -> Vec<StatusCause> {
    let mut c = Causes::default();
    let mut spec = vm.spec.template.spec.clone().unwrap_or_default();
    let mut ann = BTreeMap::new();
    if let (Some(it), Some(p)) = (it, pref) {
        let spread = p
            .cpu
            .as_ref()
            .and_then(|c| c.preferred_cpu_topology.as_deref())
            .is_some_and(|t| t == "spread" || t == "preferSpread");
        let (s, cores, t) = instancetype::topology(it.cpu.guest, pref);
        if spread && s * cores * t != it.cpu.guest {
            c.push(INVALID, "instancetype.spec.cpu.guest", format!("{} vCPUs provided by the instance type are not divisible by the Spec.PreferSpreadSocketToCoreRatio or Spec.CPU.PreferSpreadOptions.Ratio of {cores} provided by the preference", it.cpu.guest));
            return c.0;
        }
    }
    if let Err(conflicts) = instancetype::apply("spec.template.spec", &mut spec, &mut ann, it, pref) {
        for k in conflicts {
            c.push(INVALID, k.path.clone(), k.to_string());
        }
        return c.0;
    }
    if let Some(req) = pref.and_then(|p| p.requirements.as_ref())
        && let Err((field, msg)) = preference_requirements(&spec, it, pref, req)
    {
        c.push(
            NOT_FOUND,
            field,
            format!("failure checking preference requirements: {msg}"),
        );
    }
    c.0
}

/// A preference's minimum CPU, memory and architecture, checked against the instancetype or else the VM itself.
fn preference_requirements(
    spec: &crate::v1::VirtualMachineInstanceSpec,
    it: Option<&VirtualMachineInstancetypeSpec>,
    pref: Option<&VirtualMachinePreferenceSpec>,
    req: &crate::v1beta1::PreferenceRequirements,
) -> Result<(), (String, String)> {
    if let Some(cpu) = req.cpu.as_ref() {
        match it {
            Some(it) if it.cpu.guest < cpu.guest => {
                return Err((
                    "spec.instancetype".into(),
                    format!(
                        "insufficient CPU resources of {} vCPU provided by instance type, preference requires {} vCPU",
                        it.cpu.guest, cpu.guest
                    ),
                ));
            }
            Some(_) => {}
            None => {
                let Some(vm_cpu) = spec.domain.cpu.as_ref() else {
                    return Err((
                        "spec.template.spec.domain.cpu".into(),
                        format!(
                            "no CPU resources provided by VirtualMachine, preference requires {} vCPU",
                            cpu.guest
                        ),
                    ));
                };
                let topology = pref
                    .and_then(|p| p.cpu.as_ref()?.preferred_cpu_topology.clone())
                    .unwrap_or_else(|| "sockets".into());
                let (field, have) = match topology
                    .trim_start_matches("prefer")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "cores" => ("cores", vm_cpu.cores.unwrap_or(0)),
                    "threads" => ("threads", vm_cpu.threads.unwrap_or(0)),
                    "sockets" => ("sockets", vm_cpu.sockets.unwrap_or(0)),
                    _ => (
                        "sockets",
                        vm_cpu.sockets.unwrap_or(1) * vm_cpu.cores.unwrap_or(1) * vm_cpu.threads.unwrap_or(1),
                    ),
                };
                if have < cpu.guest {
                    return Err((
                        format!("spec.template.spec.domain.cpu.{field}"),
                        format!(
                            "insufficient CPU resources of {have} vCPU provided by VirtualMachine, preference requires {} vCPU provided as {topology}",
                            cpu.guest
                        ),
                    ));
                }
            }
        }
    }
    if let Some(mem) = req.memory.as_ref() {
        let need = crate::quantity::parse(&mem.guest.0)
            .map_err(|e| ("spec.preference".to_string(), e.to_string()))?;
        let (field, source, have) = match it {
            Some(it) => (
                "spec.instancetype",
                "instance type",
                Some(it.memory.guest.clone()),
            ),
            None => (
                "spec.template.spec.domain.memory",
                "VirtualMachine",
                spec.domain.memory.as_ref().and_then(|m| m.guest.clone()),
            ),
        };
        let have_q = have.as_ref().and_then(|q| crate::quantity::parse(&q.0).ok());
        if have_q.is_none_or(|h| h < need) {
            let shown = have.map(|q| q.0).unwrap_or_else(|| "0".into());
            return Err((
                field.into(),
                format!(
                    "insufficient Memory resources of {shown} provided by {source}, preference requires {}",
                    mem.guest.0
                ),
            ));
        }
    }
    if let Some(arch) = req.architecture.as_deref() {
        let requested = spec.architecture.as_deref().unwrap_or("");
        if !requested.is_empty() && requested != arch {
            return Err((
                "spec.template.spec.architecture".into(),
                format!("preference requires architecture {arch} but {requested} is being requested"),
            ));
        }
    }
    Ok(())
}

/// Validates a VirtualMachineInstanceReplicaSet.
#[must_use]
pub fn replicaset(rs: &VirtualMachineInstanceReplicaSet, config: &ClusterConfig) -> Vec<StatusCause> {
    let mut c = Causes::default();
    let Some(t) = rs.spec.template.spec.as_ref() else {
        c.push(REQUIRED, "spec.template", "missing virtual machine template.");
        return c.0;
    };
    spec::vmi_spec("spec.template.spec", t, config, &mut c);
    super::grace::annotations(
        "spec.template.metadata",
        t,
        rs.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
        config,
        &mut c,
    );
    let labels = rs.spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    match selector::matches(&rs.spec.selector, labels) {
        Err(e) => c.push(INVALID, "spec.selector", e.to_string()),
        Ok(ok) if !ok || selector::is_empty(&rs.spec.selector) && labels.is_none() => {
            c.push(INVALID, "spec.selector", "selector does not match labels.");
        }
        Ok(_) => {}
    }
    c.0
}

/// Validates a VirtualMachinePool.
#[must_use]
pub fn pool(p: &VirtualMachinePool, config: &ClusterConfig) -> Vec<StatusCause> {
    let mut c = Causes::default();
    let t = &p.spec.virtual_machine_template;
    match t.spec.as_ref() {
        Some(s) => vm_spec("spec.virtualMachineTemplate.spec", s, config, &mut c),
        None => c.push(
            REQUIRED,
            "spec.virtualMachineTemplate.spec",
            "missing virtual machine template.",
        ),
    }
    let labels = t.metadata.as_ref().and_then(|m| m.labels.as_ref());
    match selector::matches(&p.spec.selector, labels) {
        Err(e) => c.push(INVALID, "spec.selector", e.to_string()),
        Ok(false) => c.push(INVALID, "spec.selector", "selector does not match labels."),
        Ok(true) => {}
    }
    if let Some(r) = p.spec.replicas.filter(|r| *r < 0) {
        c.push(
            INVALID,
            "spec.replicas",
            format!("spec.replicas in body should be greater than or equal to 0, got {r}"),
        );
    }
    match p.spec.max_unavailable.as_ref() {
        Some(IntOrString::Int(n)) if *n <= 0 => c.push(
            INVALID,
            "spec.maxUnavailable",
            "maxUnavailable must be greater than 0",
        ),
        Some(IntOrString::String(s)) => match s.strip_suffix('%') {
            None => c.push(
                INVALID,
                "spec.maxUnavailable",
                "maxUnavailable percentage must end with %",
            ),
            Some(n) => match n.parse::<i64>() {
                Err(e) => c.push(
                    INVALID,
                    "spec.maxUnavailable",
                    format!("maxUnavailable percentage value {n:?} is invalid: {e}"),
                ),
                Ok(v) if !(1..=100).contains(&v) => c.push(
                    INVALID,
                    "spec.maxUnavailable",
                    format!("maxUnavailable percentage value {v} must be between 1 and 100"),
                ),
                Ok(_) => {}
            },
        },
        _ => {}
    }
    c.0
}

/// Validates a migration on create against the VMIs and migrations that exist.
///
/// # Errors
/// A message (upstream answers 400 without causes) when the VMI is missing, final, or already migrating.
pub fn migration_create(
    m: &VirtualMachineInstanceMigration,
    config: &ClusterConfig,
    vmi: Option<&VirtualMachineInstance>,
    others: &[VirtualMachineInstanceMigration],
) -> Result<Vec<StatusCause>, String> {
    let mut c = Causes::default();
    let name = m.spec.vmi_name.clone().unwrap_or_default();
    if name.is_empty() {
        c.push(REQUIRED, "spec.vmiName", "vmiName is missing");
        return Ok(c.0);
    }
    if m.spec.priority.is_some() {
        c.push(
            FORBIDDEN,
            "spec.migrationPriority",
            "Migration priority queue, only virt-controller is allowed to set priority field",
        );
        return Ok(c.0);
    }
    if (m.spec.send_to.is_some() || m.spec.receive.is_some()) && !config.gate("DecentralizedLiveMigration") {
        c.push(
            NOT_SUPPORTED,
            "",
            "DecentralizedLiveMigration feature gate is not enabled in kubevirt resource",
        );
        return Ok(c.0);
    }
    if let (Some(s), Some(r)) = (m.spec.send_to.as_ref(), m.spec.receive.as_ref())
        && s.migration_id != r.migration_id
    {
        c.push(
            INVALID,
            "",
            format!(
                "sendTo migrationID {} does not match receive migrationID {}",
                s.migration_id, r.migration_id
            ),
        );
        return Ok(c.0);
    }
    let ns = m.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let Some(vmi) = vmi else {
        return Err(format!("the VMI \"{ns}/{name}\" does not exist"));
    };
    let status = vmi.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Err("Cannot migrate VMI in finalized state.".into());
    }
    if let Some(cond) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == "LiveMigratable" && c.status == "False")
    {
        return Err(format!(
            "Cannot migrate VMI, Reason: {}, Message: {}",
            cond.reason.clone().unwrap_or_default(),
            cond.message.clone().unwrap_or_default()
        ));
    }
    for o in others {
        let same = o.spec.vmi_name.as_deref() == Some(name.as_str())
            && o.metadata.namespace.clone().unwrap_or_else(|| "default".into()) == ns;
        let done = o
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if same && !done {
            return Err(format!(
                "in-flight migration detected. Active migration job ({}) is currently already in progress for VMI {name}.",
                o.metadata
                    .uid
                    .clone()
                    .or_else(|| o.metadata.name.clone())
                    .unwrap_or_default()
            ));
        }
    }
    Ok(c.0)
}

/// Validates an instancetype (namespaced or cluster).
#[must_use]
pub fn instancetype(spec: &VirtualMachineInstancetypeSpec) -> Vec<StatusCause> {
    let mut c = Causes::default();
    if let Some(p) = spec.memory.overcommit_percent {
        if !(0..=100).contains(&p) {
            c.push(
                INVALID,
                "spec.memory.overcommitPercent",
                format!("spec.memory.overcommitPercent '{p}': must be in range between 0 and 100."),
            );
        } else if p != 0 && spec.memory.hugepages.is_some() {
            c.push(
                INVALID,
                "spec.memory.overcommitPercent",
                "spec.memory.overcommitPercent and spec.memory.hugepages should not be requested together.",
            );
        }
    }
    if spec.cpu.guest < 1 {
        c.push(
            INVALID,
            "spec.cpu.guest",
            format!(
                "spec.cpu.guest in body should be greater than or equal to 1, got {}",
                spec.cpu.guest
            ),
        );
    }
    match crate::quantity::parse(&spec.memory.guest.0) {
        Err(e) => c.push(
            INVALID,
            "spec.memory.guest",
            format!("spec.memory.guest '{}': {e}", spec.memory.guest.0),
        ),
        Ok(m) if m.0 <= 0 => c.push(
            INVALID,
            "spec.memory.guest",
            format!(
                "spec.memory.guest '{}': must be greater than 0.",
                spec.memory.guest.0
            ),
        ),
        Ok(_) => {}
    }
    c.0
}

/// Validates a preference (namespaced or cluster).
#[must_use]
pub fn preference(spec: &VirtualMachinePreferenceSpec) -> Vec<StatusCause> {
    let mut c = Causes::default();
    let Some(cpu) = spec.cpu.as_ref() else { return c.0 };
    if let Some(t) = cpu.preferred_cpu_topology.as_deref() {
        const OK: &[&str] = &[
            "preferSockets",
            "preferCores",
            "preferThreads",
            "preferSpread",
            "preferAny",
            "sockets",
            "cores",
            "threads",
            "spread",
            "any",
        ];
        if !OK.contains(&t) {
            c.push(
                INVALID,
                "spec.cpu.preferredCPUTopology",
                format!("unknown preferredCPUTopology {t}"),
            );
        }
        if t == "spread" || t == "preferSpread" {
            let so = cpu.spread_options.clone().unwrap_or_default();
            let across = so.across.as_deref().unwrap_or("SocketsCores");
            if !matches!(across, "SocketsCores" | "CoresThreads" | "SocketsCoresThreads") {
                c.push(
                    INVALID,
                    "spec.cpu.spreadOptions.across",
                    format!("across {across} is not supported"),
                );
            } else if across == "CoresThreads"
                && so.ratio.or(spec.prefer_spread_socket_to_core_ratio).unwrap_or(2) != 2
            {
                c.push(INVALID, "spec.cpu.spreadOptions.ratio", "only a ratio of 2 (1 core 2 threads) is allowed when spreading vCPUs over cores and threads");
            }
        }
    }
    c.0
}

/// Validates a MigrationPolicy on create.
#[must_use]
pub fn migration_policy(p: &MigrationPolicy, config: &ClusterConfig) -> Vec<StatusCause> {
    let mut c = Causes::default();
    let s = &p.spec;
    if s.completion_timeout_per_gib.is_some_and(|v| v < 0) {
        c.push(INVALID, "spec.completionTimeoutPerGiB", "must not be negative");
    }
    if let Some(bw) = s.bandwidth_per_migration.as_ref() {
        match crate::quantity::parse(&bw.0) {
            Ok(v) if v.0 < 0 => c.push(INVALID, "spec.bandwidthPerMigration", "must not be negative"),
            Err(e) => c.push(INVALID, "spec.bandwidthPerMigration", e.to_string()),
            Ok(_) => {}
        }
    }
    if s.max_downtime_ms.is_some()
        && !config.gate("MigrationStallDetection")
        && !config.gate("MigrationDowntimeTuning")
    {
        c.push(INVALID, "spec.maxDowntimeMs", "maxDowntimeMs cannot be modified without enabling the MigrationStallDetection or MigrationDowntimeTuning feature gate");
    }
    c.0
}

/// Validates a DataVolume on create (CDI's webhook).
#[must_use]
pub fn datavolume(dv: &DataVolume) -> Vec<StatusCause> {
    let mut c = Causes::default();
    if dv.metadata.name.as_ref().is_some_and(|n| n.len() > 253) {
        c.push(INVALID, "", "Name cannot be longer than 253 characters");
    }
    let s = &dv.spec;
    let (label, requests) = match (s.pvc.as_ref(), s.storage.as_ref()) {
        (None, None) => {
            c.push(INVALID, "spec.PVC", "Missing Data volume PVC");
            return c.0;
        }
        (Some(_), Some(_)) => {
            c.push(
                INVALID,
                "spec.PVC.Storage",
                "Duplicate storage definition, both target storage and target pvc defined",
            );
            return c.0;
        }
        (Some(p), None) => {
            let modes = p.access_modes.clone().unwrap_or_default();
            if modes.is_empty() {
                c.push(
                    INVALID,
                    "spec.PVC.accessModes",
                    "Required value: at least 1 access mode is required",
                );
            } else if modes.len() > 1 {
                c.push(INVALID, "spec.PVC.accessModes", "PVC multiple accessModes");
            }
            ("PVC", p.resources.as_ref().and_then(|r| r.requests.clone()))
        }
        (None, Some(st)) => ("Storage", st.resources.as_ref().and_then(|r| r.requests.clone())),
    };
    let clone_source = s.source_ref.is_some()
        || s.source
            .as_ref()
            .is_some_and(|x| x.pvc.is_some() || x.snapshot.is_some());
    let size_field = format!("spec.{label}.resources.requests.size");
    match requests.as_ref().and_then(|r| r.get("storage")) {
        Some(q) => match crate::quantity::parse(&q.0) {
            Err(e) => c.push(INVALID, &size_field, e.to_string()),
            Ok(v) if v.0 <= 0 => c.push(
                INVALID,
                &size_field,
                format!("{label} size can't be equal or less than zero"),
            ),
            Ok(v) if v.value() < 1_048_576 => c.push(
                INVALID,
                &size_field,
                format!("{label} size should be at least 1MiB"),
            ),
            Ok(_) => {}
        },
        None if !(label == "Storage" && clone_source) => {
            c.push(INVALID, &size_field, format!("{label} size is missing"))
        }
        None => {}
    }
    if s.source.is_some() == s.source_ref.is_some() {
        c.push(
            INVALID,
            "spec.source",
            "Data volume should have either Source or SourceRef, or be externally populated",
        );
        return c.0;
    }
    if let Some(r) = s.source_ref.as_ref() {
        if r.kind != "DataSource" {
            c.push(
                INVALID,
                "spec.sourceRef.Kind",
                format!(
                    "Unsupported sourceRef kind {}, currently only DataSource is supported",
                    r.kind
                ),
            );
        }
        if r.name.is_empty() {
            c.push(INVALID, "spec.sourceRef.Name", "Missing sourceRef name");
        }
    }
    if let Some(src) = s.source.as_ref() {
        match dv_source_count(src) {
            0 => c.push(INVALID, "spec.source", "Missing Data volume source"),
            1 => {}
            _ => c.push(INVALID, "spec.source", "Multiple Data volume sources"),
        }
        if !matches!(
            s.content_type.as_deref().unwrap_or(""),
            "" | "kubevirt" | "archive"
        ) {
            c.push(
                INVALID,
                "spec.contentType",
                "ContentType not one of: kubevirt, archive",
            );
        }
        for (url, f) in [
            (src.http.as_ref().map(|h| h.url.as_str()), "spec.source.HTTP.url"),
            (src.s3.as_ref().map(|h| h.url.as_str()), "spec.source.S3.url"),
            (src.gcs.as_ref().map(|h| h.url.as_str()), "spec.source.GCS.url"),
        ] {
            let Some(url) = url else { continue };
            if url.is_empty() {
                c.push(INVALID, f, "spec.source source URL is empty");
            } else if let Some((scheme, _)) = url.split_once("://") {
                if !matches!(scheme, "http" | "https" | "gs" | "s3") {
                    c.push(
                        INVALID,
                        f,
                        format!("spec.source Invalid source URL scheme: {scheme}"),
                    );
                }
            } else {
                c.push(INVALID, f, format!("spec.source Invalid source URL: {url}"));
            }
        }
        if let Some(reg) = src.registry.as_ref() {
            match (reg.url.as_deref(), reg.image_stream.as_deref()) {
                (Some(u), None) => {
                    let scheme = u.split_once("://").map(|(s, _)| s);
                    if !matches!(scheme, Some("docker" | "oci-archive")) {
                        c.push(
                            INVALID,
                            "spec.source.Registry.URL",
                            format!("Illegal registry source URL scheme {}", scheme.unwrap_or(u)),
                        );
                    }
                }
                (None, Some(_)) => {}
                _ => c.push(
                    INVALID,
                    "spec.source.Registry",
                    "Source registry should have either URL or ImageStream",
                ),
            }
            if s.content_type
                .as_deref()
                .is_some_and(|t| !t.is_empty() && t != "kubevirt")
            {
                c.push(
                    INVALID,
                    "spec.contentType",
                    "ContentType must be kubevirt when Source is Registry",
                );
            }
        }
        if src.blank.is_some() && s.content_type.as_deref() == Some("archive") {
            c.push(
                INVALID,
                "spec.contentType",
                "SourceType cannot be blank and the contentType be archive",
            );
        }
        if src
            .pvc
            .as_ref()
            .is_some_and(|p| p.name.is_empty() || p.namespace.is_empty())
        {
            c.push(
                INVALID,
                "spec.source.PVC",
                "spec.source.PVC source PVC is not valid",
            );
        }
    }
    let _ = NOT_FOUND;
    c.0
}
