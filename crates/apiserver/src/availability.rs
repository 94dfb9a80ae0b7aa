//! kube-aggregator's availability controller: every APIService gets an `Available` condition — `True`/`Local` for
//! groups served here, `True`/`Passed` for a backend that answers its discovery path, `False` with the reason
//! (`ServiceNotFound`, `MissingEndpoints`, `FailedDiscoveryCheck`) otherwise — rechecked every ten seconds, written
//! only when it changes (the transition time moves only when the status does).

use std::time::Duration;

use apiserver_store::ListOptions;
use serde_json::{Value, json};

use crate::context::Shared;

const EVERY: Duration = Duration::from_secs(10);

/// Starts the controller; it ends when `stop` is notified.
pub fn spawn(state: Shared, stop: std::sync::Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        loop {
            check_all(&state).await;
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    })
}

async fn check_all(state: &Shared) {
    let Ok(page) = state.store.list(
        &crate::object_store::Resource::of("apiregistration.k8s.io", "apiservices").prefix(),
        &ListOptions::default(),
    ) else {
        return;
    };
    for kv in page.items {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let s = |k: &str| {
            svc.pointer(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (group, version) = (s("/spec/group"), s("/spec/version"));
        let local = svc.pointer("/spec/service").is_none_or(Value::is_null);
        let (status, reason, message) = if local {
            (
                "True",
                "Local",
                "Local APIServices are always available".to_string(),
            )
        } else {
            match crate::aggregator::probe(state, &group, &version).await {
                Ok(()) => ("True", "Passed", "all checks passed".to_string()),
                Err((reason, message)) => ("False", reason, message),
            }
        };
        let old = svc
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
            .cloned();
        let same =
            |c: &Value| c["status"] == status && c["reason"] == reason && c["message"] == message.as_str();
        if old.as_ref().is_some_and(same) {
            continue;
        }
        let since = match &old {
            Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
            _ => json!(crate::objects::now_rfc3339()),
        };
        let mut new = svc.clone();
        new["status"] = json!({"conditions": [{"type": "Available", "status": status, "reason": reason,
            "message": message, "lastTransitionTime": since}]});
        let Ok(bytes) = crate::objects::to_bytes(&new) else {
            continue;
        };
        if let Err(e) = state.store.update(&kv.key, bytes, kv.mod_revision) {
            tracing::debug!(error = %e, "APIService status not written (it changed meanwhile)");
        }
    }
}
