//! The VMI controller's decisions, pure functions of the VMI and its launcher pod: create the pod, move the phase
//! Pending → Scheduling → Scheduled, mirror the pod's scheduling and image-pull trouble, fail the VMI whose pod
//! failed or vanished; and on deletion, remove the pods, then the finalizer.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::{self, Condition as _, ConditionType, VmiPhase};
use kubevirt_api::v1::{
    VirtualMachineInstance, VirtualMachineInstanceCondition, VirtualMachineInstanceStatus,
};

/// How long the handler has to report a domain's end after its launcher pod finished.
pub const HANDLER_GRACE: Duration = Duration::from_secs(15);

/// What one pass does.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to do until something changes.
    Wait,
    /// Create the launcher pod.
    CreatePod,
    /// Write this status (the VMI's whole status as it should be); label the VMI with its node when `Some`.
    Status(Box<VirtualMachineInstanceStatus>, Option<String>),
    /// The pod finished moments ago: give the handler time to report how, then look again.
    RecheckSoon,
}

/// What one pass of a deleted VMI does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// Delete these pods (by name).
    DeletePods(Vec<String>),
    /// Wait for pods already being deleted.
    Wait,
    /// The pods are gone: drop the finalizer (the VMI's remaining finalizers).
    Release(Vec<String>),
    /// Nothing left to do.
    Done,
}

/// The finalizer that holds a VMI until its launcher pod is gone.
pub const FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";

/// A deleted VMI: its live pods go first, then the finalizer.
#[must_use]
pub fn teardown(vmi: &VirtualMachineInstance, pods: &[Pod]) -> Teardown {
    let live: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if !live.is_empty() {
        return Teardown::DeletePods(live);
    }
    if !pods.is_empty() {
        return Teardown::Wait;
    }
    let all = vmi.metadata.finalizers.clone().unwrap_or_default();
    let rest: Vec<String> = all.iter().filter(|f| *f != FINALIZER).cloned().collect();
    if rest.len() == all.len() {
        Teardown::Done
    } else {
        Teardown::Release(rest)
    }
}

/// A live VMI given its live launcher pod (`None`: there is none). `finished_for`: how long ago the pod's compute
/// container ended.
#[must_use]
pub fn decide(
    vmi: &VirtualMachineInstance,
    pod: Option<&Pod>,
    finished_for: Option<Duration>,
    now: &Time,
) -> Decision {
    let phase = VmiPhase::of(vmi);
    if phase.is_final() {
        return Decision::Wait;
    }
    let Some(pod) = pod else {
        return match phase {
            VmiPhase::Unset | VmiPhase::Pending => Decision::CreatePod,
            VmiPhase::Scheduling | VmiPhase::Scheduled | VmiPhase::Running => {
                fail(vmi, state::reason::POD_NOT_EXISTS, now)
            }
            _ => Decision::Wait,
        };
    };
    match phase {
        VmiPhase::Unset | VmiPhase::Pending => to_phase(vmi, VmiPhase::Scheduling, now)
            .map_or(Decision::Wait, |s| Decision::Status(Box::new(s), None)),
        VmiPhase::Scheduling => scheduling(vmi, pod, now),
        // A running VMI's handler reports how its domain ended; only when it has not within a while is the
        // finished pod taken as a failure.
        VmiPhase::Running if pod_finished(pod) && finished_for.is_some_and(|d| d < HANDLER_GRACE) => {
            Decision::RecheckSoon
        }
        _ if pod_finished(pod) => fail(vmi, state::reason::POD_FAILED, now),
        _ => Decision::Wait,
    }
}

