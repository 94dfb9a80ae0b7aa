//! Garbage collection by `ownerReferences`, as kube-controller-manager does it, in a task of its own.
//!
//! 1. It watches every key. When an object is deleted, its dependents (objects naming its uid in
//!    `ownerReferences`) are deleted too (background propagation); dependents with finalizers get a
//!    `deletionTimestamp` and go when their finalizers do.
//! 2. An owner marked for deletion with the `foregroundDeletion` finalizer first has its dependents deleted; once none
//!    is left, the finalizer is removed and the owner goes.
//! 3. An owner with the `orphan` finalizer has its uid stripped from its dependents' `ownerReferences`, then the
//!    finalizer is removed.
//!
//! 4. A terminating namespace has everything in it deleted (finalizers honoured); once it is empty it goes.
//!
//! A namespaced owner's dependents live in its namespace; a cluster-scoped owner's dependents may live anywhere.

use std::collections::BTreeSet;

use apiserver_store::{EventKind, ListOptions, Store, StoreError};
use serde_json::{Value, json};

use crate::context::Shared;
use crate::objects::{finalizers, now_rfc3339};

/// Starts the collector as a task; it stops when `stop` is notified or the store's watch ends.
///
/// The watch is registered before this returns, so no deletion after the call is missed; objects whose owners
/// vanished earlier (while no collector ran) are swept first.
pub fn spawn(state: Shared, stop: std::sync::Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<()> {
    let from = state.store.revision().unwrap_or(0);
    let watch = state.store.watch("/registry/", from);
    tokio::spawn(async move {
        let Ok(mut watch) = watch else { return };
        // Registered before any work, so a stop that comes meanwhile is not missed.
        let stopped = stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if let Err(e) = sweep(&state) {
            tracing::warn!(error = %e, "garbage collection sweep failed");
        }
        loop {
            tokio::select! {
                ev = watch.recv() => {
                    let Some(ev) = ev else { return };
                    if let Err(e) = handle(&state, &ev) {
                        tracing::warn!(key = %ev.kv.key, error = %e, "garbage collection step failed");
                    }
                }
                () = &mut stopped => return,
            }
        }
    })
}

/// Deletes every object all of whose owners are gone.
fn sweep(state: &Shared) -> Result<(), StoreError> {
    let mut uids = BTreeSet::new();
    let mut owned = Vec::new();
    let mut prefixes = BTreeSet::new();
    state.registry.for_each(|t| {
        prefixes.insert(t.prefix());
    });
    for prefix in prefixes {
        for kv in state.store.list(&prefix, &ListOptions::default())?.items {
            let Some(obj) = decode(&kv.value) else { continue };
            if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
                uids.insert(uid.to_string());
            }
            if obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty())
            {
                owned.push((kv.key, obj));
            }
        }
    }
    for (key, obj) in owned {
        let refs = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let dangling = refs.iter().all(|r| {
            r.get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| !uids.contains(u))
        });
        if dangling {
            delete_dependent(&state.store, &key, &obj)?;
        }
    }
    Ok(())
}

fn decode(v: &[u8]) -> Option<Value> {
    serde_json::from_slice(v).ok()
}

const NAMESPACES: crate::object_store::Resource<'static> = crate::object_store::Resource::core("namespaces");
/// `NAMESPACES.prefix()`, spelled out once: every stored write passes the check in [`handle`].
const NAMESPACES_PREFIX: &str = "/registry/core/namespaces/";

