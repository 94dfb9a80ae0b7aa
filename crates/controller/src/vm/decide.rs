//! The VM controller's decisions, pure functions of what it observed: what the run strategy asks of the VMI (the
//! run-strategy table, the one place it is written) and the status the VM reports afterwards.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::{self, Condition as _, ConditionType, PrintableStatus, RunStrategy, VmiPhase};
use kubevirt_api::v1::{
    InstancetypeStatusRef, VirtualMachine, VirtualMachineCondition, VirtualMachineInstance,
    VirtualMachineStartFailure, VirtualMachineStatus,
};

use crate::instancetype::SyncError;

/// What the VM controller does to the VMI in one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Leave it as it is.
    Nothing,
    /// Create it from the template.
    Create,
    /// Delete it.
    Delete,
}

/// The decision of one pass: the act, and whether acting consumes the pending start/stop requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What to do to the VMI.
    pub act: Act,
    /// Whether `status.stateChangeRequests` is cleared once the act succeeded.
    pub clears_requests: bool,
}

/// Whether a start or stop request is pending in `status.stateChangeRequests`.
#[must_use]
pub fn requested(vm: &VirtualMachine, action: &str) -> bool {
    vm.status
        .as_ref()
        .and_then(|s| s.state_change_requests.as_ref())
        .is_some_and(|rs| rs.iter().any(|r| r.action == action))
}

/// The run-strategy table: what a live VM with `strategy` does given its VMI (`None`: none it controls) and its
/// pending requests. `backing_off`: a crash-loop wait holds the next start.
///
/// | strategy       | VMI exists, deleted when            | no VMI, created when          |
/// |----------------|-------------------------------------|-------------------------------|
/// | Always         | it ended, or a Stop request         | no Stop request               |
/// | RerunOnFailure | it Failed, or a Stop request        | no Stop request               |
/// | Manual         | a Stop request                      | a Start request               |
/// | Halted         | always                              | never                         |
/// | Once           | never                               | always (the ended VMI stays)  |
///
/// A VMI already being deleted counts as neither existing nor absent: nothing is done until it is gone.
#[must_use]
pub fn plan(
    strategy: Option<RunStrategy>,
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    backing_off: bool,
) -> Plan {
    let stop = requested(vm, "Stop");
    let start = requested(vm, "Start");
    let exists = vmi.is_some_and(|v| v.metadata.deletion_timestamp.is_none());
    let phase = vmi.map_or(VmiPhase::Unset, VmiPhase::of);
    let delete = exists
        && match strategy {
            Some(RunStrategy::Halted) => true,
            Some(RunStrategy::Always) => phase.is_final() || stop,
            Some(RunStrategy::RerunOnFailure) => phase == VmiPhase::Failed || stop,
            Some(RunStrategy::Manual) => stop,
            Some(RunStrategy::Once | RunStrategy::WaitAsReceiver) | None => false,
        };
    if delete {
        return Plan {
            act: Act::Delete,
            clears_requests: stop,
        };
    }
    let create = vmi.is_none()
        && !backing_off
        && match strategy {
            Some(RunStrategy::Always | RunStrategy::RerunOnFailure) => !stop,
            Some(RunStrategy::Manual) => start,
            // As upstream: a VMI whenever there is none — the finished one stays, so it is not run again.
            Some(RunStrategy::Once) => true,
            Some(RunStrategy::Halted | RunStrategy::WaitAsReceiver) | None => false,
        };
    if create {
        return Plan {
            act: Act::Create,
            clears_requests: start,
        };
    }
    Plan {
        act: Act::Nothing,
        clears_requests: false,
    }
}

/// `status.printableStatus`, first match wins in upstream's order (the subset this control loop can observe).
#[must_use]
pub fn printable_status(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    strategy: Option<RunStrategy>,
    volumes: Option<PrintableStatus>,
) -> PrintableStatus {
    use PrintableStatus as P;
    if vm.metadata.deletion_timestamp.is_some() {
        return PrintableStatus::Terminating;
    }
    let Some(vmi) = vmi else {
        // A VM that would run but waits for its volumes says why.
        let wants = !matches!(strategy, Some(RunStrategy::Halted));
        return match volumes {
            Some(v @ (P::ErrorPvcNotFound | P::DataVolumeError)) => v,
            Some(v) if wants => v,
            _ => PrintableStatus::Stopped,
        };
    };
    let phase = VmiPhase::of(vmi);
    let conditions = vmi.status.as_ref().and_then(|s| s.conditions.as_deref());
    if vmi.metadata.deletion_timestamp.is_some()
        || (strategy == Some(RunStrategy::Halted) && !phase.is_final())
    {
        return PrintableStatus::Stopping;
    }
    if state::is_true(conditions, ConditionType::Paused) {
        return PrintableStatus::Paused;
    }
    if phase == VmiPhase::Running {
        return PrintableStatus::Running;
    }
    if let Some(v @ (P::ErrorPvcNotFound | P::DataVolumeError)) = volumes
        && phase != VmiPhase::Running
    {
        return v;
    }
    if state::find(conditions, ConditionType::PodScheduled)
        .is_some_and(|c| c.status == "False" && c.reason() == Some(state::reason::UNSCHEDULABLE))
    {
        return PrintableStatus::ErrorUnschedulable;
    }
    if let Some(v @ (P::Provisioning | P::WaitingForVolumeBinding)) = volumes
        && matches!(phase, VmiPhase::Unset | VmiPhase::Pending | VmiPhase::Scheduling)
    {
        return v;
    }
    let sync_failure = state::find(conditions, ConditionType::Synchronized)
        .filter(|c| c.status == "False")
        .and_then(|c| c.reason());
    match sync_failure {
        Some(state::reason::ERR_IMAGE_PULL) => return PrintableStatus::ErrImagePull,
        Some(state::reason::IMAGE_PULL_BACK_OFF) => return PrintableStatus::ImagePullBackOff,
        _ => {}
    }
    if matches!(
        phase,
        VmiPhase::Unset | VmiPhase::Pending | VmiPhase::Scheduling | VmiPhase::Scheduled
    ) {
        return PrintableStatus::Starting;
    }
    if phase.is_final() {
        return PrintableStatus::Stopped;
    }
    PrintableStatus::Unknown
}

