//! What one group/resource does differently from the generic verbs — kube-apiserver's per-resource strategies: the
//! fields the server owns on create and update, re-validation, rules on who may change what, effects of a stored
//! write or delete, and how a delete goes. One file a resource: [`pods`], [`namespaces`], [`services`], [`crds`]
//! (and so custom resources' types), [`kubevirt`] (every KubeVirt kind, through the `api` crate's admission). Built-in
//! defaults (`SetDefaults_*`) are [`crate::defaults`]' table; table printers are the registry's columns.

use serde_json::Value;

use crate::context::Ctx;
use crate::registry::ResourceType;
use crate::status::ApiError;

pub(crate) mod crds;
pub(crate) mod kubevirt;
pub(crate) mod namespaces;
pub(crate) mod pods;
pub(crate) mod services;

/// How a DELETE of one object goes, beyond its finalizers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deletion {
    /// Seconds the object is kept, marked, before it goes (a pod bound to a node).
    pub grace: Option<i64>,
    /// The object terminates first (a namespace: its contents go before it).
    pub terminate: bool,
}

/// One resource's rules. Every method has the generic behaviour as its default.
pub(crate) trait Strategy: Sync {
    /// A new object after the mutating webhooks: defaults and the fields the server owns (status, cluster IPs,
    /// tokens); the object to store and warnings for the client.
    ///
    /// # Errors
    /// 400/422 when the object is refused.
    fn create(&self, ctx: &Ctx, obj: Value, name: &str) -> Result<(Value, Vec<String>), ApiError> {
        let _ = name;
        let mut obj = obj;
        crate::defaults::on_create(&ctx.rt.group, &ctx.rt.plural, &mut obj)?;
        self.prepare_create(ctx, &mut obj)?;
        Ok((obj, Vec::new()))
    }

    /// The fields the server owns in a new object, after its defaults.
    ///
    /// # Errors
    /// 400/422 when the object is refused.
    fn prepare_create(&self, _ctx: &Ctx, _obj: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// An update after the mutating webhooks and the defaults: re-validation and the fields the server owns.
    ///
    /// # Errors
    /// 422 when the new object is invalid.
    fn update(&self, _ctx: &Ctx, _new: &mut Value, _old: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// An update after the validating webhooks: rules on who may change what.
    ///
    /// # Errors
    /// 422 when the caller may not make this change.
    fn admit_update(&self, _ctx: &Ctx, _new: &Value, _old: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Effects of a stored create or update.
    ///
    /// # Errors
    /// Store failures.
    fn after_write(&self, _ctx: &Ctx, _obj: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Effects of a delete.
    ///
    /// # Errors
    /// Store failures.
    fn after_delete(&self, _ctx: &Ctx, _obj: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// How deleting `obj` with the DeleteOptions `opts` goes.
    ///
    /// # Errors
    /// 403 for an object that may not be deleted.
    fn deletion(&self, _ctx: &Ctx, _obj: &Value, _opts: &Value) -> Result<Deletion, ApiError> {
        Ok(Deletion::default())
    }

    /// Whether a DELETE answers with the object (as pods') rather than a Status.
    fn delete_returns_object(&self) -> bool {
        false
    }
}

/// Everything without rules of its own.
struct Generic;

impl Strategy for Generic {}

/// The strategy of a resource type.
pub(crate) fn of(rt: &ResourceType) -> &'static dyn Strategy {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => &pods::Pods,
        ("", "namespaces") => &namespaces::Namespaces,
        ("", "services") => &services::Services,
        ("apiextensions.k8s.io", "customresourcedefinitions") => &crds::Crds,
        (group, _) if kubevirt::GROUPS.contains(&group) => &kubevirt::KubeVirt,
        _ => &Generic,
    }
}
