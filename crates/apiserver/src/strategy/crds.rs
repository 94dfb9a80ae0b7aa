//! CustomResourceDefinitions: validated and established synchronously — a stored CRD is served at once, its types
//! re-validated on every update, and a deleted one takes its custom resources with it.

use serde_json::{Value, json};

use super::Strategy;
use crate::context::Ctx;
use crate::objects::{meta_str, now_rfc3339};
use crate::status::ApiError;

/// The CRD strategy.
pub(crate) struct Crds;

/// The CRD's types, or a 422 naming the field that keeps it from being served.
fn types(obj: &Value) -> Result<Vec<crate::registry::ResourceType>, ApiError> {
    crate::registry::from_crd(obj).map_err(|e| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            meta_str(obj, "name").unwrap_or_default(),
            &[(e.field.clone(), e.message.clone(), "FieldValueInvalid".into())],
        )
    })
}

impl Strategy for Crds {
    fn prepare_create(&self, _ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
        let types = types(obj)?;
        obj["status"] = status(obj, &types);
        Ok(())
    }

    fn update(&self, _ctx: &Ctx, new: &mut Value, _old: &Value) -> Result<(), ApiError> {
        types(new).map(|_| ())
    }

    fn after_write(&self, ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
        ctx.state
            .registry
            .install_crd(obj)
            .map(|_| ())
            .map_err(ApiError::internal)
    }

    fn after_delete(&self, ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
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
        Ok(())
    }
}

fn purge(ctx: &Ctx, prefix: &str) -> Result<(), ApiError> {
    let page = ctx
        .state
        .store
        .list(prefix, &apiserver_store::ListOptions::default())?;
    for kv in page.items {
        match ctx.state.store.delete(&kv.key, None) {
            Ok(_) | Err(apiserver_store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An established CRD's status: its accepted names, stored versions, NamesAccepted and Established.
fn status(crd: &Value, types: &[crate::registry::ResourceType]) -> Value {
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
