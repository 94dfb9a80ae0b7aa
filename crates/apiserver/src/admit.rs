//! Per-resource admission and side effects: KubeVirt objects through the `api` crate's defaults and validation (the
//! same code as `kvbox admit`), CRDs validated and established synchronously, namespaces activated and emptied.

use apiserver_store::ListOptions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::objects::{meta_str, now_rfc3339};
use crate::status::ApiError;
use crate::webhook;
use crate::webhook_cache::Phase;

const KUBEVIRT_GROUPS: &[&str] = &[
    "kubevirt.io",
    "pool.kubevirt.io",
    "instancetype.kubevirt.io",
    "migrations.kubevirt.io",
    "snapshot.kubevirt.io",
    "cdi.kubevirt.io",
];

fn is_kubevirt(ctx: &Ctx) -> bool {
    KUBEVIRT_GROUPS.contains(&ctx.rt.group.as_str())
}

/// Everything stored under `prefix`, decoded.
fn all_under(ctx: &Ctx, prefix: &str) -> Result<Vec<Value>, ApiError> {
    let page = ctx.state.store.list(prefix, &ListOptions::default())?;
    page.items
        .iter()
        .map(|kv| serde_json::from_slice(&kv.value).map_err(ApiError::internal))
        .collect()
}

/// What KubeVirt admission can see: the KubeVirt CR, instancetypes, preferences, presets, VMIs and migrations.
fn cluster(ctx: &Ctx) -> Result<Cluster, ApiError> {
    let mut c = Cluster::default();
    let kind = ctx.rt.kind.as_str();
    let mut prefixes = vec!["/registry/kubevirt.io/kubevirts/"];
    match kind {
        "VirtualMachine" => prefixes.extend([
            "/registry/instancetype.kubevirt.io/virtualmachineinstancetypes/",
            "/registry/instancetype.kubevirt.io/virtualmachineclusterinstancetypes/",
            "/registry/instancetype.kubevirt.io/virtualmachinepreferences/",
            "/registry/instancetype.kubevirt.io/virtualmachineclusterpreferences/",
            // What inferFromVolume reads.
            "/registry/core/persistentvolumeclaims/",
            "/registry/cdi.kubevirt.io/datavolumes/",
            "/registry/cdi.kubevirt.io/datasources/",
            "/registry/snapshot.storage.k8s.io/volumesnapshots/",
        ]),
        "VirtualMachineInstance" => prefixes.push("/registry/kubevirt.io/virtualmachineinstancepresets/"),
        "VirtualMachineInstanceMigration" => prefixes.extend([
            "/registry/kubevirt.io/virtualmachineinstances/",
            "/registry/kubevirt.io/virtualmachineinstancemigrations/",
        ]),
        _ => {}
    }
    for prefix in prefixes {
        for mut v in all_under(ctx, prefix)? {
            // Stored objects may be at any served version; admission reads them as v1/v1beta1.
            if let Some(av) = v.get("apiVersion").and_then(Value::as_str)
                && av == "kubevirt.io/v1alpha3"
            {
                v["apiVersion"] = json!("kubevirt.io/v1");
            }
            c.record_volume(&v);
            if let Ok(obj) = Object::from_value(v) {
                c.record(&obj);
            }
        }
    }
    Ok(c)
}

fn invalid_from_causes(ctx: &Ctx, name: &str, causes: &[StatusCause]) -> ApiError {
    let list: Vec<(String, String, String)> = causes
        .iter()
        .map(|c| {
            (
                c.field.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_else(|| "FieldValueInvalid".into()),
            )
        })
        .collect();
    ApiError::invalid(&ctx.rt.kind, &ctx.rt.group, name, &list)
}

/// Admission on create: returns the object to store and warnings for the client.
///
/// # Errors
/// 400/422 when admission refuses the object.
pub fn on_create(ctx: &Ctx, obj: Value, name: &str) -> Result<(Value, Vec<String>), ApiError> {
    let (obj, mut warnings) = webhook::run(ctx, Phase::Mutating, "CREATE", obj, None)?;
    let (obj, more) = builtin_create(ctx, obj, name)?;
    warnings.extend(more);
    let (obj, more) = webhook::run(ctx, Phase::Validating, "CREATE", obj, None)?;
    warnings.extend(more);
    Ok((obj, warnings))
}

