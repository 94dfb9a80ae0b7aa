//! Definitions named `v1alpha1.*` in upstream's OpenAPI document (generated; do not edit).

mod migration_policy;
pub use migration_policy::*;
mod backup;
pub use backup::*;
