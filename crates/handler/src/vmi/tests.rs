//! Table tests of the handler's VMI status: what the launcher said (the domain started or could not, its state,
//! how it ended, what the guest agent answered, the credentials it applied) → the VMI's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceStatus};
use launcher_protocol::{AccessCredentials, DomainState, GuestInfo};
use serde_json::{Value, json};

use super::status::{
    Agent, credentials, ended, following, links_pending, network_failed, nics_pending, refused, started,
    with_nics,
};

fn at(s: i64) -> Time {
    Time(jiff::Timestamp::from_second(s).unwrap())
}

/// A VMI in `phase` with `conditions` (type, status, reason), two interfaces (one on the pod network).
fn vmi(phase: &str, conditions: &[(&str, &str, &str)]) -> VirtualMachineInstance {
    let conds: Vec<Value> = conditions
        .iter()
        .map(|(t, s, r)| {
            let mut c = json!({"type": t, "status": s, "lastTransitionTime": "2026-01-01T00:00:05Z"});
            if !r.is_empty() {
                c["reason"] = json!(r);
            }
            c
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "testvmi", "namespace": "default"},
        "spec": {
            "domain": {"devices": {"interfaces": [
                {"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:01"},
                {"name": "second", "bridge": {}}]},
                "machine": {"type": "q35"}},
            "networks": [{"name": "default", "pod": {}}, {"name": "second", "multus": {"networkName": "n"}}]
        },
        "status": {"phase": phase, "conditions": conds, "nodeName": "node01",
            "phaseTransitionTimestamps": [{"phase": "Scheduled", "phaseTransitionTimestamp": "2026-01-01T00:00:01Z"}]}
    }))
    .unwrap()
}

