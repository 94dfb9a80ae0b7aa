//! The admission webhooks registered in the store, by phase, cached until a configuration changes.

use std::sync::Arc;

use serde_json::Value;

use crate::status::ApiError;

/// Which configurations to consult.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// MutatingWebhookConfiguration.
    Mutating,
    /// ValidatingWebhookConfiguration.
    Validating,
}

impl Phase {
    pub(crate) fn prefix(self) -> String {
        let plural = match self {
            Self::Mutating => "mutatingwebhookconfigurations",
            Self::Validating => "validatingwebhookconfigurations",
        };
        crate::object_store::Resource::of("admissionregistration.k8s.io", plural).prefix()
    }
}

/// The registered webhooks, read once and re-read only when a configuration changes (a store watch on both
/// prefixes tells), so a write without webhooks costs no store read.
#[derive(Debug, Default)]
pub struct WebhookCache {
    inner: std::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    changes: [apiserver_store::Watcher; 2],
    hooks: [Arc<Vec<Value>>; 2],
}

impl WebhookCache {
    fn load(store: &apiserver_store::Store) -> Result<Cached, ApiError> {
        let revision = store.revision()?;
        let opts = apiserver_store::ListOptions {
            revision: Some(revision),
            ..Default::default()
        };
        let mut hooks: [Arc<Vec<Value>>; 2] = Default::default();
        for (i, phase) in [Phase::Mutating, Phase::Validating].into_iter().enumerate() {
            let mut out = Vec::new();
            for kv in store.list(&phase.prefix(), &opts)?.items {
                let Ok(cfg) = serde_json::from_slice::<Value>(&kv.value) else {
                    continue;
                };
                out.extend(
                    cfg.get("webhooks")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            hooks[i] = Arc::new(out);
        }
        Ok(Cached {
            changes: [
                store.watch(&Phase::Mutating.prefix(), revision)?,
                store.watch(&Phase::Validating.prefix(), revision)?,
            ],
            hooks,
        })
    }

    /// Every webhook of `phase`, configurations in name order.
    pub(crate) fn get(
        &self,
        store: &apiserver_store::Store,
        phase: Phase,
    ) -> Result<Arc<Vec<Value>>, ApiError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| ApiError::internal("webhook cache lock poisoned"))?;
        let stale = match guard.as_mut() {
            None => true,
            Some(c) => {
                let mut changed = false;
                for w in &mut c.changes {
                    while w.try_recv().is_some() {
                        changed = true;
                    }
                }
                changed
            }
        };
        if stale {
            *guard = Some(Self::load(store)?);
        }
        let i = usize::from(phase == Phase::Validating);
        Ok(guard.as_ref().map(|c| c.hooks[i].clone()).unwrap_or_default())
    }
}
