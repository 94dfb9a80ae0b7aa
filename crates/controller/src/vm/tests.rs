//! Table tests of the VM controller's decisions: every run strategy × VMI state × start/stop request, the
//! crash-loop hold, printableStatus, and the status a pass reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::state::{PrintableStatus, RunStrategy};
use kubevirt_api::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceCondition, VirtualMachineInstanceStatus,
    VirtualMachineStateChangeRequest, VirtualMachineStatus,
};
use pretty_assertions::assert_eq;

use super::decide::{Act, Outcome, Plan, plan, printable_status, status};
use crate::instancetype::SyncError;

/// The VMI a case starts from.
#[derive(Clone, Copy, Debug)]
enum Vmi {
    Absent,
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Running, with a deletion timestamp.
    Deleting,
}

/// The pending request a case starts from.
#[derive(Clone, Copy, Debug)]
enum Req {
    None,
    Start,
    Stop,
}

fn at(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(s).unwrap())
}

fn vm(req: Req) -> VirtualMachine {
    let mut vm = VirtualMachine::default();
    vm.metadata.name = Some("vm".into());
    vm.metadata.uid = Some("vm-uid".into());
    vm.metadata.generation = Some(3);
    let action = match req {
        Req::None => None,
        Req::Start => Some("Start"),
        Req::Stop => Some("Stop"),
    };
    vm.status = Some(VirtualMachineStatus {
        state_change_requests: action.map(|a| {
            vec![VirtualMachineStateChangeRequest {
                action: a.into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    vm
}

fn vmi_with(phase: &str, conditions: &[(&str, &str, &str)]) -> VirtualMachineInstance {
    let mut v = VirtualMachineInstance::default();
    v.metadata.name = Some("vm".into());
    v.status = Some(VirtualMachineInstanceStatus {
        phase: (!phase.is_empty()).then(|| phase.to_string()),
        conditions: Some(
            conditions
                .iter()
                .map(|(t, s, r)| VirtualMachineInstanceCondition {
                    r#type: (*t).into(),
                    status: (*s).into(),
                    reason: (!r.is_empty()).then(|| (*r).to_string()),
                    last_transition_time: Some(at(100)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    v
}

fn vmi(state: Vmi) -> Option<VirtualMachineInstance> {
    let phase = match state {
        Vmi::Absent => return None,
        Vmi::Pending => "Pending",
        Vmi::Running | Vmi::Deleting => "Running",
        Vmi::Succeeded => "Succeeded",
        Vmi::Failed => "Failed",
    };
    let mut v = vmi_with(phase, &[]);
    if matches!(state, Vmi::Deleting) {
        v.metadata.deletion_timestamp = Some(at(50));
    }
    Some(v)
}

const NOTHING: (Act, bool) = (Act::Nothing, false);
const CREATE: (Act, bool) = (Act::Create, false);
const CREATE_CLEAR: (Act, bool) = (Act::Create, true);
const DELETE: (Act, bool) = (Act::Delete, false);
const DELETE_CLEAR: (Act, bool) = (Act::Delete, true);

/// (strategy, VMI, request) → (act, clears the requests). `backing_off` false, the VM never had a VMI.
#[rustfmt::skip]
const RUN_STRATEGY_TABLE: &[(RunStrategy, Vmi, Req, (Act, bool))] = {
    use RunStrategy::{Always, Halted, Manual, Once, RerunOnFailure};
    use Vmi::{Absent, Deleting, Failed, Pending, Running, Succeeded};
    use Req::{None as Plain, Start, Stop};
    &[
        (Always, Absent, Plain, CREATE),          (Always, Absent, Start, CREATE_CLEAR),      (Always, Absent, Stop, NOTHING),
        (Always, Pending, Plain, NOTHING),        (Always, Pending, Start, NOTHING),          (Always, Pending, Stop, DELETE_CLEAR),
        (Always, Running, Plain, NOTHING),        (Always, Running, Start, NOTHING),          (Always, Running, Stop, DELETE_CLEAR),
        (Always, Succeeded, Plain, DELETE),       (Always, Succeeded, Start, DELETE),         (Always, Succeeded, Stop, DELETE_CLEAR),
        (Always, Failed, Plain, DELETE),          (Always, Failed, Start, DELETE),            (Always, Failed, Stop, DELETE_CLEAR),
        (Always, Deleting, Plain, NOTHING),       (Always, Deleting, Start, NOTHING),         (Always, Deleting, Stop, NOTHING),

        (RerunOnFailure, Absent, Plain, CREATE),  (RerunOnFailure, Absent, Start, CREATE_CLEAR), (RerunOnFailure, Absent, Stop, NOTHING),
        (RerunOnFailure, Pending, Plain, NOTHING),(RerunOnFailure, Pending, Start, NOTHING),  (RerunOnFailure, Pending, Stop, DELETE_CLEAR),
        (RerunOnFailure, Running, Plain, NOTHING),(RerunOnFailure, Running, Start, NOTHING),  (RerunOnFailure, Running, Stop, DELETE_CLEAR),
        (RerunOnFailure, Succeeded, Plain, NOTHING), (RerunOnFailure, Succeeded, Start, NOTHING), (RerunOnFailure, Succeeded, Stop, DELETE_CLEAR),
        (RerunOnFailure, Failed, Plain, DELETE),  (RerunOnFailure, Failed, Start, DELETE),    (RerunOnFailure, Failed, Stop, DELETE_CLEAR),
        (RerunOnFailure, Deleting, Plain, NOTHING), (RerunOnFailure, Deleting, Start, NOTHING), (RerunOnFailure, Deleting, Stop, NOTHING),

        (Manual, Absent, Plain, NOTHING),         (Manual, Absent, Start, CREATE_CLEAR),      (Manual, Absent, Stop, NOTHING),
        (Manual, Pending, Plain, NOTHING),        (Manual, Pending, Start, NOTHING),          (Manual, Pending, Stop, DELETE_CLEAR),
        (Manual, Running, Plain, NOTHING),        (Manual, Running, Start, NOTHING),          (Manual, Running, Stop, DELETE_CLEAR),
        (Manual, Succeeded, Plain, NOTHING),      (Manual, Succeeded, Start, NOTHING),        (Manual, Succeeded, Stop, DELETE_CLEAR),
        (Manual, Failed, Plain, NOTHING),         (Manual, Failed, Start, NOTHING),           (Manual, Failed, Stop, DELETE_CLEAR),
        (Manual, Deleting, Plain, NOTHING),       (Manual, Deleting, Start, NOTHING),         (Manual, Deleting, Stop, NOTHING),

        (Halted, Absent, Plain, NOTHING),         (Halted, Absent, Start, NOTHING),           (Halted, Absent, Stop, NOTHING),
        (Halted, Pending, Plain, DELETE),         (Halted, Pending, Start, DELETE),           (Halted, Pending, Stop, DELETE_CLEAR),
        (Halted, Running, Plain, DELETE),         (Halted, Running, Start, DELETE),           (Halted, Running, Stop, DELETE_CLEAR),
        (Halted, Succeeded, Plain, DELETE),       (Halted, Succeeded, Start, DELETE),         (Halted, Succeeded, Stop, DELETE_CLEAR),
        (Halted, Failed, Plain, DELETE),          (Halted, Failed, Start, DELETE),            (Halted, Failed, Stop, DELETE_CLEAR),
        (Halted, Deleting, Plain, NOTHING),       (Halted, Deleting, Start, NOTHING),         (Halted, Deleting, Stop, NOTHING),

        (Once, Absent, Plain, CREATE),            (Once, Absent, Start, CREATE_CLEAR),        (Once, Absent, Stop, CREATE),
        (Once, Pending, Plain, NOTHING),          (Once, Pending, Start, NOTHING),            (Once, Pending, Stop, NOTHING),
        (Once, Running, Plain, NOTHING),          (Once, Running, Start, NOTHING),            (Once, Running, Stop, NOTHING),
        (Once, Succeeded, Plain, NOTHING),        (Once, Succeeded, Start, NOTHING),          (Once, Succeeded, Stop, NOTHING),
        (Once, Failed, Plain, NOTHING),           (Once, Failed, Start, NOTHING),             (Once, Failed, Stop, NOTHING),
        (Once, Deleting, Plain, NOTHING),         (Once, Deleting, Start, NOTHING),           (Once, Deleting, Stop, NOTHING),
    ]
};

#[test]
fn every_run_strategy_vmi_state_and_request() {
    assert_eq!(RUN_STRATEGY_TABLE.len(), 90);
    let mut wrong = Vec::new();
    for &(strategy, state, req, (act, clears)) in RUN_STRATEGY_TABLE {
        let got = plan(Some(strategy), &vm(req), vmi(state).as_ref(), false);
        let want = Plan {
            act,
            clears_requests: clears,
        };
        if got != want {
            wrong.push(format!(
                "{strategy} {state:?} {req:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_crash_loop_wait_holds_every_start() {
    for (strategy, req) in [
        (RunStrategy::Always, Req::None),
        (RunStrategy::RerunOnFailure, Req::None),
        (RunStrategy::Manual, Req::Start),
        (RunStrategy::Once, Req::None),
    ] {
        let p = plan(Some(strategy), &vm(req), None, true);
        assert_eq!(p.act, Act::Nothing, "{strategy} {req:?}");
    }
    // A finished VMI still goes while the wait runs (the next one is what waits).
    let p = plan(
        Some(RunStrategy::Always),
        &vm(Req::None),
        vmi(Vmi::Failed).as_ref(),
        true,
    );
    assert_eq!(p.act, Act::Delete);
}

#[test]
fn once_starts_whenever_its_vmi_is_gone_and_unknown_strategies_do_nothing() {
    // As upstream's: Once never replaces the VMI that ended (it stays), but one deleted by hand, or never created
    // because creating it failed, is made.
    let mut had = vm(Req::None);
    had.status.as_mut().unwrap().created = Some(false);
    assert_eq!(plan(Some(RunStrategy::Once), &had, None, false).act, Act::Create);
    assert_eq!(plan(None, &vm(Req::Start), None, false).act, Act::Nothing);
    assert_eq!(
        plan(None, &vm(Req::Stop), vmi(Vmi::Running).as_ref(), false).act,
        Act::Nothing
    );
    assert_eq!(
        plan(Some(RunStrategy::WaitAsReceiver), &vm(Req::None), None, false).act,
        Act::Nothing
    );
}

/// (what, VMI, strategy, VM deleted) → printableStatus.
type PrintableCase = (
    &'static str,
    Option<VirtualMachineInstance>,
    Option<RunStrategy>,
    bool,
    PrintableStatus,
);

#[test]
fn printable_status_follows_upstreams_order() {
    use PrintableStatus as P;
    let running = vmi_with("Running", &[]);
    let cases: Vec<PrintableCase> = vec![
        ("no VMI", None, Some(RunStrategy::Always), false, P::Stopped),
        (
            "VM deleted",
            Some(running.clone()),
            Some(RunStrategy::Always),
            true,
            P::Terminating,
        ),
        (
            "running",
            Some(running.clone()),
            Some(RunStrategy::Always),
            false,
            P::Running,
        ),
        (
            "halted, VMI not final",
            Some(running.clone()),
            Some(RunStrategy::Halted),
            false,
            P::Stopping,
        ),
        (
            "halted, VMI final",
            Some(vmi_with("Succeeded", &[])),
            Some(RunStrategy::Halted),
            false,
            P::Stopped,
        ),
        (
            "VMI deleted",
            vmi(Vmi::Deleting),
            Some(RunStrategy::Always),
            false,
            P::Stopping,
        ),
        (
            "paused",
            Some(vmi_with("Running", &[("Paused", "True", "PausedByUser")])),
            Some(RunStrategy::Always),
            false,
            P::Paused,
        ),
        (
            "unschedulable",
            Some(vmi_with(
                "Scheduling",
                &[("PodScheduled", "False", "Unschedulable")],
            )),
            Some(RunStrategy::Always),
            false,
            P::ErrorUnschedulable,
        ),
        (
            "image pull",
            Some(vmi_with(
                "Scheduling",
                &[("Synchronized", "False", "ErrImagePull")],
            )),
            Some(RunStrategy::Always),
            false,
            P::ErrImagePull,
        ),
        (
            "pull backoff",
            Some(vmi_with(
                "Scheduling",
                &[("Synchronized", "False", "ImagePullBackOff")],
            )),
            Some(RunStrategy::Always),
            false,
            P::ImagePullBackOff,
        ),
        (
            "other sync failure",
            Some(vmi_with("Scheduled", &[("Synchronized", "False", "Other")])),
            Some(RunStrategy::Always),
            false,
            P::Starting,
        ),
        (
            "no phase yet",
            Some(vmi_with("", &[])),
            Some(RunStrategy::Always),
            false,
            P::Starting,
        ),
        (
            "scheduled",
            Some(vmi_with("Scheduled", &[])),
            Some(RunStrategy::Manual),
            false,
            P::Starting,
        ),
        (
            "failed",
            Some(vmi_with("Failed", &[])),
            Some(RunStrategy::Manual),
            false,
            P::Stopped,
        ),
        (
            "unknown phase",
            Some(vmi_with("Unknown", &[])),
            Some(RunStrategy::Manual),
            false,
            P::Unknown,
        ),
    ];
    for (what, vmi, strategy, deleted, want) in cases {
        let mut v = vm(Req::None);
        if deleted {
            v.metadata.deletion_timestamp = Some(at(1));
        }
        assert_eq!(printable_status(&v, vmi.as_ref(), strategy, None), want, "{what}");
    }
}

/// `vm` with `spec.runStrategy` set.
fn with_strategy(mut vm: VirtualMachine, strategy: RunStrategy) -> VirtualMachine {
    vm.spec.run_strategy = Some(strategy.as_str().into());
    vm
}

fn outcome(vmi: Option<&VirtualMachineInstance>) -> Outcome<'_> {
    Outcome {
        vmi,
        backing_off: false,
        start_failure: None,
        refs: (None, None),
        error: None,
        cleared_requests: false,
        volumes: None,
    }
}

#[test]
fn the_vm_status_mirrors_its_vmi_and_reports_failures() {
    let ready = vmi_with("Running", &[("Ready", "True", "")]);
    let st = status(
        &with_strategy(vm(Req::None), RunStrategy::Always),
        &outcome(Some(&ready)),
        &at(200),
    );
    assert_eq!(st.created, Some(true));
    assert_eq!(st.ready, Some(true));
    assert_eq!(st.printable_status.as_deref(), Some("Running"));
    assert_eq!(st.run_strategy.as_deref(), Some("Always"));
    assert_eq!(st.observed_generation, Some(3));
    let conds = st.conditions.clone().unwrap();
    assert_eq!(
        (conds[0].r#type.as_str(), conds[0].status.as_str()),
        ("Ready", "True")
    );
    assert_eq!(
        conds[0].last_transition_time,
        Some(at(100)),
        "the VMI's transition time"
    );

    // No VMI: Ready=False VMINotExists, its time kept from pass to pass.
    let mut v = with_strategy(vm(Req::Stop), RunStrategy::Halted);
    let first = status(&v, &outcome(None), &at(300));
    v.status = Some(first.clone());
    let mut o = outcome(None);
    o.cleared_requests = true;
    let second = status(&v, &o, &at(400));
    let ready = &second.conditions.as_ref().unwrap()[0];
    assert_eq!(ready.reason.as_deref(), Some("VMINotExists"));
    assert_eq!(ready.last_transition_time, Some(at(300)));
    assert_eq!(second.created, Some(false));
    assert_eq!(second.printable_status.as_deref(), Some("Stopped"));
    assert_eq!(
        second.state_change_requests, None,
        "the Stop request was acted on"
    );
    assert!(
        first.state_change_requests.is_some(),
        "not cleared before it was acted on"
    );

    // A failure: the Failure condition, its time kept while the failure stays the same, gone once it clears.
    let e = SyncError {
        reason: "FailedCreate",
        message: "quota".into(),
    };
    let mut o = outcome(None);
    o.error = Some(&e);
    let failed = status(&v, &o, &at(500));
    let find = |s: &VirtualMachineStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.r#type == "Failure")
            .cloned()
    };
    assert_eq!(find(&failed).unwrap().last_transition_time, Some(at(500)));
    v.status = Some(failed);
    let again = status(&v, &o, &at(600));
    assert_eq!(find(&again).unwrap().last_transition_time, Some(at(500)));
    let other = SyncError {
        reason: "FailedCreate",
        message: "another".into(),
    };
    o.error = Some(&other);
    assert_eq!(
        find(&status(&v, &o, &at(700))).unwrap().last_transition_time,
        Some(at(700))
    );
    o.error = None;
    assert_eq!(find(&status(&v, &o, &at(800))), None);
}

#[test]
fn a_crash_loop_shows_while_the_vm_waits() {
    let failed = vmi_with("Failed", &[]);
    let mut o = outcome(Some(&failed));
    o.backing_off = true;
    assert_eq!(
        status(&with_strategy(vm(Req::None), RunStrategy::Always), &o, &at(1))
            .printable_status
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    let mut o = outcome(None);
    o.backing_off = true;
    assert_eq!(
        status(&with_strategy(vm(Req::None), RunStrategy::Manual), &o, &at(1))
            .printable_status
            .as_deref(),
        Some("Stopped"),
        "Manual does not loop"
    );
}
