//! What a DataVolume is, decided from its claim, the claim's class and the importer pod (pure): upstream's phases
//! (Pending → WaitForFirstConsumer → ImportScheduled → ImportInProgress → Succeeded; Failed only for a lost claim),
//! the Bound/Ready/Running conditions with upstream's reasons, the restart count, and the importer pod to create.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubevirt_api::cdi::DataVolume;

use super::claim::ann;

/// What the DataVolume's status should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// `status.phase`.
    pub phase: &'static str,
    /// Bound: status, reason, message.
    pub bound: (&'static str, String, String),
    /// Running: status, reason, message.
    pub running: (&'static str, String, String),
    /// Ready: status, reason.
    pub ready: (&'static str, String),
    /// `status.restartCount`.
    pub restarts: i32,
}

/// What to do beside writing the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the importer pod.
    CreatePod,
    /// Delete the importer pod (done with it).
    DeletePod,
    /// Record on the claim that it is populated.
    MarkPopulated,
}

/// The importer pod's name for claim `pvc`.
#[must_use]
pub fn pod_name(pvc: &str) -> String {
    format!("importer-{pvc}")
}

/// The upload server pod's name for claim `pvc`.
#[must_use]
pub fn upload_pod_name(pvc: &str) -> String {
    format!("cdi-upload-{pvc}")
}

fn annotation<'a>(pvc: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    pvc.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The importer container's status: restarts, running, waiting reason, last termination message.
struct Importer<'a> {
    phase: &'a str,
    restarts: i32,
    running: bool,
    waiting: Option<(String, String)>,
    last_error: Option<String>,
}

/// The `message` of an importer's JSON termination message (or the text itself).
#[must_use]
pub fn termination_text(message: &str) -> String {
    serde_json::from_str::<serde_json::Value>(message)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| message.trim().to_string())
}

fn importer(pod: &Pod) -> Importer<'_> {
    let status = pod.status.as_ref();
    let c = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first());
    let terminated_msg = |st: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        st.and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .and_then(|t| t.message.as_deref())
            .map(termination_text)
    };
    Importer {
        phase: status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending"),
        restarts: c.map_or(0, |c| c.restart_count),
        running: c
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some()),
        waiting: c
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .map(|w| {
                (
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                )
            }),
        last_error: terminated_msg(c.and_then(|c| c.state.as_ref()))
            .or_else(|| terminated_msg(c.and_then(|c| c.last_state.as_ref()))),
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Rewrites space errors as upstream does.
fn running_message(message: &str) -> String {
    if message.contains("A larger PVC is required") || message.contains("not enough space") {
        format!("DataVolume too small to contain image: {message}")
    } else {
        message.to_string()
    }
}

/// Whether `dv` is filled by an upload (an upload server pod) rather than an importer.
#[must_use]
pub fn is_upload(dv: &DataVolume) -> bool {
    dv.spec.source.as_ref().is_some_and(|s| s.upload.is_some())
}

/// The name of the pod that fills `dv`'s claim `pvc`.
#[must_use]
pub fn worker_name(dv: &DataVolume, pvc: &str) -> String {
    if is_upload(dv) {
        upload_pod_name(pvc)
    } else {
        pod_name(pvc)
    }
}

