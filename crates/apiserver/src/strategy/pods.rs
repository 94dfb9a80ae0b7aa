//! Pods: a new pod is Pending with its QoS class and its service account's token volume (the ServiceAccount
//! admission plugin); a pod bound to a node is deleted gracefully (kube-apiserver's graceful deletion) and DELETE
//! answers with the pod.

use serde_json::{Value, json};

use super::{Deletion, Strategy};
use crate::context::Ctx;
use crate::object_store::Resource;
use crate::status::ApiError;

/// The pods strategy.
pub(crate) struct Pods;

impl Strategy for Pods {
    fn prepare_create(&self, ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
        let ns = ctx.path.namespace.clone().unwrap_or_else(|| "default".into());
        let sa = obj
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let account = Resource::core("serviceaccounts").get(&ctx.state.store, Some(&ns), &sa)?;
        crate::serviceaccount::admit(obj, account.as_ref())?;
        // As kube-apiserver's pod strategy: a new pod is Pending, with its QoS class.
        obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
        Ok(())
    }

    fn deletion(&self, _ctx: &Ctx, obj: &Value, opts: &Value) -> Result<Deletion, ApiError> {
        Ok(Deletion {
            grace: grace(obj, opts),
            terminate: false,
        })
    }

    fn delete_returns_object(&self) -> bool {
        true
    }
}

/// The grace period a pod bound to a node gets before it is removed: `None` when it goes at once — unbound,
/// finished, or `gracePeriodSeconds: 0` (the kubelet's final delete).
fn grace(obj: &Value, opts: &Value) -> Option<i64> {
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return None;
    }
    let grace = opts
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    (grace > 0).then_some(grace)
}

/// The pod's QoS class: Guaranteed when every container limits cpu and memory at its requests, BestEffort when no
/// container asks for either, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let get = |c: &Value, kind: &str, res: &str| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let any = containers.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|r| get(c, "requests", r).is_some() || get(c, "limits", r).is_some())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = get(c, "limits", r);
            limit.is_some() && get(c, "requests", r).is_none_or(|q| Some(q) == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}
