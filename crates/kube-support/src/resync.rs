//! Level-triggered loops over whole sets of objects — a proxy's ruleset, every Service's endpoints, every node's
//! taints — where one pass recomputes everything from caches rather than reconciling one object: [`mirror`] keeps a
//! lean cache of a kind and flags each change, [`settle`] waits for a burst of changes to end (or a periodic
//! resync), then the loop makes its pass.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};

/// Mirrors `K` into a store (without managedFields, as every cache here); `dirty` is notified on every change.
pub fn mirror<K: crate::reconcile::Watched>(
    api: Api<K>,
    dirty: Arc<tokio::sync::Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let task = tokio::spawn(async move {
        let stream = reflector::reflector(writer, crate::lean_watch(api, watcher::Config::default()))
            .touched_objects();
        futures_util::pin_mut!(stream);
        while stream.next().await.is_some() {
            dirty.notify_one();
        }
    });
    (reader, task)
}

/// Waits for a change (coalescing bursts: 100 ms after it), or a periodic resync every 30 s.
pub async fn settle(dirty: &tokio::sync::Notify) {
    let _ = tokio::time::timeout(Duration::from_secs(30), dirty.notified()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}
