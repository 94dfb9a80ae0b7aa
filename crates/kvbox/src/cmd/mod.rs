//! One module per `kvbox` subcommand.

pub(crate) mod admit;
pub(crate) mod bench_api;
pub(crate) mod crds;
pub(crate) mod server;
