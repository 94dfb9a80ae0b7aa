//! VirtualMachineInstancePreset application (deprecated upstream, still honoured): matching presets fill whole
//! domain sections the VMI leaves unset, and the VMI is annotated with each preset that contributed.

use std::collections::BTreeMap;

use super::DefaultsError;
use crate::selector;
use crate::v1::{DomainSpec, VirtualMachineInstance, VirtualMachineInstancePreset};

/// Annotation that opts a VMI out of presets.
pub const EXCLUDE_ANNOTATION: &str = "virtualmachineinstancepresets.admission.kubevirt.io/exclude";
/// Warning returned whenever a preset was applied.
pub const DEPRECATION_WARNING: &str =
    "kubevirt.io/v1 VirtualMachineInstancePresets is now deprecated and will be removed in v2.";

/// What preset application did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PresetOutcome {
    /// Names of the presets that changed the VMI.
    pub applied: Vec<String>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// Applies every preset in the VMI's namespace whose selector matches its labels.
///
/// # Errors
/// [`DefaultsError::PresetConflict`] when two matching presets set the same section differently.
pub fn apply_presets(
    vmi: &mut VirtualMachineInstance,
    presets: &[VirtualMachineInstancePreset],
) -> Result<PresetOutcome, DefaultsError> {
    let mut out = PresetOutcome::default();
    let annotations = vmi.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(EXCLUDE_ANNOTATION).map(String::as_str) == Some("true") {
        return Ok(out);
    }
    let ns = vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut matching = Vec::new();
    for p in presets {
        if p.metadata.namespace.clone().unwrap_or_else(|| "default".into()) != ns {
            continue;
        }
        let Some(spec) = p.spec.as_ref() else { continue };
        let ok = selector::matches(&spec.selector, vmi.metadata.labels.as_ref())
            .map_err(|e| DefaultsError::PresetConflict(e.to_string()))?;
        if ok {
            matching.push(p);
        }
    }
    let mut errors = Vec::new();
    for (i, a) in matching.iter().enumerate() {
        for b in &matching[i + 1..] {
            if let (Some(da), Some(db)) = (domain_of(a), domain_of(b))
                && let Some(detail) = conflict(da, db)
            {
                errors.push(format!(
                    "presets '{}' and '{}' conflict: {detail}",
                    a.metadata.name.as_deref().unwrap_or_default(),
                    b.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    if !errors.is_empty() {
        let agg = if errors.len() == 1 {
            errors.remove(0)
        } else {
            format!("[{}]", errors.join(", "))
        };
        return Err(DefaultsError::PresetConflict(agg));
    }
    for p in matching {
        let Some(domain) = domain_of(p) else { continue };
        if merge(domain, &mut vmi.spec.domain) {
            let name = p.metadata.name.clone().unwrap_or_default();
            vmi.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(
                format!("virtualmachinepreset.kubevirt.io/{name}"),
                "kubevirt.io/v1".into(),
            );
            out.applied.push(name);
        }
    }
    if !out.applied.is_empty() {
        out.warnings.push(DEPRECATION_WARNING.to_string());
    }
    Ok(out)
}

fn conflict(a: &DomainSpec, b: &DomainSpec) -> Option<String> {
    fn both<T: PartialEq>(x: Option<&T>, y: Option<&T>) -> bool {
        matches!((x, y), (Some(x), Some(y)) if x != y)
    }
    let ra = a.resources.as_ref().and_then(|r| r.requests.as_ref());
    let rb = b.resources.as_ref().and_then(|r| r.requests.as_ref());
    if let (Some(ra), Some(rb)) = (ra, rb) {
        for (k, v) in ra {
            if let Some(w) = rb.get(k)
                && v != w
            {
                return Some(format!("spec.resources.requests[{k}]: {} != {}", v.0, w.0));
            }
        }
    }
    let checks = [
        ("spec.cpu", both(a.cpu.as_ref(), b.cpu.as_ref())),
        ("spec.firmware", both(a.firmware.as_ref(), b.firmware.as_ref())),
        ("spec.features", both(a.features.as_ref(), b.features.as_ref())),
        (
            "spec.devices.watchdog",
            both(a.devices.watchdog.as_ref(), b.devices.watchdog.as_ref()),
        ),
        (
            "spec.ioThreadsPolicy",
            both(a.io_threads_policy.as_ref(), b.io_threads_policy.as_ref()),
        ),
    ];
    checks
        .iter()
        .find(|(_, c)| *c)
        .map(|(p, _)| format!("{p}: sections differ"))
}

/// Copies whole sections the VMI lacks; true when the VMI ended up with the preset's settings.
fn merge(preset: &DomainSpec, vmi: &mut DomainSpec) -> bool {
    let mut applied = false;
    if let Some(req) = preset.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        let res = vmi.resources.get_or_insert_with(Default::default);
        if res.requests.is_none() {
            res.requests = Some(req.clone());
        }
        applied |= res.requests.as_ref() == Some(req);
    }
    macro_rules! section {
        ($($f:ident).+) => {
            if let Some(p) = preset.$($f).+.as_ref() {
                if vmi.$($f).+.is_none() {
                    vmi.$($f).+ = Some(p.clone());
                }
                applied |= vmi.$($f).+.as_ref() == Some(p);
            }
        };
    }
    section!(cpu);
    section!(firmware);
    section!(features);
    section!(devices.watchdog);
    section!(io_threads_policy);
    if let Some(pc) = preset.clock.as_ref() {
        let clock = vmi.clock.get_or_insert_with(Default::default);
        if clock.utc.is_none() && clock.timezone.is_none() {
            clock.utc.clone_from(&pc.utc);
            clock.timezone.clone_from(&pc.timezone);
        }
        if clock.timer.is_none() {
            clock.timer.clone_from(&pc.timer);
        }
        applied |= clock == pc;
    }
    applied
}

fn domain_of(p: &VirtualMachineInstancePreset) -> Option<&DomainSpec> {
    p.spec.as_ref().and_then(|s| s.domain.as_ref())
}
