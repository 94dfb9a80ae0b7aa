//! The embedded Kubernetes-compatible API server of box mode: discovery, CRUD, list/watch, patch, CRDs, tables and
//! Status errors over the revisioned store of `apiserver-store`.
//!
//! Layers (kine's, with Kubernetes' strategies): axum router ([`app::router`]) → request parsing ([`request`]) →
//! verb handlers ([`crud`], [`patch`], [`watch`]) → per-resource admission ([`admit`]) → [`apiserver_store::Store`].

pub mod admit;
pub mod aggregator;
pub mod app;
pub mod apply;
pub mod authz;
pub mod availability;
pub mod context;
pub mod crud;
pub mod defaults;
pub mod delete;
pub mod discovery;
pub mod fields;
pub mod gc;
pub mod immutable;
pub mod metrics;
pub mod object_store;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod patch_formats;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod satoken;
pub mod scale;
pub mod selectors;
pub mod serviceaccount;
pub mod services;
pub mod status;
pub(crate) mod strategy;
pub mod system;
pub mod table;
pub mod tls;
pub mod upstreams;
pub mod watch;
pub mod watch_cache;
pub mod webhook;
pub mod webhook_cache;

pub use app::router;
pub use context::{ApiState, Identity, Shared};
pub mod server;
pub mod server_error;
