//! Table tests of the VMI controller's decisions: the launcher pod's states → the VMI's phase and conditions, and
//! the teardown of a deleted VMI.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
    PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::v1::{
    VirtualMachineInstance, VirtualMachineInstanceCondition, VirtualMachineInstanceStatus,
};
use pretty_assertions::assert_eq;

use super::decide::{Decision, FINALIZER, Teardown, decide, finished_for, teardown};

fn at(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(s).unwrap())
}

fn vmi(phase: &str, conditions: &[(&str, &str, &str)]) -> VirtualMachineInstance {
    let mut v = VirtualMachineInstance::default();
    v.metadata.name = Some("testvmi".into());
    if !phase.is_empty() || !conditions.is_empty() {
        v.status = Some(VirtualMachineInstanceStatus {
            phase: (!phase.is_empty()).then(|| phase.to_string()),
            conditions: (!conditions.is_empty()).then(|| {
                conditions
                    .iter()
                    .map(|(t, s, r)| VirtualMachineInstanceCondition {
                        r#type: (*t).into(),
                        status: (*s).into(),
                        reason: (!r.is_empty()).then(|| (*r).to_string()),
                        last_transition_time: Some(at(5)),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        });
    }
    v
}

/// The launcher pod a case observes.
#[derive(Clone, Copy, Debug)]
enum P {
    None,
    /// Created, no node yet, no conditions.
    Created,
    /// The scheduler found no node.
    Unschedulable,
    /// Bound, its image cannot be pulled.
    PullError(&'static str),
    /// Bound, not Ready yet.
    Bound,
    /// Bound and Ready.
    Ready,
    /// Its phase is Failed.
    Failed,
    /// Its phase is Succeeded.
    Succeeded,
}

fn pod(p: P) -> Option<Pod> {
    let cond = |t: &str, s: &str, r: Option<&str>| PodCondition {
        type_: t.into(),
        status: s.into(),
        reason: r.map(str::to_string),
        last_transition_time: Some(at(7)),
        ..Default::default()
    };
    let mut pod = Pod::default();
    pod.metadata.name = Some("virt-launcher-testvmi-abcde".into());
    let bound = || {
        Some(PodSpec {
            node_name: Some("node01".into()),
            ..Default::default()
        })
    };
    let status = |phase: &str, conditions: Vec<PodCondition>| {
        Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            ..Default::default()
        })
    };
    match p {
        P::None => return None,
        P::Created => pod.status = status("Pending", vec![]),
        P::Unschedulable => {
            pod.status = status(
                "Pending",
                vec![cond("PodScheduled", "False", Some("Unschedulable"))],
            );
        }
        P::PullError(reason) => {
            pod.spec = bound();
            pod.status = status("Pending", vec![cond("PodScheduled", "True", None)]);
            pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                name: "compute".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.into()),
                        message: Some("pull access denied".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
        P::Bound => {
            pod.spec = bound();
            pod.status = status("Pending", vec![cond("PodScheduled", "True", None)]);
        }
        P::Ready => {
            pod.spec = bound();
            pod.status = status(
                "Running",
                vec![cond("PodScheduled", "True", None), cond("Ready", "True", None)],
            );
        }
        P::Failed | P::Succeeded => {
            pod.spec = bound();
            let phase = if matches!(p, P::Failed) {
                "Failed"
            } else {
                "Succeeded"
            };
            pod.status = status(phase, vec![cond("PodScheduled", "True", None)]);
        }
    }
    Some(pod)
}

/// What a case expects, read off the decision.
#[derive(Debug, PartialEq)]
enum Want {
    Wait,
    CreatePod,
    RecheckSoon,
    /// Phase, reason, node label.
    Phase(String, Option<String>, Option<String>),
    /// Conditions (type, status, reason) after the write; the phase unchanged.
    Conditions(Vec<(String, String, Option<String>)>),
}

#[allow(non_snake_case)]
fn Phase(phase: &str, reason: Option<&str>, node: Option<&str>) -> Want {
    Want::Phase(phase.into(), reason.map(Into::into), node.map(Into::into))
}

#[allow(non_snake_case)]
fn Conditions(list: Vec<(&str, &str, Option<&str>)>) -> Want {
    Want::Conditions(
        list.into_iter()
            .map(|(t, s, r)| (t.into(), s.into(), r.map(Into::into)))
            .collect(),
    )
}

fn observe(d: &Decision, before: &VirtualMachineInstance) -> Want {
    match d {
        Decision::Wait => Want::Wait,
        Decision::CreatePod => Want::CreatePod,
        Decision::RecheckSoon => Want::RecheckSoon,
        Decision::Status(st, node) => {
            let phase = st.phase.clone().unwrap_or_default();
            let was = before
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if phase == was {
                let conds = st
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| (c.r#type.clone(), c.status.clone(), c.reason.clone()))
                    .collect();
                return Want::Conditions(conds);
            }
            // Every move records its transition.
            let last = st
                .phase_transition_timestamps
                .as_ref()
                .and_then(|t| t.last())
                .unwrap();
            assert_eq!(last.phase.as_deref(), Some(phase.as_str()));
            assert_eq!(last.phase_transition_timestamp, Some(at(1000)));
            Want::Phase(phase, st.reason.clone(), node.clone())
        }
    }
}

#[test]
fn pod_states_move_the_vmi() {
    let unsched = ("PodScheduled", "False", "Unschedulable");
    let cases: Vec<(&str, VirtualMachineInstance, P, Option<u64>, Want)> = vec![
        ("new VMI, no pod", vmi("", &[]), P::None, None, Want::CreatePod),
        (
            "Pending, no pod",
            vmi("Pending", &[]),
            P::None,
            None,
            Want::CreatePod,
        ),
        (
            "new VMI, its pod seen",
            vmi("", &[]),
            P::Created,
            None,
            Phase("Scheduling", None, None),
        ),
        (
            "Pending, its pod seen",
            vmi("Pending", &[]),
            P::Created,
            None,
            Phase("Scheduling", None, None),
        ),
        (
            "Scheduling, pod waits",
            vmi("Scheduling", &[]),
            P::Created,
            None,
            Want::Wait,
        ),
        (
            "Scheduling, no node fits",
            vmi("Scheduling", &[]),
            P::Unschedulable,
            None,
            Conditions(vec![("PodScheduled", "False", Some("Unschedulable"))]),
        ),
        (
            "Scheduling, unschedulable already said",
            vmi("Scheduling", &[unsched]),
            P::Unschedulable,
            None,
            Want::Wait,
        ),
        (
            "Scheduling, image cannot be pulled",
            vmi("Scheduling", &[unsched]),
            P::PullError("ErrImagePull"),
            None,
            Conditions(vec![
                ("PodScheduled", "True", None),
                ("Synchronized", "False", Some("ErrImagePull")),
            ]),
        ),
        (
            "Scheduling, pull backs off",
            vmi(
                "Scheduling",
                &[
                    ("PodScheduled", "True", ""),
                    ("Synchronized", "False", "ErrImagePull"),
                ],
            ),
            P::PullError("ImagePullBackOff"),
            None,
            Conditions(vec![
                ("PodScheduled", "True", None),
                ("Synchronized", "False", Some("ImagePullBackOff")),
            ]),
        ),
        (
            "Scheduling, bound not Ready",
            vmi("Scheduling", &[]),
            P::Bound,
            None,
            Conditions(vec![("PodScheduled", "True", None)]),
        ),
        (
            "Scheduling, pod Ready",
            vmi("Scheduling", &[]),
            P::Ready,
            None,
            Phase("Scheduled", None, Some("node01")),
        ),
        (
            "Scheduling, pod failed",
            vmi("Scheduling", &[]),
            P::Failed,
            None,
            Phase("Failed", Some("PodFailed"), None),
        ),
        (
            "Scheduling, pod gone",
            vmi("Scheduling", &[]),
            P::None,
            None,
            Phase("Failed", Some("PodNotExists"), None),
        ),
        (
            "Scheduled, pod gone",
            vmi("Scheduled", &[]),
            P::None,
            None,
            Phase("Failed", Some("PodNotExists"), None),
        ),
        (
            "Running, pod gone",
            vmi("Running", &[]),
            P::None,
            None,
            Phase("Failed", Some("PodNotExists"), None),
        ),
        (
            "Scheduled, pod Ready",
            vmi("Scheduled", &[]),
            P::Ready,
            None,
            Want::Wait,
        ),
        (
            "Scheduled, pod failed",
            vmi("Scheduled", &[]),
            P::Failed,
            None,
            Phase("Failed", Some("PodFailed"), None),
        ),
        (
            "Running, pod Ready",
            vmi("Running", &[]),
            P::Ready,
            None,
            Want::Wait,
        ),
        (
            "Running, pod ended just now",
            vmi("Running", &[]),
            P::Succeeded,
            Some(3),
            Want::RecheckSoon,
        ),
        (
            "Running, pod failed just now",
            vmi("Running", &[]),
            P::Failed,
            Some(14),
            Want::RecheckSoon,
        ),
        (
            "Running, handler silent after the pod ended",
            vmi("Running", &[]),
            P::Succeeded,
            Some(15),
            Phase("Failed", Some("PodFailed"), None),
        ),
        (
            "Running, end time unknown",
            vmi("Running", &[]),
            P::Failed,
            None,
            Phase("Failed", Some("PodFailed"), None),
        ),
        (
            "Succeeded stays",
            vmi("Succeeded", &[]),
            P::None,
            None,
            Want::Wait,
        ),
        ("Failed stays", vmi("Failed", &[]), P::Failed, None, Want::Wait),
        (
            "an unknown phase waits",
            vmi("Unknown", &[]),
            P::None,
            None,
            Want::Wait,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, v, p, finished, want) in cases {
        let pod = pod(p);
        let d = decide(&v, pod.as_ref(), finished.map(Duration::from_secs), &at(1000));
        let got = observe(&d, &v);
        if got != want {
            wrong.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn mirrored_conditions_keep_the_others() {
    let v = vmi("Scheduling", &[("Paused", "False", "")]);
    let Decision::Status(st, None) = decide(&v, pod(P::Unschedulable).as_ref(), None, &at(1000)) else {
        panic!("a status write");
    };
    let types: Vec<&str> = st
        .conditions
        .iter()
        .flatten()
        .map(|c| c.r#type.as_str())
        .collect();
    assert_eq!(types, ["Paused", "PodScheduled"]);
    let sched = &st.conditions.as_ref().unwrap()[1];
    assert_eq!(
        sched.last_transition_time,
        Some(at(7)),
        "the pod's transition time"
    );
}

#[test]
fn the_compute_containers_end_time_is_read() {
    let mut p = pod(P::Failed).unwrap();
    p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "compute".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                finished_at: Some(at(990)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let now = jiff::Timestamp::from_second(1000).unwrap();
    assert_eq!(finished_for(&p, now), Some(Duration::from_secs(10)));
    assert_eq!(finished_for(&pod(P::Ready).unwrap(), now), None);
}

#[test]
fn a_deleted_vmi_removes_its_pods_then_its_finalizer() {
    let mut v = vmi("Running", &[]);
    v.metadata.finalizers = Some(vec![FINALIZER.into(), "other".into()]);
    let live = pod(P::Ready).unwrap();
    let mut going = live.clone();
    going.metadata.deletion_timestamp = Some(at(9));
    assert_eq!(
        teardown(&v, &[live.clone(), going.clone()]),
        Teardown::DeletePods(vec!["virt-launcher-testvmi-abcde".into()])
    );
    assert_eq!(teardown(&v, &[going]), Teardown::Wait);
    assert_eq!(teardown(&v, &[]), Teardown::Release(vec!["other".into()]));
    v.metadata.finalizers = Some(vec!["other".into()]);
    assert_eq!(teardown(&v, &[]), Teardown::Done);
}
