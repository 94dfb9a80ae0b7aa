//! Admission, in kube-apiserver's order: the mutating webhooks, the built-in defaults and the resource's own rules
//! ([`crate::strategy`]), the validating webhooks; and the effects of a stored write or delete.

use serde_json::Value;

use crate::context::Ctx;
use crate::status::ApiError;
use crate::webhook;
use crate::webhook_cache::Phase;

/// Admission on create: returns the object to store and warnings for the client.
///
/// # Errors
/// 400/422 when admission refuses the object.
pub fn on_create(ctx: &Ctx, obj: Value, name: &str) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, mut warnings) = webhook::run(ctx, Phase::Mutating, "CREATE", obj, None)?;
    crate::defaults::prune_nulls(&mut obj);
    let (obj, more) = crate::strategy::of(&ctx.rt).create(ctx, obj, name)?;
    warnings.extend(more);
    let (obj, more) = webhook::run(ctx, Phase::Validating, "CREATE", obj, None)?;
    warnings.extend(more);
    Ok((obj, warnings))
}

/// Admission on update: the new object to store and warnings for the client.
///
/// # Errors
/// 422 when the new object is invalid or the caller may not make this change.
pub fn on_update(ctx: &Ctx, new: Value, old: &Value) -> Result<(Value, Vec<String>), ApiError> {
    let strategy = crate::strategy::of(&ctx.rt);
    let (mut new, mut warnings) = webhook::run(ctx, Phase::Mutating, "UPDATE", new, Some(old))?;
    crate::defaults::prune_nulls(&mut new);
    crate::defaults::on_update(&ctx.rt.group, &ctx.rt.plural, &mut new)?;
    strategy.update(ctx, &mut new, old)?;
    let (new, more) = webhook::run(ctx, Phase::Validating, "UPDATE", new, Some(old))?;
    warnings.extend(more);
    strategy.admit_update(ctx, &new, old)?;
    Ok((new, warnings))
}

/// Effects of a stored create or update (a CRD starts being served; a namespace gets its contents).
///
/// # Errors
/// 500 if a stored CRD cannot be served (it was validated before storing); store failures.
pub fn after_write(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    crate::strategy::of(&ctx.rt).after_write(ctx, obj)
}

/// Effects of a delete (a CRD's objects go with it).
///
/// # Errors
/// Store failures.
pub fn after_delete(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    crate::strategy::of(&ctx.rt).after_delete(ctx, obj)
}
