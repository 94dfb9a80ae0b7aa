//! Pod status as a kubelet reports it: phase, IPs, conditions (incl. the launcher pod's readiness gate) and one
//! status per container. The pod runtime owns the whole status of the pods it runs and writes it in one patch.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Where the compute container is.
#[derive(Clone, Debug)]
pub(crate) enum Compute {
    /// Not started: `reason` (ErrImagePull, ContainerCreating, …) and a message.
    Waiting(String, String),
    /// Running since `started`; `ready` once the launcher's socket answers.
    Running { started: String, ready: bool },
    /// Ended, with the container's termination message.
    Terminated {
        code: i32,
        started: String,
        finished: String,
        message: Option<String>,
    },
}

/// The status the runtime reports.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub(crate) phase: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) host_ip: String,
    /// The pod's IPs, the primary first (none before its sandbox exists).
    pub(crate) pod_ips: Vec<String>,
    pub(crate) start_time: String,
    pub(crate) compute: Compute,
    /// How often the main container was restarted (`restartPolicy: OnFailure`).
    pub(crate) restarts: u32,
    /// How its last run ended, once it was restarted.
    pub(crate) last_state: Option<Compute>,
}

pub(crate) fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn state(c: &Compute) -> (Value, bool, bool) {
    match c {
        Compute::Waiting(reason, message) => (
            json!({"waiting": {"reason": reason, "message": message}}),
            false,
            false,
        ),
        Compute::Running { started, ready } => (json!({"running": {"startedAt": started}}), *ready, true),
        Compute::Terminated {
            code,
            started,
            finished,
            message,
        } => (
            json!({"terminated": {"exitCode": code, "reason": if *code == 0 { "Completed" } else { "Error" },
                "startedAt": started, "finishedAt": finished, "message": message}}),
            false,
            false,
        ),
    }
}

/// The status patch for `pod`.
pub(crate) fn render(pod: &Pod, view: &View) -> Value {
    let (compute_state, compute_ready, started) = state(&view.compute);
    let main = crate::command::main_container(pod).map(|c| c.name.clone());
    let last_state = view.last_state.as_ref().map_or_else(|| json!({}), |l| state(l).0);
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            // The containerDisk containers only hand their image over: they are "running" while the compute one is.
            let main = Some(&c.name) == main.as_ref();
            let (st, ready, started) = if main {
                (compute_state.clone(), compute_ready, started)
            } else {
                let (st, ready, started) = state(&view.compute);
                (st, ready, started)
            };
            let (restarts, last) = if main { (view.restarts, last_state.clone()) } else { (0, json!({})) };
            json!({"name": c.name, "image": c.image, "imageID": c.image, "ready": ready, "started": started,
                "restartCount": restarts, "lastState": last, "state": st, "containerID": format!("kvbox://{}-{}", pod.metadata.uid.as_deref().unwrap_or_default(), c.name)})
        })
        .collect();
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c["ready"] == json!(true));
    let t = now();
    let cond = |kind: &str, ok: bool| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": t});
    let gates: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .map(|g| cond(&g.condition_type, true))
        .collect();
    let sandbox = !view.pod_ips.is_empty();
    let mut conditions = vec![
        cond("PodReadyToStartContainers", sandbox),
        cond("Initialized", true),
        cond("ContainersReady", all_ready),
        cond("Ready", all_ready),
        cond("PodScheduled", true),
    ];
    conditions.extend(gates);
    let mut status = json!({
        "phase": view.phase,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "conditions": conditions,
        "containerStatuses": containers,
        "reason": view.reason,
        "message": view.message,
    });
    if let Some(ip) = view.pod_ips.first() {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!(
            view.pod_ips
                .iter()
                .map(|ip| json!({"ip": ip}))
                .collect::<Vec<_>>()
        );
    }
    status
}
