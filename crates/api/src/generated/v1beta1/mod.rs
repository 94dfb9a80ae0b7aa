//! Definitions named `v1beta1.*` in upstream's OpenAPI document (generated; do not edit).

mod instancetype;
pub use instancetype::*;
mod pool;
pub use pool::*;
mod cdi;
pub use cdi::*;
mod snapshot;
pub use snapshot::*;
mod clone;
pub use clone::*;
