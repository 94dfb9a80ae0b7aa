//! The VMI status the handler reports, as pure functions of the VMI and what its launcher said: Running once the
//! domain started, Synchronized=False when it could not, Succeeded or Failed when the domain ended, the Paused
//! condition, AgentConnected with `guestOSInfo`, and AccessCredentialsSynchronized. Each returns the VMI's whole
//! status as it should be, or `None` when nothing changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::{self, Condition as _, ConditionType, VmiPhase};
use kubevirt_api::v1::{
    Machine, VirtualMachineInstance, VirtualMachineInstanceCondition, VirtualMachineInstanceGuestOSInfo,
    VirtualMachineInstanceNetworkInterface, VirtualMachineInstanceStatus,
};
use launcher_protocol::{AccessCredentials, DomainInterface, DomainState, GuestInfo};

/// What the guest agent said when asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Agent {
    /// Not asked (a paused guest cannot answer).
    NotAsked,
    /// No agent answered.
    Absent,
    /// An agent answered.
    Present(Box<GuestInfo>),
}

fn current(vmi: &VirtualMachineInstance) -> VirtualMachineInstanceStatus {
    vmi.status.clone().unwrap_or_default()
}

fn conditions_of(st: &mut VirtualMachineInstanceStatus) -> Vec<VirtualMachineInstanceCondition> {
    st.conditions.take().unwrap_or_default()
}

/// `status` unless it is what the VMI has.
fn changed(
    vmi: &VirtualMachineInstance,
    status: VirtualMachineInstanceStatus,
) -> Option<VirtualMachineInstanceStatus> {
    (vmi.status.as_ref() != Some(&status)).then_some(status)
}

