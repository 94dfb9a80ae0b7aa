//! Running a reconciler the one way every loop here runs: a span per reconcile naming the controller and the
//! object, one error policy per kind of failure (a conflict is read again at once, a transient failure waits two
//! seconds, a permanent one is reported as a Warning event on the object and tried again only slowly), and the
//! work-queue metrics upstream exposes (`kubevirt_workqueue_*`, by controller name), ready for a metrics endpoint.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use kube::runtime::controller::{Action, Controller};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tracing::Instrument as _;

/// How a failed reconcile is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Someone else wrote the object meanwhile: read it again at once (well, in 100 ms).
    Conflict,
    /// A refused or failed call, an object that cannot be acted on yet: again in two seconds.
    Later,
    /// The object itself is wrong and only a change to it helps: a Warning event, and again in five minutes.
    Permanent,
}

impl Retry {
    /// What a kube-rs call's failure calls for: 409 is a conflict, the rest waits.
    #[must_use]
    pub fn of(e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 409 => Self::Conflict,
            _ => Self::Later,
        }
    }

    /// The requeue.
    #[must_use]
    pub fn action(self) -> Action {
        Action::requeue(match self {
            Self::Conflict => Duration::from_millis(100),
            Self::Later => Duration::from_secs(2),
            Self::Permanent => Duration::from_secs(300),
        })
    }
}

/// A reconciler's error: the API failure inside it, if any, decides how it is retried, unless it says it is
/// permanent.
pub trait ReconcileError: std::fmt::Display {
    /// The kube-rs failure this error carries.
    fn kube_error(&self) -> Option<&kube::Error>;

    /// The reason of the Warning event a permanent failure is reported with; `None` (the default) for a failure
    /// that may go away by itself.
    fn permanent(&self) -> Option<&'static str> {
        None
    }

    /// How this failure is tried again.
    fn retry(&self) -> Retry {
        if self.permanent().is_some() {
            return Retry::Permanent;
        }
        self.kube_error().map_or(Retry::Later, Retry::of)
    }
}

/// The one error a reconciler that only calls the API can have.
#[derive(Debug, thiserror::Error)]
#[error("api: {0}")]
pub struct ApiError(#[from] pub kube::Error);

impl ReconcileError for ApiError {
    fn kube_error(&self) -> Option<&kube::Error> {
        Some(&self.0)
    }
}

fn warn<K: kube::Resource<DynamicType = ()>>(obj: &K, err: &dyn std::fmt::Display, retry: Retry) {
    let meta = obj.meta();
    tracing::warn!(
        kind = %K::kind(&()),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        error = %err,
        ?retry,
        "reconcile failed"
    );
}

/// The label every work-queue metric carries: the controller's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `virt-controller-vm`, `virt-handler-vm`, …
    pub name: String,
}

/// Reconcile metrics in upstream's names (`kubevirt_workqueue_*`).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciles started.
    pub adds: Family<QueueLabels, Counter>,
    /// Reconciles that failed and were queued again.
    pub retries: Family<QueueLabels, Counter>,
    /// How long reconciles took, in seconds.
    pub work_duration: Family<QueueLabels, Histogram>,
}

impl Metrics {
    /// Adds the metrics to `registry` (a metrics endpoint's).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let kv = registry.sub_registry_with_prefix("kubevirt_workqueue");
        kv.register("adds", "Reconciles started, by controller", self.adds.clone());
        kv.register(
            "retries",
            "Reconciles that failed and were queued again",
            self.retries.clone(),
        );
        kv.register(
            "work_duration_seconds",
            "How long reconciles took",
            self.work_duration.clone(),
        );
    }
}

/// The process's reconcile metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        adds: Family::default(),
        retries: Family::default(),
        work_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 4.0, 10))),
    })
}

/// What every watched and cached kind here is: kube-rs's bounds for a reflector's and a controller's objects.
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A controller over `api` whose cache is filled by a [`crate::lean_watch`] (no `managedFields`).
pub fn lean_controller<K: Watched>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
) -> Controller<K> {
    use kube::runtime::WatchStreamExt as _;
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(writer, crate::lean_watch(api, config)).applied_objects();
    Controller::for_stream(stream, reader)
}

/// Runs `controller` with `reconcile` until its stream ends, as every loop here runs (see the module). `name` is the
/// controller's (`virt-controller-vm`): it names the spans, the metrics and the events' reporter.
pub async fn run_controller<K: Watched, C, E, F, Fut>(
    name: &'static str,
    client: kube::Client,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<C>,
) where
    C: Send + Sync + 'static,
    E: ReconcileError + std::error::Error + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    let labels = QueueLabels { name: name.into() };
    let events = crate::Events::new(client, name);
    let reconcile = Arc::new(reconcile);
    let run = {
        let labels = labels.clone();
        move |obj: Arc<K>, ctx: Arc<C>| {
            let meta = obj.meta();
            let span = tracing::info_span!(
                "reconcile",
                controller = name,
                object = %format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
            );
            let (labels, started) = (labels.clone(), Instant::now());
            metrics().adds.get_or_create(&labels).inc();
            let fut = reconcile(obj, ctx);
            async move {
                let result = fut.await;
                let took = started.elapsed().as_secs_f64();
                metrics().work_duration.get_or_create(&labels).observe(took);
                result
            }
            .instrument(span)
        }
    };
    let policy = move |obj: Arc<K>, err: &E, _ctx: Arc<C>| {
        let retry = err.retry();
        warn(&*obj, err, retry);
        metrics().retries.get_or_create(&labels).inc();
        if let (Retry::Permanent, Some(reason)) = (retry, err.permanent()) {
            events.warning(&*obj, reason, err.to_string());
        }
        retry.action()
    };
    // What kube-rs reports besides reconcile results: a trigger for an object no longer in the cache (normal after a
    // deletion, said at info so a post-mortem shows it) and the runner's own failures.
    controller
        .run(run, policy, ctx)
        .for_each(|r| async move {
            match r {
                Err(kube::runtime::controller::Error::ObjectNotFound(o)) => {
                    tracing::info!(controller = name, object = %o, "triggered for an object not in the cache");
                }
                // Reconcile failures were told by the error policy already.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) | Ok(_) => {}
                Err(e) => tracing::warn!(controller = name, error = %e, "controller"),
            }
        })
        .await;
}
