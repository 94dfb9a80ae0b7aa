//! Namespaces: a new one is Active; once stored it gets its `kube-root-ca.crt` and `default` ServiceAccount; a
//! deleted one terminates first (its contents go before it), and `default` and `kube-system` may not be deleted.

use serde_json::{Value, json};

use super::{Deletion, Strategy};
use crate::context::Ctx;
use crate::objects::meta_str;
use crate::status::ApiError;

/// The namespaces strategy.
pub(crate) struct Namespaces;

impl Strategy for Namespaces {
    fn prepare_create(&self, _ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
        obj["status"] = json!({"phase": "Active"});
        Ok(())
    }

    fn after_write(&self, ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            let name = meta_str(obj, "name").unwrap_or_default();
            crate::system::namespace_contents(&ctx.state.store, name, &ctx.state.root_ca)?;
        }
        Ok(())
    }

    fn deletion(&self, _ctx: &Ctx, obj: &Value, _opts: &Value) -> Result<Deletion, ApiError> {
        let name = meta_str(obj, "name").unwrap_or_default();
        if matches!(name, "default" | "kube-system") {
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
                details: None,
            });
        }
        Ok(Deletion {
            grace: None,
            terminate: true,
        })
    }
}