/// Deletes what is left in a terminating namespace; removes the namespace once nothing is.
fn drain_namespace(state: &Shared, name: &str) -> Result<(), StoreError> {
    let key = NAMESPACES.key(None, name);
    let Some(ns) = state.store.get(&key)?.and_then(|kv| decode(&kv.value)) else {
        return Ok(());
    };
    if ns.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let mut left = 0;
    for prefix in prefixes(state, Some(name)) {
        for kv in state.store.list(&prefix, &ListOptions::default())?.items {
            left += 1;
            if let Some(obj) = decode(&kv.value) {
                delete_dependent(&state.store, &kv.key, &obj)?;
            }
        }
    }
    if left == 0 && finalizers(&ns).is_empty() {
        match state.store.delete(&key, None) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn handle(state: &Shared, ev: &apiserver_store::Event) -> Result<(), StoreError> {
    let Some(obj) = decode(&ev.kv.value) else {
        return Ok(());
    };
    if let Some(name) = ev.kv.key.strip_prefix(NAMESPACES_PREFIX) {
        if ev.kind != EventKind::Deleted {
            drain_namespace(state, name)?;
        }
        return Ok(());
    }
    if let (EventKind::Deleted, Some(ns)) = (
        ev.kind,
        obj.pointer("/metadata/namespace").and_then(Value::as_str),
    ) {
        drain_namespace(state, ns)?;
    }
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(String::from);
    match ev.kind {
        EventKind::Deleted => {
            for (key, dep) in dependents(state, &uid, ns.as_deref())? {
                delete_dependent(&state.store, &key, &dep)?;
            }
            // Owners waiting in the foreground for this dependent may now be done.
            for owner in obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(owner_uid) = owner.get("uid").and_then(Value::as_str)
                    && let Some((key, o)) = find_by_uid(state, owner_uid, ns.as_deref())?
                {
                    settle_foreground(state, &key, &o)?;
                }
            }
        }
        _ if obj.pointer("/metadata/deletionTimestamp").is_some() => {
            let fins = finalizers(&obj);
            if fins.iter().any(|f| f == "orphan") {
                for (key, dep) in dependents(state, &uid, ns.as_deref())? {
                    strip_owner(&state.store, &key, &dep, &uid)?;
                }
                remove_finalizer(&state.store, &ev.kv.key, "orphan")?;
            } else if fins.iter().any(|f| f == "foregroundDeletion") {
                for (key, dep) in dependents(state, &uid, ns.as_deref())? {
                    delete_dependent(&state.store, &key, &dep)?;
                }
                settle_foreground(state, &ev.kv.key, &obj)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The storage prefixes an owner's dependents can live under.
fn prefixes(state: &Shared, ns: Option<&str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    state.registry.for_each(|rt| {
        match (ns, rt.namespaced) {
            (Some(n), true) => out.insert(rt.prefix_in(Some(n))),
            (Some(_), false) => false,
            (None, _) => out.insert(rt.prefix()),
        };
    });
    out.into_iter().collect()
}

fn dependents(state: &Shared, uid: &str, ns: Option<&str>) -> Result<Vec<(String, Value)>, StoreError> {
    let mut out = Vec::new();
    if uid.is_empty() {
        return Ok(out);
    }
    for prefix in prefixes(state, ns) {
        for kv in state.store.list(&prefix, &ListOptions::default())?.items {
            let Some(obj) = decode(&kv.value) else { continue };
            let owned = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                });
            if owned {
                out.push((kv.key, obj));
            }
        }
    }
    Ok(out)
}

fn find_by_uid(state: &Shared, uid: &str, ns: Option<&str>) -> Result<Option<(String, Value)>, StoreError> {
    let mut prefixes = prefixes(state, ns);
    if ns.is_some() {
        prefixes.extend(prefixes_cluster(state));
    }
    for prefix in prefixes {
        for kv in state.store.list(&prefix, &ListOptions::default())?.items {
            if let Some(obj) = decode(&kv.value)
                && obj.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid)
            {
                return Ok(Some((kv.key, obj)));
            }
        }
    }
    Ok(None)
}

fn prefixes_cluster(state: &Shared) -> Vec<String> {
    let mut out = BTreeSet::new();
    state.registry.for_each(|t| {
        if !t.namespaced {
            out.insert(t.prefix());
        }
    });
    out.into_iter().collect()
}

fn update(store: &Store, key: &str, obj: &Value) -> Result<(), StoreError> {
    let Some(cur) = store.get(key)? else { return Ok(()) };
    let bytes = crate::objects::to_bytes(obj).map_err(|e| StoreError::Backend(e.to_string()))?;
    match store.update(key, bytes, cur.mod_revision) {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn delete_dependent(store: &Store, key: &str, dep: &Value) -> Result<(), StoreError> {
    if finalizers(dep).is_empty() {
        return match store.delete(key, None) {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        };
    }
    if dep.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    let mut d = dep.clone();
    d["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    d["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    update(store, key, &d)
}

fn strip_owner(store: &Store, key: &str, dep: &Value, uid: &str) -> Result<(), StoreError> {
    let mut d = dep.clone();
    if let Some(refs) = d
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
    }
    update(store, key, &d)
}

fn remove_finalizer(store: &Store, key: &str, finalizer: &str) -> Result<(), StoreError> {
    let Some(cur) = store.get(key)? else { return Ok(()) };
    let Some(mut obj) = decode(&cur.value) else {
        return Ok(());
    };
    let left: Vec<String> = finalizers(&obj).into_iter().filter(|f| f != finalizer).collect();
    if left.is_empty() && obj.pointer("/metadata/deletionTimestamp").is_some() {
        return match store.delete(key, Some(cur.mod_revision)) {
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        };
    }
    obj["metadata"]["finalizers"] = json!(left);
    update(store, key, &obj)
}

/// Removes `foregroundDeletion` from an owner once none of its dependents is left.
fn settle_foreground(state: &Shared, key: &str, owner: &Value) -> Result<(), StoreError> {
    if owner.pointer("/metadata/deletionTimestamp").is_none()
        || !finalizers(owner).iter().any(|f| f == "foregroundDeletion")
    {
        return Ok(());
    }
    let uid = owner
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ns = owner.pointer("/metadata/namespace").and_then(Value::as_str);
    if dependents(state, uid, ns)?.is_empty() {
        remove_finalizer(&state.store, key, "foregroundDeletion")?;
    }
    Ok(())
}