/// What one pass saw and did, from which the VM's status follows.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The VMI the VM controls after acting (the new one when one was created).
    pub vmi: Option<&'a VirtualMachineInstance>,
    /// A crash-loop wait holds the next start.
    pub backing_off: bool,
    /// The new `startFailure`: `None` unchanged, `Some(None)` cleared.
    pub start_failure: Option<Option<VirtualMachineStartFailure>>,
    /// The instancetype and preference revisions the VM now references.
    pub refs: (Option<InstancetypeStatusRef>, Option<InstancetypeStatusRef>),
    /// Why the pass could not do its work, reported as the Failure condition.
    pub error: Option<&'a SyncError>,
    /// The start/stop requests were acted on.
    pub cleared_requests: bool,
    /// What the VM's DataVolumes and claims make of its printableStatus.
    pub volumes: Option<PrintableStatus>,
}

/// The VM's status after a pass: its current status with the fields this controller owns recomputed.
#[must_use]
pub fn status(vm: &VirtualMachine, o: &Outcome<'_>, now: &Time) -> VirtualMachineStatus {
    let mut st = vm.status.clone().unwrap_or_default();
    let vmi_ready = o.vmi.and_then(|v| {
        state::find(
            v.status.as_ref().and_then(|s| s.conditions.as_deref()),
            ConditionType::Ready,
        )
    });
    let mut conditions = st.conditions.take().unwrap_or_default();
    // The VM's Ready condition mirrors its VMI's (the `kubectl get vm` READY column).
    let ready = match vmi_ready {
        Some(c) => VirtualMachineCondition {
            r#type: c.r#type.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
            last_probe_time: None,
        },
        None => VirtualMachineCondition::new(ConditionType::Ready, "False")
            .with_reason(state::reason::VMI_NOT_EXISTS)
            .with_message("VMI does not exist"),
    };
    state::set(&mut conditions, ready, now);
    match o.error {
        Some(e) => {
            let failure = failure_condition(&conditions, e, now);
            state::set(&mut conditions, failure, now);
        }
        None => {
            state::remove(&mut conditions, ConditionType::Failure);
        }
    }
    st.conditions = Some(conditions);
    st.created = Some(o.vmi.is_some());
    st.ready = Some(vmi_ready.is_some_and(|c| c.status == "True"));
    let name = kubevirt_api::defaults::effective_run_strategy(&vm.spec);
    let strategy = RunStrategy::parse(name);
    st.run_strategy = Some(name.to_string());
    let crash_loop = o.backing_off
        && matches!(strategy, Some(RunStrategy::Always | RunStrategy::RerunOnFailure))
        && o.vmi.is_none_or(|v| VmiPhase::of(v).is_final())
        && vm.metadata.deletion_timestamp.is_none();
    let printable = if crash_loop {
        PrintableStatus::CrashLoopBackOff
    } else {
        printable_status(vm, o.vmi, strategy, o.volumes)
    };
    st.printable_status = Some(printable.as_str().to_string());
    st.observed_generation = vm.metadata.generation;
    if let Some(r) = &o.refs.0 {
        st.instancetype_ref = Some(r.clone());
    }
    if let Some(r) = &o.refs.1 {
        st.preference_ref = Some(r.clone());
    }
    if o.cleared_requests {
        st.state_change_requests = None;
    }
    if let Some(f) = &o.start_failure {
        st.start_failure.clone_from(f);
    }
    st
}

/// The `Failure` condition for a sync error; its transition time kept while the failure stays the same.
fn failure_condition(
    current: &[VirtualMachineCondition],
    e: &SyncError,
    now: &Time,
) -> VirtualMachineCondition {
    let same = state::find(Some(current), ConditionType::Failure)
        .filter(|c| c.reason() == Some(e.reason) && c.message() == Some(e.message.as_str()));
    let mut cond = VirtualMachineCondition::new(ConditionType::Failure, "True")
        .with_reason(e.reason)
        .with_message(&e.message);
    // A different failure is a new transition even though the status stays True.
    cond.last_transition_time = Some(
        same.and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone()),
    );
    cond
}