fn builtin_create(ctx: &Ctx, obj: Value, name: &str) -> Result<(Value, Vec<String>), ApiError> {
    let mut obj = obj;
    crate::defaults::prune_nulls(&mut obj);
    if is_kubevirt(ctx) {
        let decoded = Object::from_value(obj).map_err(|e| match e {
            kubevirt_api::DecodeError::Field { path, message, .. } => ApiError::invalid(
                &ctx.rt.kind,
                &ctx.rt.group,
                name,
                &[(
                    path,
                    format!("Invalid value: {message}"),
                    "FieldValueInvalid".into(),
                )],
            ),
            other => ApiError::bad_request(other.to_string()),
        })?;
        let mut cluster = cluster(ctx)?;
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let mut ids = || uuid::Uuid::new_v4().to_string();
        return match cluster.admit(decoded, now, &mut ids) {
            Outcome::Admitted { object, warnings } => Ok((object, warnings)),
            Outcome::Invalid(causes) => Err(invalid_from_causes(ctx, name, &causes)),
            Outcome::BadRequest(msg) => Err(ApiError::bad_request(msg)),
        };
    }
    crate::defaults::on_create(&ctx.rt.group, &ctx.rt.plural, &mut obj)?;
    match (ctx.rt.group.as_str(), ctx.rt.plural.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let types = crate::registry::from_crd(&obj).map_err(|e| {
                ApiError::invalid(
                    "CustomResourceDefinition",
                    "apiextensions.k8s.io",
                    name,
                    &[(e.field.clone(), e.message.clone(), "FieldValueInvalid".into())],
                )
            })?;
            obj["status"] = crd_status(&obj, &types);
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            let taken =
                crate::services::Taken::from_services(&all_under(ctx, "/registry/core/services/")?, "");
            crate::services::prepare(&mut obj, None, ctx.state.service_range, &taken)?;
        }
        ("", "pods") => {
            let ns = ctx.path.namespace.clone().unwrap_or_else(|| "default".into());
            let sa = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            let account = match ctx
                .state
                .store
                .get(&format!("/registry/core/serviceaccounts/{ns}/{sa}"))?
            {
                Some(kv) => Some(serde_json::from_slice::<Value>(&kv.value).map_err(ApiError::internal)?),
                None => None,
            };
            crate::serviceaccount::admit(&mut obj, account.as_ref())?;
            // As kube-apiserver's pod strategy: a new pod is Pending, with its QoS class.
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj)});
        }
        _ => {}
    }
    Ok((obj, Vec::new()))
}

