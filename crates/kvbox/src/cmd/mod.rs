//! One module per `kvbox` subcommand.

pub(crate) mod admit;
pub(crate) mod agent;
pub(crate) mod bench_api;
pub(crate) mod bench_etcd;
pub(crate) mod crds;
pub(crate) mod images;
pub(crate) mod kubeconfig;
pub(crate) mod server;
