//! The KubeVirt kinds: created through the `api` crate's admission (the same defaults and validation as
//! `kvbox admit` and upstream's webhooks), VMs re-validated on update, and upstream's VMI update rules — only
//! KubeVirt's service accounts change a VMI's spec or reserved labels — run in-process.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::Object;
use serde_json::{Value, json};

use super::Strategy;
use crate::context::Ctx;
use crate::object_store::Resource;
use crate::objects::meta_str;
use crate::status::ApiError;

/// The groups of KubeVirt's kinds (and CDI's, which KubeVirt admission reads).
pub(crate) const GROUPS: &[&str] = &[
    "kubevirt.io",
    "pool.kubevirt.io",
    "instancetype.kubevirt.io",
    "migrations.kubevirt.io",
    "snapshot.kubevirt.io",
    "cdi.kubevirt.io",
];

/// Where the KubeVirt CR lives.
const KUBEVIRTS: Resource<'static> = Resource::of("kubevirt.io", "kubevirts");

/// The KubeVirt strategy.
pub(crate) struct KubeVirt;

impl Strategy for KubeVirt {
    fn create(&self, ctx: &Ctx, obj: Value, name: &str) -> Result<(Value, Vec<String>), ApiError> {
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
        match cluster.admit(decoded, now, &mut ids) {
            Outcome::Admitted { object, warnings } => Ok((object, warnings)),
            Outcome::Invalid(causes) => Err(invalid_from_causes(ctx, name, &causes)),
            Outcome::BadRequest(msg) => Err(ApiError::bad_request(msg)),
        }
    }

    fn update(&self, ctx: &Ctx, new: &mut Value, _old: &Value) -> Result<(), ApiError> {
        if ctx.rt.kind != "VirtualMachine" {
            return Ok(());
        }
        let Ok(Object::Vm(vm)) = Object::from_value(new.clone()) else {
            return Ok(());
        };
        let (_, config) = kubevirt(ctx)?;
        let causes = kubevirt_api::validate::vm(&vm, &config, false);
        refuse(ctx, new, &causes)
    }

    /// Upstream's VMI update webhook: a status-only write never reaches the rules.
    fn admit_update(&self, ctx: &Ctx, new: &Value, old: &Value) -> Result<(), ApiError> {
        if ctx.rt.kind != "VirtualMachineInstance"
            || (new.get("spec") == old.get("spec")
                && new.pointer("/metadata/labels") == old.pointer("/metadata/labels"))
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
        refuse(ctx, new, &causes)
    }
}

/// What KubeVirt admission can see: the KubeVirt CR, instancetypes, preferences, presets, VMIs and migrations.
fn cluster(ctx: &Ctx) -> Result<Cluster, ApiError> {
    let mut c = Cluster::default();
    let kind = ctx.rt.kind.as_str();
    let mut read = vec![KUBEVIRTS];
    match kind {
        "VirtualMachine" => read.extend([
            Resource::of("instancetype.kubevirt.io", "virtualmachineinstancetypes"),
            Resource::of("instancetype.kubevirt.io", "virtualmachineclusterinstancetypes"),
            Resource::of("instancetype.kubevirt.io", "virtualmachinepreferences"),
            Resource::of("instancetype.kubevirt.io", "virtualmachineclusterpreferences"),
            // What inferFromVolume reads.
            Resource::core("persistentvolumeclaims"),
            Resource::of("cdi.kubevirt.io", "datavolumes"),
            Resource::of("cdi.kubevirt.io", "datasources"),
            Resource::of("snapshot.storage.k8s.io", "volumesnapshots"),
        ]),
        "VirtualMachineInstance" => read.push(Resource::of("kubevirt.io", "virtualmachineinstancepresets")),
        "VirtualMachineInstanceMigration" => read.extend([
            Resource::of("kubevirt.io", "virtualmachineinstances"),
            Resource::of("kubevirt.io", "virtualmachineinstancemigrations"),
        ]),
        _ => {}
    }
    for resource in read {
        for mut v in resource.list(&ctx.state.store)? {
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

/// The installed KubeVirt: its namespace (where its service accounts live) and its configuration.
fn kubevirt(ctx: &Ctx) -> Result<(String, kubevirt_api::config::ClusterConfig), ApiError> {
    let cr = KUBEVIRTS
        .list(&ctx.state.store)?
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

/// A 422 naming `obj` when there are causes.
fn refuse(ctx: &Ctx, obj: &Value, causes: &[StatusCause]) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(invalid_from_causes(
        ctx,
        meta_str(obj, "name").unwrap_or_default(),
        causes,
    ))
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
