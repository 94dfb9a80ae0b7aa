//! All of virt-controller's loops together — VMI, VM, replica set, migration, DataVolume, node heartbeat watch — for
//! one leader.

use std::sync::Arc;
use std::time::Duration;

/// What the loops need beyond the client.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The compute image launcher pods name.
    pub launcher_image: String,
    /// The image importer pods run.
    pub importer_image: String,
    /// The image upload server pods run.
    pub upload_image: String,
    /// How stale a node's heartbeat may get before its VMIs fail.
    pub node_heartbeat_timeout: Duration,
}

/// Runs every loop until the task is aborted (leadership lost or shutdown).
pub async fn run(client: kube::Client, settings: Settings) {
    let stop = Arc::new(tokio::sync::Notify::new());
    let vmi = crate::vmi::run(client.clone(), settings.launcher_image.clone());
    let rs = crate::replicaset::run(client.clone());
    let vm = crate::vm::run(client.clone());
    let migrations = crate::migration::run(client.clone());
    let cdi = crate::cdi::run(
        client.clone(),
        settings.importer_image.clone(),
        settings.upload_image.clone(),
    );
    let nodes = crate::node::run(client, settings.node_heartbeat_timeout, stop);
    tokio::join!(vmi, rs, vm, migrations, cdi, nodes);
}