/// The pod's QoS class: Guaranteed when every container limits cpu and memory at its requests, BestEffort when no
/// container asks for either, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let get = |c: &Value, kind: &str, res: &str| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let any = containers.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|r| get(c, "requests", r).is_some() || get(c, "limits", r).is_some())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = get(c, "limits", r);
            limit.is_some() && get(c, "requests", r).is_none_or(|q| Some(q) == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

fn crd_status(crd: &Value, types: &[crate::registry::ResourceType]) -> Value {
    let now = now_rfc3339();
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    if let (Some(t), Some(n)) = (types.first(), names.as_object_mut()) {
        n.insert("singular".into(), json!(t.singular));
        n.entry("listKind")
            .or_insert_with(|| json!(format!("{}List", t.kind)));
    }
    json!({
        "acceptedNames": names,
        "storedVersions": storage,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
    })
}

/// Admission on update (spec validation for KubeVirt kinds; CRDs re-validated).
///
/// # Errors
/// 422 when the new object is invalid.
pub fn on_update(ctx: &Ctx, new: Value, old: &Value) -> Result<(Value, Vec<String>), ApiError> {
    let (new, mut warnings) = webhook::run(ctx, Phase::Mutating, "UPDATE", new, Some(old))?;
    let mut new = builtin_update(ctx, new)?;
    if ctx.rt.group.is_empty() && ctx.rt.plural == "services" {
        let key = format!(
            "{}/{}",
            meta_str(&new, "namespace").unwrap_or_default(),
            meta_str(&new, "name").unwrap_or_default()
        );
        let taken = crate::services::Taken::from_services(&all_under(ctx, "/registry/core/services/")?, &key);
        crate::services::prepare(&mut new, Some(old), ctx.state.service_range, &taken)?;
    }
    let (new, more) = webhook::run(ctx, Phase::Validating, "UPDATE", new, Some(old))?;
    warnings.extend(more);
    if is_kubevirt(ctx) && ctx.rt.kind == "VirtualMachineInstance" {
        vmi_update(ctx, &new, old)?;
    }
    Ok((new, warnings))
}

/// The installed KubeVirt: its namespace (where its service accounts live) and its configuration.
fn kubevirt(ctx: &Ctx) -> Result<(String, kubevirt_api::config::ClusterConfig), ApiError> {
    let cr = all_under(ctx, "/registry/kubevirt.io/kubevirts/")?
        .into_iter()
        .find_map(|v| serde_json::from_value::<kubevirt_api::v1::KubeVirt>(v).ok());
    let namespace = cr
        .as_ref()
        .and_then(|kv| kv.metadata.namespace.clone())
        .unwrap_or_else(|| "kubevirt".into());
    Ok((
        namespace,
        kubevirt_api::config::ClusterConfig::from_kubevirt(cr.as_ref()),
    ))
}

/// Upstream's VMI update webhook, run in-process: only KubeVirt's service accounts change a VMI's spec or
/// reserved labels (a status-only write never reaches the rules).
fn vmi_update(ctx: &Ctx, new: &Value, old: &Value) -> Result<(), ApiError> {
    if new.get("spec") == old.get("spec")
        && new.pointer("/metadata/labels") == old.pointer("/metadata/labels")
    {
        return Ok(());
    }
    let decode = |v: &Value| {
        serde_json::from_value::<kubevirt_api::v1::VirtualMachineInstance>(v.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    let (old_vmi, new_vmi) = (decode(old)?, decode(new)?);
    let (namespace, config) = kubevirt(ctx)?;
    let ours = kubevirt_api::validate::kubevirt_account(&ctx.identity.user, &namespace);
    let causes = kubevirt_api::validate::vmi_update(&old_vmi, &new_vmi, ours, &config);
    if causes.is_empty() {
        return Ok(());
    }
    Err(invalid_from_causes(
        ctx,
        meta_str(new, "name").unwrap_or_default(),
        &causes,
    ))
}

fn builtin_update(ctx: &Ctx, new: Value) -> Result<Value, ApiError> {
    let mut new = new;
    crate::defaults::prune_nulls(&mut new);
    crate::defaults::on_update(&ctx.rt.group, &ctx.rt.plural, &mut new)?;
    let name = meta_str(&new, "name").unwrap_or_default().to_string();
    if ctx.rt.group == "apiextensions.k8s.io" {
        crate::registry::from_crd(&new).map_err(|e| {
            ApiError::invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                &name,
                &[(e.field, e.message, "FieldValueInvalid".into())],
            )
        })?;
    }
    if is_kubevirt(ctx)
        && ctx.rt.kind == "VirtualMachine"
        && let Ok(Object::Vm(vm)) = Object::from_value(new.clone())
    {
        let (_, config) = kubevirt(ctx)?;
        let causes = kubevirt_api::validate::vm(&vm, &config, false);
        if !causes.is_empty() {
            return Err(invalid_from_causes(ctx, &name, &causes));
        }
    }
    Ok(new)
}

/// Effects of a stored create or update: a CRD starts being served the moment it is stored; a namespace gets its
/// `kube-root-ca.crt` and `default` ServiceAccount.
///
/// # Errors
/// 500 if a stored CRD cannot be served (it was validated before storing).
pub fn after_write(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    if ctx.rt.group.is_empty()
        && ctx.rt.plural == "namespaces"
        && obj.pointer("/metadata/deletionTimestamp").is_none()
    {
        let name = meta_str(obj, "name").unwrap_or_default();
        crate::system::namespace_contents(&ctx.state.store, name, &ctx.state.root_ca)?;
    }
    if ctx.rt.group == "apiextensions.k8s.io" && ctx.rt.plural == "customresourcedefinitions" {
        ctx.state.registry.install_crd(obj).map_err(ApiError::internal)?;
    }
    Ok(())
}

/// Effects of a delete: a CRD's objects go with it; a namespace's contents go with it.
///
/// # Errors
/// Store failures.
pub fn after_delete(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if ctx.rt.group == "apiextensions.k8s.io" && ctx.rt.plural == "customresourcedefinitions" {
        if let Some(rt) = ctx
            .state
            .registry
            .all()
            .into_iter()
            .find(|t| t.crd.as_deref() == Some(name.as_str()))
        {
            purge(ctx, &rt.prefix())?;
        }
        ctx.state.registry.remove_crd(&name);
    }
    Ok(())
}

fn purge(ctx: &Ctx, prefix: &str) -> Result<(), ApiError> {
    let page = ctx.state.store.list(prefix, &ListOptions::default())?;
    for kv in page.items {
        match ctx.state.store.delete(&kv.key, None) {
            Ok(_) | Err(apiserver_store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
