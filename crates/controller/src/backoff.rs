//! A VM's crash-loop backoff (`status.startFailure`), as upstream: a VMI that fails before it ever ran counts as a
//! start failure; the next VMI waits `10 s · count²` plus up to half that again at random, capped at 300 s. A VMI
//! that reaches Running clears the count.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance, VirtualMachineStartFailure};

/// The longest wait between starts.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// The wait after `count` consecutive start failures, with `jitter` in [0, 1).
#[must_use]
pub fn delay(count: u32, jitter: f64) -> Duration {
    let base = (MAX_DELAY.as_secs() / 30).max(10) * u64::from(count).pow(2);
    let extra = (base as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64;
    Duration::from_secs((base + extra).min(MAX_DELAY.as_secs()))
}

fn reached_running(vmi: &VirtualMachineInstance) -> bool {
    vmi.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            || s.phase_transition_timestamps
                .iter()
                .flatten()
                .any(|t| t.phase.as_deref() == Some("Running"))
    })
}

/// What the VM's `startFailure` becomes given its current VMI: `None` = unchanged, `Some(None)` = cleared,
/// `Some(Some(f))` = a new failure counted.
#[must_use]
pub fn next(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    now: jiff::Timestamp,
    jitter: f64,
) -> Option<Option<VirtualMachineStartFailure>> {
    let prev = vm.status.as_ref().and_then(|s| s.start_failure.clone());
    let vmi = vmi?;
    let phase = vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if phase == "Running" {
        return prev.is_some().then_some(None);
    }
    if phase != "Failed" || reached_running(vmi) {
        return None;
    }
    let uid = vmi.metadata.uid.clone();
    if prev.as_ref().is_some_and(|p| p.last_failed_vmiuid == uid) {
        return None;
    }
    let count = prev
        .and_then(|p| p.consecutive_fail_count)
        .unwrap_or(0)
        .saturating_add(1);
    let wait = delay(u32::try_from(count).unwrap_or(u32::MAX), jitter);
    let retry = now
        .checked_add(jiff::SignedDuration::from_secs(
            i64::try_from(wait.as_secs()).unwrap_or(300),
        ))
        .unwrap_or(now);
    Some(Some(VirtualMachineStartFailure {
        consecutive_fail_count: Some(count),
        last_failed_vmiuid: uid,
        retry_after_timestamp: Some(Time(
            jiff::Timestamp::from_second(retry.as_second()).unwrap_or(retry),
        )),
    }))
}

/// How long until the VM may start again (`None`: it may now).
#[must_use]
pub fn waiting(failure: Option<&VirtualMachineStartFailure>, now: jiff::Timestamp) -> Option<Duration> {
    let retry = failure?.retry_after_timestamp.as_ref()?.0;
    let left = now.duration_until(retry);
    left.is_positive().then(|| left.unsigned_abs())
}

/// A jitter in [0, 1) from a random uuid (no RNG dependency needed for this).
#[must_use]
pub fn jitter() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b & 0xffff) as f64 / 65536.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn the_delay_grows_quadratically_to_five_minutes() {
        assert_eq!(delay(1, 0.0), Duration::from_secs(10));
        assert_eq!(delay(2, 0.0), Duration::from_secs(40));
        assert_eq!(delay(3, 0.0), Duration::from_secs(90));
        assert_eq!(delay(2, 0.99), Duration::from_secs(59));
        assert_eq!(delay(6, 0.0), MAX_DELAY);
    }

    #[test]
    fn failures_before_running_count_and_running_clears_them() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let vm: VirtualMachine =
            serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": {"template": {}}})).unwrap();
        let failed: VirtualMachineInstance =
            serde_json::from_value(json!({"metadata": {"name": "v", "uid": "u1"},
            "spec": {"domain": {"devices": {}}}, "status": {"phase": "Failed"}}))
            .unwrap();
        let f = next(&vm, Some(&failed), now, 0.0).unwrap().unwrap();
        assert_eq!(f.consecutive_fail_count, Some(1));
        assert_eq!(waiting(Some(&f), now), Some(Duration::from_secs(10)));
        let mut vm2 = vm.clone();
        vm2.status = Some(serde_json::from_value(json!({"startFailure": f})).unwrap());
        assert_eq!(
            next(&vm2, Some(&failed), now, 0.0),
            None,
            "the same VMI counts once"
        );
        let ran: VirtualMachineInstance = serde_json::from_value(json!({"metadata": {"name": "v", "uid": "u2"},
            "spec": {"domain": {"devices": {}}}, "status": {"phase": "Failed",
            "phaseTransitionTimestamps": [{"phase": "Running", "phaseTransitionTimestamp": "2026-01-01T00:00:00Z"}]}}))
        .unwrap();
        assert_eq!(
            next(&vm2, Some(&ran), now, 0.0),
            None,
            "a VMI that ran is not a start failure"
        );
        let running: VirtualMachineInstance =
            serde_json::from_value(json!({"metadata": {"name": "v", "uid": "u3"},
            "spec": {"domain": {"devices": {}}}, "status": {"phase": "Running"}}))
            .unwrap();
        assert_eq!(next(&vm2, Some(&running), now, 0.0), Some(None));
    }
}
