//! The admission webhooks a cluster's kube-apiserver calls (`admission.k8s.io/v1` AdmissionReviews at upstream's
//! paths): mutating ones answer with a JSONPatch from the object to its defaulted form, validating ones allow or
//! refuse with upstream's 422 (the first ten causes, their messages joined). Both use the `api` crate's admission —
//! the very code box mode's API server runs in-process — fed with what the cluster holds (the KubeVirt CR,
//! instancetypes, preferences, presets, VMIs, migrations), listed per request.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, Time};
use kube::api::{Api, ApiResource, DynamicObject};
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use serde_json::{Value, json};

use crate::app::App;

/// What a webhook path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// Defaults on create (VMI, VM, migration); a VMI update by a user gets its status edits reverted.
    Mutate,
    /// Full admission of a new object.
    ValidateCreate,
    /// VMI updates: only KubeVirt's own service accounts may change the spec.
    VmiUpdate,
    /// VM create and update.
    Vm,
    /// Migration updates: the spec is fixed.
    MigrationUpdate,
}

/// Upstream's webhook paths and what each does here.
pub const PATHS: &[(&str, &str)] = &[
    ("/virtualmachineinstances-mutate", "mutate"),
    ("/virtualmachines-mutate", "mutate"),
    ("/migration-mutate-create", "mutate"),
    ("/virtualmachineinstances-validate-create", "create"),
    ("/virtualmachineinstances-validate-update", "vmi-update"),
    ("/virtualmachines-validate", "vm"),
    ("/virtualmachinereplicaset-validate", "create"),
    ("/virtualmachinepool-validate", "create"),
    ("/vmipreset-validate", "create"),
    ("/migration-validate-create", "create"),
    ("/migration-validate-update", "migration-update"),
    ("/virtualmachineinstancetypes-validate", "create"),
    ("/virtualmachineclusterinstancetypes-validate", "create"),
    ("/virtualmachinepreferences-validate", "create"),
    ("/virtualmachineclusterpreferences-validate", "create"),
    ("/migration-policy-validate-create", "create"),
];

fn hook_of(kind: &str) -> Hook {
    match kind {
        "mutate" => Hook::Mutate,
        "vmi-update" => Hook::VmiUpdate,
        "vm" => Hook::Vm,
        "migration-update" => Hook::MigrationUpdate,
        _ => Hook::ValidateCreate,
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The cluster's KubeVirt configuration (upstream's defaults without a KubeVirt CR).
pub(crate) async fn cluster_config(client: &kube::Client) -> kubevirt_api::config::ClusterConfig {
    cluster(client, "KubeVirt").await.config
}

/// What admission of an object of `kind` needs to see, listed from the cluster (a kind that is not served counts
/// as none).
async fn cluster(client: &kube::Client, kind: &str) -> Cluster {
    let it = "instancetype.kubevirt.io";
    let mut kinds = vec![resource("kubevirt.io", "v1", "KubeVirt", "kubevirts")];
    match kind {
        "VirtualMachine" => kinds.extend([
            resource(
                it,
                "v1beta1",
                "VirtualMachineInstancetype",
                "virtualmachineinstancetypes",
            ),
            resource(
                it,
                "v1beta1",
                "VirtualMachineClusterInstancetype",
                "virtualmachineclusterinstancetypes",
            ),
            resource(
                it,
                "v1beta1",
                "VirtualMachinePreference",
                "virtualmachinepreferences",
            ),
            resource(
                it,
                "v1beta1",
                "VirtualMachineClusterPreference",
                "virtualmachineclusterpreferences",
            ),
            // What inferFromVolume reads.
            resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
            resource("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes"),
            resource("cdi.kubevirt.io", "v1beta1", "DataSource", "datasources"),
            resource(
                "snapshot.storage.k8s.io",
                "v1",
                "VolumeSnapshot",
                "volumesnapshots",
            ),
        ]),
        "VirtualMachineInstance" => kinds.push(resource(
            "kubevirt.io",
            "v1",
            "VirtualMachineInstancePreset",
            "virtualmachineinstancepresets",
        )),
        "VirtualMachineInstanceMigration" => kinds.extend([
            resource(
                "kubevirt.io",
                "v1",
                "VirtualMachineInstance",
                "virtualmachineinstances",
            ),
            resource(
                "kubevirt.io",
                "v1",
                "VirtualMachineInstanceMigration",
                "virtualmachineinstancemigrations",
            ),
        ]),
        _ => {}
    }
    let mut c = Cluster::default();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        for item in list.items {
            let Ok(mut v) = serde_json::to_value(&item) else {
                continue;
            };
            v["apiVersion"] = json!(ar.api_version);
            v["kind"] = json!(ar.kind);
            c.record_volume(&v);
            if let Ok(obj) = Object::from_value(v) {
                if let Object::KubeVirt(kv) = &obj {
                    c.config = kubevirt_api::config::ClusterConfig::from_kubevirt(Some(kv));
                }
                c.record(&obj);
            }
        }
    }
    c
}

/// A refusal with upstream's shape (422, the first ten causes).
fn invalid(causes: &[StatusCause]) -> Value {
    let shown = &causes[..causes.len().min(10)];
    let mut message = shown
        .iter()
        .filter_map(|c| c.message.clone())
        .collect::<Vec<_>>()
        .join(", ");
    if causes.len() > 10 {
        message.push_str(&format!(", and {} more validation errors", causes.len() - 10));
    }
    json!({"allowed": false, "status": {"message": message, "reason": "Invalid", "code": 422,
        "details": {"causes": shown}}})
}

fn refused(code: u16, message: &str) -> Value {
    json!({"allowed": false, "status": {"message": message, "code": code}})
}