fn conds(st: &VirtualMachineInstanceStatus) -> Vec<(String, String, Option<String>)> {
    st.conditions
        .iter()
        .flatten()
        .map(|c| (c.r#type.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn c(t: &str, s: &str, r: Option<&str>) -> (String, String, Option<String>) {
    (t.into(), s.into(), r.map(Into::into))
}

fn agent() -> Agent {
    Agent::Present(Box::new(GuestInfo {
        hostname: Some(json!({"host-name": "testvmi"})),
        os: Some(
            json!({"id": "alpine", "name": "Alpine Linux", "pretty-name": "Alpine Linux v3.20",
            "version-id": "3.20.3", "kernel-release": "6.6.58-0-virt", "machine": "x86_64"}),
        ),
        agent: Some(json!({"version": "9.0.2"})),
        timezone: None,
        interfaces: None,
    }))
}

#[test]
fn a_started_domain_makes_the_vmi_running_and_ready() {
    let v = vmi(
        "Scheduled",
        &[("Synchronized", "False", "Synchronizing with the Domain failed.")],
    );
    let nics = [
        launcher_protocol::DomainInterface {
            name: "second".into(),
            mac: "02:aa:00:00:00:02".into(),
            queue_count: 2,
            link_state: "up".into(),
        },
        launcher_protocol::DomainInterface {
            name: "default".into(),
            mac: "02:00:00:00:00:01".into(),
            queue_count: 1,
            link_state: "up".into(),
        },
    ];
    let st = started(
        &v,
        &["10.244.0.7".into(), "fd00:10:244::7".into()],
        &nics,
        &at(100),
    );
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let last = st.phase_transition_timestamps.as_ref().unwrap().last().unwrap();
    assert_eq!(
        (last.phase.as_deref(), last.phase_transition_timestamp.clone()),
        (Some("Running"), Some(at(100)))
    );
    assert_eq!(conds(&st), [c("Ready", "True", None)], "Synchronized=False goes");
    let ifaces = st.interfaces.clone().unwrap();
    assert_eq!(ifaces[0].ip_address.as_deref(), Some("10.244.0.7"));
    assert_eq!(
        ifaces[0].ip_addresses,
        Some(vec!["10.244.0.7".to_string(), "fd00:10:244::7".to_string()]),
        "both of a dual-stack pod's addresses"
    );
    assert_eq!(ifaces[0].mac.as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(ifaces[0].interface_name.as_deref(), Some("eth0"));
    assert_eq!(
        ifaces[1].ip_address, None,
        "only the pod network's interface has the pod IP"
    );
    assert_eq!(
        (
            ifaces[1].info_source.as_deref(),
            ifaces[1].pod_interface_name.clone()
        ),
        (
            Some("domain, multus-status"),
            Some(kubevirt_api::network::hashed_pod_iface("second"))
        ),
        "a secondary network's NIC names its pod interface"
    );
    assert_eq!(
        (
            ifaces[1].mac.as_deref(),
            ifaces[1].queue_count,
            ifaces[1].link_state.as_deref()
        ),
        (Some("02:aa:00:00:00:02"), Some(2), Some("up")),
        "the domain's MAC and queues"
    );
    assert_eq!(st.machine.unwrap().r#type.as_deref(), Some("q35"));
    assert_eq!(st.migration_method.as_deref(), Some("BlockMigration"));
    assert_eq!(
        st.node_name.as_deref(),
        Some("node01"),
        "the rest of the status stays"
    );
}

#[test]
fn a_started_domain_without_an_ip_or_machine_type() {
    let mut v = vmi("Scheduled", &[]);
    v.spec.domain.machine = None;
    let st = started(&v, &[], &[], &at(100));
    assert!(st.interfaces.unwrap().iter().all(|i| i.ip_address.is_none()));
    assert_eq!(
        st.machine.unwrap().r#type.as_deref(),
        Some("q35"),
        "upstream's default machine"
    );
}

#[test]
fn a_refused_start_is_synchronized_false_once() {
    let v = vmi("Scheduled", &[]);
    let st = refused(&v, "unsupported disk bus", &at(100)).unwrap();
    assert_eq!(
        conds(&st),
        [c(
            "Synchronized",
            "False",
            Some("Synchronizing with the Domain failed.")
        )]
    );
    assert_eq!(
        st.conditions.as_ref().unwrap()[0].message.as_deref(),
        Some("unsupported disk bus")
    );
    assert_eq!(st.phase.as_deref(), Some("Scheduled"));
    let mut again = v.clone();
    again.status = Some(st);
    assert_eq!(
        refused(&again, "unsupported disk bus", &at(200)),
        None,
        "nothing new to say"
    );
}

#[test]
fn a_network_that_cannot_be_plumbed_fails_the_vmi_and_says_why() {
    let v = vmi("Scheduled", &[]);
    let st = network_failed(
        &v,
        "failed to configure vmi network default: no gateway",
        &at(100),
    )
    .unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    let sync = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == "Synchronized")
        .unwrap();
    assert_eq!(
        (sync.status.as_str(), sync.message.as_deref()),
        (
            "False",
            Some("failed to configure vmi network default: no gateway")
        )
    );
    assert_eq!(st.reason, None);
}

#[test]
fn how_the_domain_ended_decides_the_final_phase() {
    let running = vmi("Running", &[("Ready", "True", "")]);
    let st = ended(
        &running,
        &DomainState::Shutoff("guest shut down (guest-shutdown)".into()),
        &at(100),
    )
    .unwrap();
    assert_eq!(st.phase.as_deref(), Some("Succeeded"));
    assert_eq!(st.reason, None);
    assert_eq!(conds(&st), [c("Ready", "False", Some("PodTerminating"))]);
    assert_eq!(
        st.conditions.as_ref().unwrap()[0].last_transition_time,
        Some(at(100))
    );

    let st = ended(&running, &DomainState::Crashed("guest panicked".into()), &at(100)).unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("guest panicked"));

    // A VMI that never ran ends the same way (its launcher could not start it).
    let scheduled = vmi("Scheduled", &[]);
    let st = ended(
        &scheduled,
        &DomainState::Crashed("failed to start: no disk".into()),
        &at(100),
    )
    .unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));

    let done = vmi("Succeeded", &[]);
    assert_eq!(
        ended(&done, &DomainState::Shutoff("x".into()), &at(100)),
        None,
        "already said"
    );
    assert_eq!(
        ended(&running, &DomainState::Running, &at(100)),
        None,
        "not an end"
    );
    assert_eq!(
        ended(&running, &DomainState::ShuttingDown, &at(100)),
        None,
        "not yet"
    );
}