/// The domain started: Running and Ready, the pod's IP on the pod network's interface, the machine type.
#[must_use]
pub fn started(
    vmi: &VirtualMachineInstance,
    pod_ips: &[String],
    nics: &[DomainInterface],
    now: &Time,
) -> VirtualMachineInstanceStatus {
    let mut st = current(vmi);
    state::enter_phase(&mut st, VmiPhase::Running, now);
    st.interfaces = Some(interfaces(vmi, pod_ips, nics));
    let mut conditions = conditions_of(&mut st);
    state::set(
        &mut conditions,
        VirtualMachineInstanceCondition::new(ConditionType::Ready, "True"),
        now,
    );
    state::remove(&mut conditions, ConditionType::Synchronized);
    st.conditions = Some(conditions);
    let machine = vmi.spec.domain.machine.as_ref().and_then(|m| m.r#type.clone());
    st.machine = Some(Machine {
        r#type: Some(machine.unwrap_or_else(|| "q35".into())),
    });
    st.migration_method = Some("BlockMigration".into());
    st.guest_os_info = Some(VirtualMachineInstanceGuestOSInfo::default());
    st
}

/// The VMI's interfaces but those unplugged (`absent`).
fn plugged(vmi: &VirtualMachineInstance) -> impl Iterator<Item = &kubevirt_api::v1::Interface> {
    vmi.spec
        .domain
        .devices
        .interfaces
        .iter()
        .flatten()
        .filter(|i| i.state.as_deref() != Some("absent"))
}

/// Whether an interface's spec `state` (`up`, `down`, or none: up) is not yet its link's state in the status (a
/// change the VM controller carried over from the VM, applied live by a later Sync).
#[must_use]
pub fn links_pending(vmi: &VirtualMachineInstance) -> bool {
    let status = vmi
        .status
        .as_ref()
        .and_then(|s| s.interfaces.as_deref())
        .unwrap_or_default();
    plugged(vmi).any(|i| {
        let want = if i.state.as_deref() == Some("down") {
            "down"
        } else {
            "up"
        };
        status
            .iter()
            .find(|s| s.name.as_deref() == Some(i.name.as_str()))
            .and_then(|s| s.link_state.as_deref())
            .is_some_and(|have| have != want)
    })
}

/// Whether the VMI's interfaces (but those `absent`) are not the domain's NICs the status lists: one was plugged
/// or unplugged in the spec and the domain has yet to follow.
#[must_use]
pub fn nics_pending(vmi: &VirtualMachineInstance) -> bool {
    let spec: std::collections::BTreeSet<&str> = plugged(vmi).map(|i| i.name.as_str()).collect();
    let status: std::collections::BTreeSet<&str> = vmi
        .status
        .iter()
        .flat_map(|s| s.interfaces.iter().flatten())
        .filter(|i| i.info_source.as_deref().is_some_and(|s| s.contains("domain")))
        .filter_map(|i| i.name.as_deref())
        .collect();
    vmi.status.as_ref().is_some_and(|s| s.interfaces.is_some()) && spec != status
}

/// The status after the launcher converged on `nics`: entries of NICs gone leave, new NICs get theirs, the links
/// of all are the launcher's; what the guest agent added to the others stays.
#[must_use]
pub fn with_nics(
    vmi: &VirtualMachineInstance,
    nics: &[DomainInterface],
) -> Option<VirtualMachineInstanceStatus> {
    let mut st = current(vmi);
    let old = st.interfaces.take().unwrap_or_default();
    let networks = vmi.spec.networks.as_deref().unwrap_or_default();
    let pod_net = networks.iter().find(|n| n.pod.is_some()).map(|n| n.name.as_str());
    let pod_ips: Vec<String> = old
        .iter()
        .find(|i| i.name.as_deref().is_some_and(|n| Some(n) == pod_net))
        .and_then(|i| i.ip_addresses.clone())
        .unwrap_or_default();
    let fresh = interfaces(vmi, &pod_ips, nics);
    let mut out: Vec<VirtualMachineInstanceNetworkInterface> = Vec::new();
    for f in fresh {
        match old.iter().find(|o| o.name.is_some() && o.name == f.name) {
            Some(o) => {
                let mut o = o.clone();
                o.link_state.clone_from(&f.link_state);
                out.push(o);
            }
            None => out.push(f),
        }
    }
    // Interfaces only the guest knows stay.
    out.extend(old.into_iter().filter(|o| o.name.is_none()));
    st.interfaces = Some(out);
    changed(vmi, st)
}

/// `status.interfaces`: each of the domain's NICs (MAC, queues, link state; infoSource `domain`), the pod IP on the
/// pod-network interface (as upstream reports masquerade and bridge interfaces before the guest agent says more),
/// the pod-network interface first.
fn interfaces(
    vmi: &VirtualMachineInstance,
    ips: &[String],
    nics: &[DomainInterface],
) -> Vec<VirtualMachineInstanceNetworkInterface> {
    let networks = vmi.spec.networks.as_deref().unwrap_or_default();
    let pod_net = networks.iter().find(|n| n.pod.is_some()).map(|n| n.name.as_str());
    let mut out: Vec<VirtualMachineInstanceNetworkInterface> = plugged(vmi)
        // Only what the domain has (an interface plugged into the spec waits for its NIC).
        .filter(|i| nics.is_empty() || nics.iter().any(|n| n.name == i.name))
        .map(|i| {
            let nic = nics.iter().find(|n| n.name == i.name);
            let secondary = networks
                .iter()
                .find(|n| n.name == i.name)
                .filter(|n| kubevirt_api::network::is_secondary(n));
            let mut out = VirtualMachineInstanceNetworkInterface {
                name: Some(i.name.clone()),
                info_source: Some(
                    if secondary.is_some() {
                        "domain, multus-status"
                    } else {
                        "domain"
                    }
                    .into(),
                ),
                pod_interface_name: secondary.map(|n| kubevirt_api::network::hashed_pod_iface(&n.name)),
                queue_count: Some(nic.map_or(1, |n| i32::try_from(n.queue_count).unwrap_or(1))),
                mac: nic.map(|n| n.mac.clone()).or_else(|| i.mac_address.clone()),
                link_state: nic.map(|n| n.link_state.clone()),
                ..Default::default()
            };
            if Some(i.name.as_str()) == pod_net
                && let Some(ip) = ips.first()
            {
                out.ip_address = Some(ip.clone());
                out.ip_addresses = Some(ips.to_vec());
                out.interface_name = Some("eth0".into());
            }
            out
        })
        .collect();
    // The `IP` column is the first entry's: the pod network's goes first.
    out.sort_by_key(|i| i.name.as_deref() != pod_net);
    out
}

/// The launcher could not start the VMI: Synchronized=False with its words.
#[must_use]
pub fn refused(
    vmi: &VirtualMachineInstance,
    message: &str,
    now: &Time,
) -> Option<VirtualMachineInstanceStatus> {
    let mut st = current(vmi);
    let mut conditions = conditions_of(&mut st);
    let cond = VirtualMachineInstanceCondition::new(ConditionType::Synchronized, "False")
        .with_reason(state::reason::SYNC_FAILED)
        .with_message(message);
    state::set(&mut conditions, cond, now);
    st.conditions = Some(conditions);
    changed(vmi, st)
}

/// The pod's network could not be plumbed (a critical error upstream too): Synchronized=False with why, and Failed.
#[must_use]
pub fn network_failed(
    vmi: &VirtualMachineInstance,
    message: &str,
    now: &Time,
) -> Option<VirtualMachineInstanceStatus> {
    let mut with = vmi.clone();
    with.status = Some(refused(vmi, message, now).unwrap_or_else(|| current(vmi)));
    let failed = ended(&with, &DomainState::Crashed(String::new()), now).or(with.status)?;
    Some(VirtualMachineInstanceStatus {
        reason: None,
        ..failed
    })
}

/// The domain ended: Succeeded when the guest shut down, Failed (with the cause as reason) when it crashed.
#[must_use]
pub fn ended(
    vmi: &VirtualMachineInstance,
    end: &DomainState,
    now: &Time,
) -> Option<VirtualMachineInstanceStatus> {
    let to = match end {
        DomainState::Shutoff(_) => VmiPhase::Succeeded,
        DomainState::Crashed(_) => VmiPhase::Failed,
        _ => return None,
    };
    if VmiPhase::of(vmi) == to {
        return None;
    }
    let mut st = current(vmi);
    state::enter_phase(&mut st, to, now);
    let mut conditions = conditions_of(&mut st);
    let ready = VirtualMachineInstanceCondition::new(ConditionType::Ready, "False")
        .with_reason(state::reason::POD_TERMINATING);
    state::set(&mut conditions, ready, now);
    st.conditions = Some(conditions);
    if to == VmiPhase::Failed {
        st.reason = Some(end.reason().to_string());
    }
    Some(st)
}

/// A running VMI following its domain: the Paused condition while the vCPUs are stopped; AgentConnected and
/// `guestOSInfo` once an agent answers, AgentConnected dropped when it stops answering (a rebooting or stopped agent
/// must not stay "connected").
#[must_use]
pub fn following(
    vmi: &VirtualMachineInstance,
    domain: &DomainState,
    agent: &Agent,
    now: &Time,
) -> Option<VirtualMachineInstanceStatus> {
    let mut st = current(vmi);
    let mut conditions = conditions_of(&mut st);
    let paused = *domain == DomainState::Paused;
    let has_paused = state::find(Some(&conditions), ConditionType::Paused).is_some();
    if paused && !has_paused {
        let cond = VirtualMachineInstanceCondition::new(ConditionType::Paused, "True")
            .with_reason(state::reason::PAUSED_BY_USER);
        state::set(&mut conditions, cond, now);
    } else if !paused && has_paused {
        state::remove(&mut conditions, ConditionType::Paused);
    }
    let connected = state::is_true(Some(&conditions), ConditionType::AgentConnected);
    match agent {
        Agent::Absent if connected => {
            state::remove(&mut conditions, ConditionType::AgentConnected);
        }
        Agent::Present(info) if !connected => {
            state::set(
                &mut conditions,
                VirtualMachineInstanceCondition::new(ConditionType::AgentConnected, "True"),
                now,
            );
            st.guest_os_info = Some(guest_os_info(info));
        }
        _ => {}
    }
    if let Agent::Present(info) = agent {
        let domain = st.interfaces.clone().unwrap_or_default();
        if let Some(merged) = super::interfaces::merge(vmi, &domain, info.interfaces.as_ref()) {
            st.interfaces = Some(merged);
        }
    }
    let had = vmi.status.as_ref().is_some_and(|s| s.conditions.is_some());
    st.conditions = (had || !conditions.is_empty()).then_some(conditions);
    changed(vmi, st)
}

/// qemu-ga's OS description as `status.guestOSInfo`.
fn guest_os_info(info: &GuestInfo) -> VirtualMachineInstanceGuestOSInfo {
    let os = info.os_info();
    VirtualMachineInstanceGuestOSInfo {
        id: os.id,
        name: os.name,
        pretty_name: os.pretty_name,
        version: os.version,
        version_id: os.version_id,
        kernel_release: os.kernel_release,
        kernel_version: os.kernel_version,
        machine: os.machine,
    }
}

/// Upstream's AccessCredentialsSynchronized condition from the launcher's attempt (status, and the failure's
/// message); `None` when the VMI has no agent-propagated credentials or already says the same.
#[must_use]
pub fn credentials(
    vmi: &VirtualMachineInstance,
    reply: &AccessCredentials,
    now: &Time,
) -> Option<VirtualMachineInstanceStatus> {
    let AccessCredentials::Applied { succeeded, message } = reply else {
        return None;
    };
    let status = if *succeeded { "True" } else { "False" };
    let mut st = current(vmi);
    let mut conditions = conditions_of(&mut st);
    let same = state::find(Some(&conditions), ConditionType::AccessCredentialsSynchronized)
        .is_some_and(|c| c.status == status && c.message().unwrap_or_default() == message);
    if same {
        return None;
    }
    let mut cond = VirtualMachineInstanceCondition::new(ConditionType::AccessCredentialsSynchronized, status);
    if !message.is_empty() {
        cond = cond.with_message(message);
    }
    state::set(&mut conditions, cond, now);
    st.conditions = Some(conditions);
    Some(st)
}