fn allowed(warnings: &[String]) -> Value {
    let mut r = json!({"allowed": true});
    if !warnings.is_empty() {
        r["warnings"] = json!(warnings);
    }
    r
}

fn with_patch(mut r: Value, from: &Value, to: &Value) -> Value {
    let patch = json_patch::diff(from, to);
    if !patch.0.is_empty()
        && let Ok(bytes) = serde_json::to_vec(&patch)
    {
        r["patchType"] = json!("JSONPatch");
        r["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    r
}

/// Whether `user` is one of KubeVirt's own service accounts in `namespace`.
/// Admits `obj` as a create: the outcome, or a refusal when it does not even decode.
async fn admit(client: &kube::Client, obj: &Value) -> Result<Outcome, Value> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let decoded = Object::from_value(obj.clone()).map_err(|e| match e {
        kubevirt_api::DecodeError::Field { path, message, .. } => invalid(&[StatusCause {
            field: Some(path),
            message: Some(format!("Invalid value: {message}")),
            reason: Some("FieldValueInvalid".into()),
        }]),
        other => refused(400, &other.to_string()),
    })?;
    let mut c = cluster(client, &kind).await;
    let now = Time(jiff::Timestamp::now());
    let mut ids = || uuid::Uuid::new_v4().to_string();
    Ok(c.admit(decoded, now, &mut ids))
}

/// Answers one review.
async fn answer(app: &App, hook: Hook, req: &Value) -> Value {
    let op = req.get("operation").and_then(Value::as_str).unwrap_or_default();
    let obj = req.get("object").cloned().unwrap_or(Value::Null);
    let old = req.get("oldObject").cloned().unwrap_or(Value::Null);
    let user = req
        .pointer("/userInfo/username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ours = kubevirt_api::validate::kubevirt_account(user, &app.namespace);
    match (hook, op) {
        (Hook::Mutate, "CREATE") => match admit(&app.client, &obj).await {
            Ok(Outcome::Admitted { object, warnings }) => with_patch(allowed(&warnings), &obj, &object),
            // The validating webhook refuses it with the causes; mutation has nothing to add.
            Ok(Outcome::Invalid(_)) | Err(_) => allowed(&[]),
            Ok(Outcome::BadRequest(m)) => refused(400, &m),
        },
        (Hook::Mutate, "UPDATE")
            if !ours && obj.get("kind").and_then(Value::as_str) == Some("VirtualMachineInstance") =>
        {
            // Only KubeVirt writes a VMI's status.
            let mut reverted = obj.clone();
            match old.get("status") {
                Some(s) => reverted["status"] = s.clone(),
                None => {
                    if let Some(o) = reverted.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            with_patch(allowed(&[]), &obj, &reverted)
        }
        (Hook::Mutate, _) => allowed(&[]),
        (Hook::VmiUpdate, _) => {
            let decode = |v: Value| serde_json::from_value::<kubevirt_api::v1::VirtualMachineInstance>(v);
            match (decode(old), decode(obj)) {
                (Ok(old), Ok(new)) => {
                    let config = cluster_config(&app.client).await;
                    if ours && user.ends_with("kubevirt-handler") && config.gate("NodeRestriction") {
                        let node = req
                            .pointer("/userInfo/extra")
                            .and_then(|e| e.get(kubevirt_api::validate::NODE_NAME_EXTRA))
                            .and_then(|v| v.get(0))
                            .and_then(Value::as_str);
                        let causes = kubevirt_api::validate::handler_node_restriction(&old, &new, node);
                        if !causes.is_empty() {
                            return invalid(&causes);
                        }
                    }
                    let causes = kubevirt_api::validate::vmi_update(&old, &new, ours, &config);
                    if causes.is_empty() {
                        allowed(&[])
                    } else {
                        invalid(&causes)
                    }
                }
                (Err(e), _) | (_, Err(e)) => refused(400, &e.to_string()),
            }
        }
        (Hook::MigrationUpdate, _) => {
            if obj.get("spec") != old.get("spec") {
                invalid(&[StatusCause {
                    field: None,
                    message: Some("update of Migration object's spec is restricted".into()),
                    reason: Some("FieldValueNotSupported".into()),
                }])
            } else {
                allowed(&[])
            }
        }
        (Hook::Vm, "UPDATE") => match serde_json::from_value::<kubevirt_api::v1::VirtualMachine>(obj) {
            Ok(vm) => {
                let config = cluster_config(&app.client).await;
                let causes = kubevirt_api::validate::vm(&vm, &config, false);
                if causes.is_empty() {
                    allowed(&[])
                } else {
                    invalid(&causes)
                }
            }
            Err(e) => refused(400, &e.to_string()),
        },
        (Hook::Vm | Hook::ValidateCreate, _) => match admit(&app.client, &obj).await {
            Ok(Outcome::Admitted { warnings, .. }) => allowed(&warnings),
            Ok(Outcome::Invalid(causes)) => invalid(&causes),
            Ok(Outcome::BadRequest(m)) => refused(400, &m),
            Err(r) => r,
        },
    }
}

/// `POST <path>` with an AdmissionReview.
pub async fn review(State(app): State<Arc<App>>, kind: &'static str, body: axum::body::Bytes) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "the body is not an AdmissionReview",
        )
            .into_response();
    };
    let Some(req) = review.get("request") else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "the AdmissionReview has no request",
        )
            .into_response();
    };
    let uid = req.get("uid").cloned().unwrap_or(Value::Null);
    let span = tracing::info_span!("admission", path = kind, uid = %uid);
    let mut response = tracing::Instrument::instrument(answer(&app, hook_of(kind), req), span).await;
    response["uid"] = uid;
    axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
        .into_response()
}