/// A scheduling VMI: Scheduled once its pod is bound and Ready; meanwhile the pod's PodScheduled condition and
/// image-pull trouble as the VMI's PodScheduled and Synchronized conditions (the VM's printableStatus reads them).
fn scheduling(vmi: &VirtualMachineInstance, pod: &Pod, now: &Time) -> Decision {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if let (Some(node), true) = (node, pod_ready(pod)) {
        let Some(mut st) = to_phase(vmi, VmiPhase::Scheduled, now) else {
            return Decision::Wait;
        };
        st.node_name = Some(node.clone());
        return Decision::Status(Box::new(st), Some(node));
    }
    let mut st = vmi.status.clone().unwrap_or_default();
    let mut conditions = st.conditions.take().unwrap_or_default();
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = scheduled {
        let mirrored = VirtualMachineInstanceCondition {
            r#type: ConditionType::PodScheduled.as_str().into(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
            last_probe_time: None,
        };
        set_unless_same(&mut conditions, mirrored, now);
    }
    if let Some((reason, message)) = pull_error(pod) {
        let cond = VirtualMachineInstanceCondition::new(ConditionType::Synchronized, "False")
            .with_reason(&reason)
            .with_message(&message);
        set_unless_same(&mut conditions, cond, now);
    }
    st.conditions = (!conditions.is_empty()).then_some(conditions);
    if pod_finished(pod) {
        state::enter_phase(&mut st, VmiPhase::Failed, now);
        st.reason = Some(state::reason::POD_FAILED.into());
    }
    if vmi.status.as_ref() == Some(&st)
        || (vmi.status.is_none() && st == VirtualMachineInstanceStatus::default())
    {
        Decision::Wait
    } else {
        Decision::Status(Box::new(st), None)
    }
}

/// Sets `cond` unless a condition of its type with the same status and reason is there already (a mirrored
/// condition's message and times do not make a write of their own).
fn set_unless_same(
    list: &mut Vec<VirtualMachineInstanceCondition>,
    cond: VirtualMachineInstanceCondition,
    now: &Time,
) {
    let same = list
        .iter()
        .any(|c| c.r#type == cond.r#type && c.status == cond.status && c.reason == cond.reason);
    if !same {
        state::set(list, cond, now);
    }
}

/// The VMI's status moved to `to` (its transition recorded); `None` when it is there already.
fn to_phase(vmi: &VirtualMachineInstance, to: VmiPhase, now: &Time) -> Option<VirtualMachineInstanceStatus> {
    if VmiPhase::of(vmi) == to {
        return None;
    }
    let mut st = vmi.status.clone().unwrap_or_default();
    state::enter_phase(&mut st, to, now);
    Some(st)
}

fn fail(vmi: &VirtualMachineInstance, reason: &str, now: &Time) -> Decision {
    match to_phase(vmi, VmiPhase::Failed, now) {
        Some(mut st) => {
            st.reason = Some(reason.into());
            Decision::Status(Box::new(st), None)
        }
        None => Decision::Wait,
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod ended (Succeeded or Failed: either way its VMI cannot run on).
fn pod_finished(pod: &Pod) -> bool {
    state::is_final_phase(pod.status.as_ref().and_then(|s| s.phase.as_deref()))
}

/// Why the pod's containers cannot start, when that is a failure worth the VMI's Synchronized condition: an image
/// that cannot be pulled (`ErrImagePull | ImagePullBackOff`, as upstream), or a sandbox that cannot be made — a
/// missing NetworkAttachmentDefinition, a CNI plugin error — as `FailedCreatePodSandBox` (the kubelet's event
/// reason; upstream leaves it to the pod's events).
fn pull_error(pod: &Pod) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            let reason = w.reason.clone()?;
            let message = w.message.clone().unwrap_or_default();
            match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" => Some((reason, message)),
                "ContainerCreating" if message.starts_with("Failed to create pod sandbox") => {
                    Some(("FailedCreatePodSandBox".into(), message))
                }
                _ => None,
            }
        })
}

/// How long ago the pod's compute container finished, seen at `now`.
#[must_use]
pub fn finished_for(pod: &Pod, now: jiff::Timestamp) -> Option<Duration> {
    let at = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "compute")?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()?
        .0;
    Some(now.duration_since(at).unsigned_abs())
}
