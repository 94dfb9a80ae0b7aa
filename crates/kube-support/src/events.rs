//! Events a loop tells about what it did (`kubectl describe` shows them), written as client-go's recorder writes
//! them: core/v1 Events with `source.component` (and `reportingComponent`) set to the component, one Event per
//! distinct (object, type, reason, message) whose `count` and `lastTimestamp` grow on repeats, a per-object spam
//! filter (a burst of 25, then one per 5 minutes) and a bounded queue worked off the reconcile path, so a slow or
//! refused event never holds up the work it describes and an event storm is dropped rather than queued.
//!
//! Written by hand: kube-rs's `Recorder` writes events.k8s.io Events and folds every event with the same reason into
//! one series, whatever its message, so "stopped VMI a" then "stopped VMI b" would show only the first.
//! Not done (client-go does it): folding more than 10 similar events that differ only in message into a
//! "(combined from similar events)" one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

/// client-go's spam filter: a burst of this many events per object…
const BURST: f64 = 25.0;
/// …then one every this long.
const REFILL: Duration = Duration::from_secs(300);
/// client-go's broadcaster queue: events beyond it are dropped.
const QUEUE: usize = 1000;
/// How many distinct events are remembered for counting repeats (client-go's LRU holds 4096).
const REMEMBERED: usize = 4096;

/// One component's events (`component` is upstream's name, e.g. `virtualmachine-controller`).
#[derive(Clone)]
pub struct Events {
    component: String,
    queue: mpsc::Sender<Event>,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

/// A token bucket per object.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token if there is one, refilling for the time since the last take.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Events {
    /// Events reported as `component`, written by a task of their own (call within a Tokio runtime).
    #[must_use]
    pub fn new(client: kube::Client, component: &str) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(client, rx));
        Self {
            component: component.to_string(),
            queue,
            buckets: Arc::default(),
        }
    }

    /// A Normal event about `obj`.
    pub fn normal<K: kube::Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(obj, "Normal", reason, message);
    }

    /// A Warning event about `obj`.
    pub fn warning<K: kube::Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(obj, "Warning", reason, message);
    }

    fn record<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let reference = obj.object_ref(&());
        let object = format!(
            "{}/{}/{}/{}",
            reference.kind.as_deref().unwrap_or_default(),
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default(),
            reference.uid.as_deref().unwrap_or_default()
        );
        let allowed = match self.buckets.lock() {
            Ok(mut b) => b
                .entry(object)
                .or_insert(Bucket {
                    tokens: BURST,
                    at: Instant::now(),
                })
                .take(Instant::now()),
            Err(_) => true,
        };
        if !allowed {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        }
        let event = event(&self.component, reference, type_, reason, message);
        if self.queue.try_send(event).is_err() {
            tracing::debug!(reason, "event queue full: event dropped");
        }
    }
}

/// A new core/v1 Event as client-go makes one (`<object>.<hex nanoseconds>`, in the object's namespace).
fn event(component: &str, reference: ObjectReference, type_: &str, reason: &str, message: String) -> Event {
    let now = jiff::Timestamp::now();
    let nanos = u128::try_from(now.as_nanosecond()).unwrap_or_default();
    let name = format!("{}.{nanos:x}", reference.name.as_deref().unwrap_or_default());
    let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: reference,
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(String::new()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}

/// What makes two events the same one, counted rather than repeated.
fn key(e: &Event) -> String {
    let o = &e.involved_object;
    [
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
        o.api_version.as_deref(),
        e.type_.as_deref(),
        e.reason.as_deref(),
        e.message.as_deref(),
    ]
    .map(Option::unwrap_or_default)
    .join("\u{0}")
}

/// Writes queued events in order: a new one is created, a repeat bumps the first one's count.
async fn write_events(client: kube::Client, mut rx: mpsc::Receiver<Event>) {
    let mut seen: HashMap<String, (String, i32)> = HashMap::new();
    while let Some(event) = rx.recv().await {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let key = key(&event);
        if let Some((name, count)) = seen.get(&key).cloned() {
            let patch = json!({"count": count + 1, "lastTimestamp": event.last_timestamp});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    seen.insert(key, (name, count + 1));
                    continue;
                }
                Err(e) => tracing::debug!(error = %e, "counting a repeated event; writing it anew"),
            }
        }
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let name = event.metadata.name.clone().unwrap_or_default();
                seen.insert(key, (name, 1));
            }
            Err(e) => tracing::debug!(error = %e, reason = ?event.reason, "writing an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_per_five_minutes() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: BURST,
            at: t0,
        };
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 25);
        assert!(!b.take(t0 + Duration::from_secs(299)));
        assert!(b.take(t0 + Duration::from_secs(300)));
        assert!(!b.take(t0 + Duration::from_secs(301)));
    }

    #[test]
    fn events_differing_only_in_message_are_distinct_and_named_like_client_gos() {
        let r = ObjectReference {
            kind: Some("VirtualMachine".into()),
            namespace: Some("ns".into()),
            name: Some("vm".into()),
            uid: Some("u".into()),
            ..Default::default()
        };
        let a = event("c", r.clone(), "Normal", "SuccessfulDelete", "a".into());
        let b = event("c", r.clone(), "Normal", "SuccessfulDelete", "b".into());
        let a2 = event("c", r, "Normal", "SuccessfulDelete", "a".into());
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a), key(&a2));
        let name = a.metadata.name.unwrap_or_default();
        let (object, suffix) = name.split_once('.').unwrap_or_default();
        assert_eq!(object, "vm");
        assert!(u128::from_str_radix(suffix, 16).is_ok(), "{name}");
        assert_eq!(a.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(a.source.and_then(|s| s.component).as_deref(), Some("c"));
    }
}