/// Decides `dv`'s state from its claim (`None`: not created yet), whether the claim's class waits for a first
/// consumer, and its importer pod.
#[must_use]
pub fn decide(
    dv: &DataVolume,
    pvc: Option<&PersistentVolumeClaim>,
    waits_for_consumer: bool,
    pod: Option<&Pod>,
) -> (State, Vec<Step>) {
    let name = dv.metadata.name.clone().unwrap_or_default();
    let Some(pvc) = pvc else {
        let state = State {
            phase: "Pending",
            bound: ("False", s("NotFound"), s("No PVC found")),
            running: ("False", String::new(), String::new()),
            ready: ("False", String::new()),
            restarts: 0,
        };
        return (state, Vec::new());
    };
    let claim_bound = pvc_phase(pvc) == "Bound";
    let bound = match pvc_phase(pvc) {
        "Bound" => ("True", s("Bound"), format!("PVC {name} Bound")),
        "Lost" => ("False", s("ClaimLost"), s("Claim Lost")),
        _ => ("False", s("Pending"), format!("PVC {name} Pending")),
    };
    let restarts = annotation(pvc, ann::POD_RESTARTS)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
        .max(pod.map_or(0, |p| importer(p).restarts));
    let state = |phase, running: (&'static str, String, String), ready: (&'static str, String)| State {
        phase,
        bound: bound.clone(),
        running,
        ready,
        restarts,
    };
    if pvc_phase(pvc) == "Lost" {
        let st = state(
            "Failed",
            ("False", String::new(), String::new()),
            ("False", String::new()),
        );
        return (st, Vec::new());
    }
    let done = annotation(pvc, ann::POD_PHASE) == Some("Succeeded");
    let pod_done = pod.is_some_and(|p| importer(p).phase == "Succeeded");
    if done || pod_done {
        let mut steps = Vec::new();
        if !done {
            steps.push(Step::MarkPopulated);
        }
        let retain = annotation(pvc, ann::RETAIN_POD) == Some("true");
        if pod.is_some() && !retain {
            steps.push(Step::DeletePod);
        }
        let done = if is_upload(dv) {
            "Upload Complete"
        } else {
            "Import Complete"
        };
        let st = state(
            "Succeeded",
            ("False", s("Completed"), s(done)),
            ("True", String::new()),
        );
        return (st, steps);
    }
    let immediate = pvc
        .metadata
        .annotations
        .iter()
        .flatten()
        .any(|(k, _)| k == ann::IMMEDIATE)
        || dv
            .metadata
            .annotations
            .iter()
            .flatten()
            .any(|(k, _)| k == ann::IMMEDIATE);
    let Some(pod) = pod else {
        if !claim_bound && waits_for_consumer && !immediate {
            let st = state(
                "WaitForFirstConsumer",
                ("False", String::new(), String::new()),
                ("False", String::new()),
            );
            return (st, Vec::new());
        }
        let phase = if is_upload(dv) {
            "UploadScheduled"
        } else {
            "ImportScheduled"
        };
        let st = state(
            phase,
            ("False", String::new(), String::new()),
            ("False", String::new()),
        );
        return (st, vec![Step::CreatePod]);
    };
    let imp = importer(pod);
    let running = if imp.running {
        ("True", String::new(), String::new())
    } else if let Some(err) = &imp.last_error {
        ("False", s("Error"), running_message(err))
    } else if let Some((reason, message)) = imp.waiting.as_ref().filter(|(r, _)| r != "CrashLoopBackOff") {
        ("False", reason.clone(), message.clone())
    } else if imp.phase == "Pending" && pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
        ("False", s("Unschedulable"), s("Importer pod cannot be scheduled"))
    } else {
        ("False", String::new(), String::new())
    };
    let phase = match (
        is_upload(dv),
        imp.running || imp.restarts > 0 || imp.phase == "Running",
    ) {
        (true, _) if imp.running => "UploadReady",
        (true, _) => "UploadScheduled",
        (false, true) => "ImportInProgress",
        (false, false) => "ImportScheduled",
    };
    let ready = ("False", s(if imp.running { "TransferRunning" } else { "" }));
    (state(phase, running, ready), Vec::new())
}

/// CDIConfig's default importer resources: limits 750m / 600M, requests 100m / 60M.
fn resources() -> ResourceRequirements {
    let q = |v: &str| Quantity(v.to_string());
    ResourceRequirements {
        limits: Some(BTreeMap::from([
            ("cpu".into(), q("750m")),
            ("memory".into(), q("600M")),
        ])),
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("100m")),
            ("memory".into(), q("60M")),
        ])),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: Some(read_only),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

