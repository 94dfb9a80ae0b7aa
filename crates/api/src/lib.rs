//! kubevirt.io API types, defaults, validation and CRD manifests — pure data and functions, no I/O.

#[allow(missing_docs, clippy::all)]
pub mod generated;
pub use generated::{v1, v1alpha1, v1beta1};
pub mod cdi;
mod error;
mod kinds;
pub mod object;
pub use error::DecodeError;
pub use object::Object;
pub mod admission;
pub mod config;
pub mod crd;
pub mod defaults;
pub mod expand;
pub mod infer;
pub mod nad;
pub mod network;
pub mod quantity;
pub mod selector;
pub mod state;
pub mod validate;