/// (what, VMI conditions, domain state, agent) → conditions after (None: no write).
type FollowCase = (
    &'static str,
    Vec<(&'static str, &'static str, &'static str)>,
    DomainState,
    Agent,
    Option<Vec<(String, String, Option<String>)>>,
);

#[test]
fn a_running_vmi_follows_its_domain_and_agent() {
    let ready = ("Ready", "True", "");
    let paused = ("Paused", "True", "PausedByUser");
    let agent_on = ("AgentConnected", "True", "");
    let cases: Vec<FollowCase> = vec![
        (
            "running, no agent",
            vec![ready],
            DomainState::Running,
            Agent::Absent,
            None,
        ),
        (
            "shutting down, no agent",
            vec![ready],
            DomainState::ShuttingDown,
            Agent::Absent,
            None,
        ),
        (
            "paused",
            vec![ready],
            DomainState::Paused,
            Agent::NotAsked,
            Some(vec![
                c("Ready", "True", None),
                c("Paused", "True", Some("PausedByUser")),
            ]),
        ),
        (
            "still paused",
            vec![ready, paused],
            DomainState::Paused,
            Agent::NotAsked,
            None,
        ),
        (
            "unpaused",
            vec![ready, paused],
            DomainState::Running,
            Agent::Absent,
            Some(vec![c("Ready", "True", None)]),
        ),
        (
            "the agent appears",
            vec![ready],
            DomainState::Running,
            agent(),
            Some(vec![c("Ready", "True", None), c("AgentConnected", "True", None)]),
        ),
        (
            "the agent stays",
            vec![ready, agent_on],
            DomainState::Running,
            agent(),
            None,
        ),
        (
            "the agent goes",
            vec![ready, agent_on],
            DomainState::Running,
            Agent::Absent,
            Some(vec![c("Ready", "True", None)]),
        ),
        (
            "paused keeps the agent",
            vec![ready, agent_on],
            DomainState::Paused,
            Agent::NotAsked,
            Some(vec![
                c("Ready", "True", None),
                c("AgentConnected", "True", None),
                c("Paused", "True", Some("PausedByUser")),
            ]),
        ),
        (
            "unpaused with the agent back",
            vec![ready, paused],
            DomainState::Running,
            agent(),
            Some(vec![c("Ready", "True", None), c("AgentConnected", "True", None)]),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, have, domain, agent, want) in cases {
        let v = vmi("Running", &have);
        let got = following(&v, &domain, &agent, &at(100)).map(|st| conds(&st));
        if got != want {
            wrong.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_agents_os_becomes_guest_os_info() {
    let v = vmi("Running", &[("Ready", "True", "")]);
    let st = following(&v, &DomainState::Running, &agent(), &at(100)).unwrap();
    let os = st.guest_os_info.unwrap();
    assert_eq!(os.id.as_deref(), Some("alpine"));
    assert_eq!(os.pretty_name.as_deref(), Some("Alpine Linux v3.20"));
    assert_eq!(os.version_id.as_deref(), Some("3.20.3"));
    assert_eq!(os.kernel_release.as_deref(), Some("6.6.58-0-virt"));
    assert_eq!(os.machine.as_deref(), Some("x86_64"));
    assert_eq!(os.version, None, "what the agent did not say stays out");
}

#[test]
fn applied_credentials_are_reported_once() {
    let v = vmi("Running", &[("AgentConnected", "True", "")]);
    let ok = AccessCredentials::Applied {
        succeeded: true,
        message: String::new(),
    };
    let st = credentials(&v, &ok, &at(100)).unwrap();
    let cond = st
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.r#type == "AccessCredentialsSynchronized")
        .unwrap();
    assert_eq!((cond.status.as_str(), cond.message.as_deref()), ("True", None));
    let mut synced = v.clone();
    synced.status = Some(st);
    assert_eq!(credentials(&synced, &ok, &at(200)), None);
    let failed = AccessCredentials::Applied {
        succeeded: false,
        message: "Guest agent is offline".into(),
    };
    let st = credentials(&synced, &failed, &at(300)).unwrap();
    let cond = st
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.r#type == "AccessCredentialsSynchronized")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.message.as_deref()),
        ("False", Some("Guest agent is offline"))
    );
    assert_eq!(cond.last_transition_time, Some(at(300)));
    assert_eq!(
        credentials(&v, &AccessCredentials::Nothing { none: true }, &at(100)),
        None
    );
}

#[test]
fn a_link_state_changed_in_the_spec_is_pending_until_the_domain_has_it() {
    let nic = |name: &str, link: &str| launcher_protocol::DomainInterface {
        name: name.into(),
        mac: "02:00:00:00:00:01".into(),
        queue_count: 1,
        link_state: link.into(),
    };
    let mut v = vmi("Scheduled", &[]);
    v.status = Some(started(
        &v,
        &["10.244.0.7".into()],
        &[nic("default", "up"), nic("second", "up")],
        &at(100),
    ));
    assert!(!links_pending(&v), "up, as the spec says (no state: up)");
    v.spec.domain.devices.interfaces.as_mut().unwrap()[1].state = Some("down".into());
    assert!(links_pending(&v));
    let st = with_nics(&v, &[nic("default", "up"), nic("second", "down")]).unwrap();
    assert_eq!(
        st.interfaces.as_ref().unwrap()[1].link_state.as_deref(),
        Some("down")
    );
    v.status = Some(st);
    assert!(!links_pending(&v));
    assert_eq!(
        with_nics(&v, &[nic("default", "up"), nic("second", "down")]),
        None,
        "nothing changes"
    );
    assert!(!nics_pending(&v));
    // Unplugged in the spec: pending until the domain let it go, then its entry leaves.
    v.spec.domain.devices.interfaces.as_mut().unwrap()[1].state = Some("absent".into());
    assert!(nics_pending(&v));
    let st = with_nics(&v, &[nic("default", "up")]).unwrap();
    assert_eq!(st.interfaces.as_ref().unwrap().len(), 1);
    v.status = Some(st);
    assert!(!nics_pending(&v));
}