/// The upload server pod for `dv` into claim `pvc`: as an importer pod, named `cdi-upload-<claim>`, labelled and
/// with its container named as upstream's, running the upload server `image`.
#[must_use]
pub fn upload_pod(dv: &DataVolume, pvc: &PersistentVolumeClaim, image: &str, overhead: &str) -> Pod {
    let mut pod = importer_pod(dv, pvc, image, overhead);
    let claim = pvc.metadata.name.clone().unwrap_or_default();
    pod.metadata.name = Some(upload_pod_name(&claim));
    if let Some(l) = pod.metadata.labels.as_mut() {
        l.insert("cdi.kubevirt.io".into(), "cdi-upload-server".into());
        l.insert("service".into(), upload_pod_name(&claim));
    }
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.name = "cdi-upload-server".into();
        c.ports = Some(vec![ContainerPort {
            name: Some("upload".into()),
            container_port: 8443,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]);
    }
    pod
}

/// The importer pod for `dv` into claim `pvc` (upstream's name, labels, owner, env, mounts and resources).
#[must_use]
pub fn importer_pod(dv: &DataVolume, pvc: &PersistentVolumeClaim, image: &str, overhead: &str) -> Pod {
    let claim = pvc.metadata.name.clone().unwrap_or_default();
    let size = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let (kind, endpoint) = super::claim::import_source(dv).unwrap_or(("none", String::new()));
    let mut envs = vec![
        env("IMPORTER_SOURCE", kind),
        env("IMPORTER_ENDPOINT", endpoint),
        env(
            "IMPORTER_CONTENTTYPE",
            dv.spec.content_type.clone().unwrap_or_else(|| "kubevirt".into()),
        ),
        env("IMPORTER_IMAGE_SIZE", size),
        env("OWNER_UID", dv.metadata.uid.clone().unwrap_or_default()),
        env("FILESYSTEM_OVERHEAD", overhead),
        env("INSECURE_TLS", "false"),
        env("PREALLOCATION", "false"),
    ];
    let mut volumes = vec![claim_volume("cdi-data-vol", &claim, false)];
    let mut mounts = vec![mount("cdi-data-vol", "/data")];
    let source = dv.spec.source.as_ref();
    if let Some(http) = source.and_then(|s| s.http.as_ref()) {
        if let Some(secret) = &http.secret_ref {
            envs.push(secret_env("IMPORTER_ACCESS_KEY_ID", secret, "accessKeyId"));
            envs.push(secret_env("IMPORTER_SECRET_KEY", secret, "secretKey"));
        }
        if let Some(cm) = &http.cert_config_map {
            volumes.push(Volume {
                name: "cdi-cert-vol".into(),
                config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                    name: cm.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(mount("cdi-cert-vol", "/certs"));
            envs.push(env("IMPORTER_CERT_DIR", "/certs"));
        }
        for (i, h) in http.extra_headers.iter().flatten().enumerate() {
            envs.push(env(&format!("IMPORTER_EXTRA_HEADER_{i}"), h.clone()));
        }
    }
    if let Some(p) = source.and_then(|s| s.pvc.as_ref()) {
        volumes.push(claim_volume("cdi-source-vol", &p.name, true));
        mounts.push(mount("cdi-source-vol", "/source"));
    }
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "containerized-data-importer".to_string());
    labels.insert("cdi.kubevirt.io".to_string(), "importer".to_string());
    labels.insert("prometheus.cdi.kubevirt.io".to_string(), "true".to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&claim)),
            namespace: pvc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "cdi.kubevirt.io/storage.createdByController".to_string(),
                "yes".to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                name: claim.clone(),
                uid: pvc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("OnFailure".into()),
            termination_grace_period_seconds: Some(5),
            enable_service_links: Some(false),
            priority_class_name: dv.spec.priority_class_name.clone(),
            containers: vec![Container {
                name: "importer".into(),
                image: Some(image.into()),
                args: Some(vec!["-v=1".into()]),
                env: Some(envs),
                ports: Some(vec![ContainerPort {
                    name: Some("metrics".into()),
                    container_port: 8443,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                volume_mounts: Some(mounts),
                resources: Some(resources()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}
