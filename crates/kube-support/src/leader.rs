//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it, so several replicas
//! of a controller (virt-controller's) can run and exactly one reconciles: acquire when the lease is free or expired (optimistic
//! concurrency on resourceVersion settles races), renew every retry period, and count leadership as lost when a renewal
//! has not succeeded within the renew deadline. Releasing on shutdown lets a standby take over at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;

/// Election settings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// Who we are (unique per replica).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up.
    pub renew_deadline: Duration,
    /// How often to try.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// An election on Lease `namespace/name` for `identity`, with client-go's proportions (upstream virt-controller's
    /// 15 s lease, 10 s renew deadline, 2 s retry when `lease_duration` is 15 s).
    #[must_use]
    pub fn new(namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        let d = lease_duration.max(Duration::from_secs(2));
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: d,
            renew_deadline: d * 2 / 3,
            retry_period: (d / 7).max(Duration::from_millis(200)),
        }
    }
}

/// Held leadership: `lost()` resolves when it is gone.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    client: kube::Client,
    cfg: LeaderConfig,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Whether the lease is ours to take: free, ours, or not renewed within its duration.
fn takeable(lease: &Lease, me: &str, now: jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    renewed.is_none_or(|r| now.duration_since(r) > jiff::SignedDuration::from_secs(duration))
}

/// One attempt to take or renew the lease. `Ok(true)`: we hold it now.
async fn try_acquire(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<bool, kube::Error> {
    let secs = i32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(15);
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                "acquireTime": now_micro(), "renewTime": now_micro(), "leaseTransitions": 0},
        }))
        .map_err(kube::Error::SerdeError)?;
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    if !takeable(&lease, &cfg.identity, jiff::Timestamp::now()) {
        return Ok(false);
    }
    let mut next = lease.clone();
    let spec = next.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !ours {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now_micro());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(secs);
    spec.renew_time = Some(now_micro());
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica leads, then keeps renewing in the background.
pub async fn acquire(client: kube::Client, cfg: LeaderConfig) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    loop {
        match try_acquire(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader");
    let (tx, lost) = watch::channel(false);
    let renew = {
        let (api, cfg) = (api.clone(), cfg.clone());
        async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(cfg.retry_period).await;
                match try_acquire(&api, &cfg).await {
                    Ok(true) => last = Instant::now(),
                    Ok(false) => {
                        tracing::error!("another replica took the lease");
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing the lease"),
                }
                if last.elapsed() > cfg.renew_deadline {
                    tracing::error!("could not renew the lease within the deadline");
                    break;
                }
            }
            let _ = tx.send(true);
        }
    };
    Leadership {
        lost,
        task: tokio::spawn(renew),
        client,
        cfg,
    }
}

impl Leadership {
    /// Resolves when leadership is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Gives the lease up (a standby takes over without waiting for it to expire).
    pub async fn release(self) {
        self.task.abort();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        if let Ok(Some(mut lease)) = api.get_opt(&self.cfg.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str())
        {
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            let _ = api.replace(&self.cfg.name, &PostParams::default(), &lease).await;
        }
    }
}

/// Runs `work` whenever this replica leads: acquire, run until leadership is lost, stop it, and start over; returns
/// when `stop` is notified (releasing the lease).
pub async fn run_when_leader<F, Fut>(
    client: kube::Client,
    cfg: LeaderConfig,
    stop: Arc<tokio::sync::Notify>,
    work: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Registered once, so a notification between the selects below is not missed.
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    loop {
        let leadership = tokio::select! {
            l = acquire(client.clone(), cfg.clone()) => l,
            () = &mut stopped => return,
        };
        let task = tokio::spawn(work());
        tokio::select! {
            () = leadership.lost() => {
                tracing::error!("lost leadership: stopping the controllers");
                task.abort();
            }
            () = &mut stopped => {
                task.abort();
                leadership.release().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_lease_is_takeable_when_free_ours_or_expired() {
        let lease = |holder: &str, renewed: &str| -> Lease {
            serde_json::from_value(
                json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": holder,
                "leaseDurationSeconds": 15, "renewTime": renewed}}),
            )
            .unwrap()
        };
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert!(takeable(&lease("", "2026-01-01T00:00:59.000000Z"), "a", now));
        assert!(takeable(&lease("a", "2026-01-01T00:00:59.000000Z"), "a", now));
        assert!(!takeable(&lease("b", "2026-01-01T00:00:59.000000Z"), "a", now));
        assert!(takeable(&lease("b", "2026-01-01T00:00:30.000000Z"), "a", now));
    }
}
