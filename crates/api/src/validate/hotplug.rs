//! Memory hotplug under the LiveUpdate rollout strategy (upstream's `ValidateLiveUpdateMemory`): a VM template that
//! sets `domain.memory.maxGuest` must be hotplug-capable. Checked on VM create and update after defaults; only the
//! first failure is reported, always at the template's `domain.memory.guest`.

use super::{Causes, INVALID};
use crate::config::ClusterConfig;
use crate::quantity;
use crate::v1::VirtualMachineInstanceSpec;

const GI: i128 = 1 << 30;
const MI2: i128 = 2 << 20;

/// The guest memory a VMI of `spec` gets: `memory.guest`, else the memory request, the limit, the hugepage size.
fn guest_bytes(spec: &VirtualMachineInstanceSpec) -> Option<i128> {
    let dom = &spec.domain;
    let mem = dom.memory.as_ref();
    let res = dom.resources.as_ref();
    let q = mem
        .and_then(|m| m.guest.clone())
        .or_else(|| res.and_then(|r| r.requests.as_ref()?.get("memory").cloned()))
        .or_else(|| res.and_then(|r| r.limits.as_ref()?.get("memory").cloned()))
        .or_else(|| {
            mem.and_then(|m| m.hugepages.as_ref()?.page_size.clone())
                .map(k8s_openapi::apimachinery::pkg::api::resource::Quantity)
        })?;
    quantity::parse(&q.0).ok().map(quantity::Milli::value)
}

/// Why `spec` cannot hotplug memory, or `None`.
fn first_failure(spec: &VirtualMachineInstanceSpec, config: &ClusterConfig) -> Option<String> {
    let dom = &spec.domain;
    let mem = dom.memory.as_ref()?;
    let max = quantity::parse(&mem.max_guest.as_ref()?.0).ok()?.value();
    let cpu = dom.cpu.as_ref();
    if cpu.is_some_and(|c| c.realtime.is_some()) {
        return Some("Memory hotplug is not compatible with realtime VMs".into());
    }
    if cpu
        .and_then(|c| c.numa.as_ref())
        .is_some_and(|n| n.guest_mapping_passthrough.is_some())
    {
        return Some("Memory hotplug is not compatible with guest mapping passthrough".into());
    }
    if dom.launch_security.is_some() {
        return Some("Memory hotplug is not compatible with encrypted VMs".into());
    }
    let Some(guest) = guest_bytes(spec) else {
        return Some("Guest memory must be configured when memory hotplug is enabled".into());
    };
    if guest > max {
        return Some("Guest memory is greater than the configured maxGuest memory".into());
    }
    let one_gi_pages = mem.hugepages.as_ref().and_then(|h| h.page_size.as_deref()) == Some("1Gi");
    let (align, name) = if one_gi_pages { (GI, "1Gi") } else { (MI2, "2Mi") };
    if guest % align != 0 {
        return Some(format!("Guest memory must be {name} aligned"));
    }
    if max % align != 0 {
        return Some(format!("MaxGuest must be {name} aligned"));
    }
    let arch = spec
        .architecture
        .clone()
        .unwrap_or_else(|| config.default_architecture());
    if arch != "amd64" {
        return Some("Memory hotplug is only available for x86_64 VMs".into());
    }
    if guest < GI {
        return Some("Memory hotplug is only available for VMs with at least 1Gi of guest memory".into());
    }
    None
}

/// The LiveUpdate checks of a VM template rooted at `root` (`spec.template.spec`).
pub(super) fn live_update(
    root: &str,
    spec: &VirtualMachineInstanceSpec,
    config: &ClusterConfig,
    c: &mut Causes,
) {
    if !config.live_update() {
        return;
    }
    if let Some(why) = first_failure(spec, config) {
        c.push(INVALID, format!("{root}.domain.memory.guest"), why);
    }
    // Upstream checks the socket limit a second time under LiveUpdate (so a VM reports it twice).
    if let Some(cpu) = spec.domain.cpu.as_ref() {
        super::spec::sockets_within_max(root, cpu, c);
    }
}
