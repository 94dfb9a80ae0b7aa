//! Services: cluster IPs (and node ports) are allocated on create and kept, or checked, on update — see
//! [`crate::services`] for the allocation itself.

use serde_json::Value;

use super::Strategy;
use crate::context::Ctx;
use crate::object_store::Resource;
use crate::objects::meta_str;
use crate::status::ApiError;

/// The services strategy.
pub(crate) struct Services;

const SERVICES: Resource<'static> = Resource::core("services");

impl Strategy for Services {
    fn prepare_create(&self, ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
        let taken = crate::services::Taken::from_services(&SERVICES.list(&ctx.state.store)?, "");
        crate::services::prepare(obj, None, ctx.state.service_range, &taken)
    }

    fn update(&self, ctx: &Ctx, new: &mut Value, old: &Value) -> Result<(), ApiError> {
        let key = format!(
            "{}/{}",
            meta_str(new, "namespace").unwrap_or_default(),
            meta_str(new, "name").unwrap_or_default()
        );
        let taken = crate::services::Taken::from_services(&SERVICES.list(&ctx.state.store)?, &key);
        crate::services::prepare(new, Some(old), ctx.state.service_range, &taken)
    }
}
