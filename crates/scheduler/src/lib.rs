//! The box scheduler's decision, pure: for a pending pod, the nodes it fits and, when none does, a reason worded
//! like kube-scheduler's (`0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node
//! affinity/selector.`), which becomes the pod's PodScheduled=False condition and the VM's `ErrorUnschedulable`.
//!
//! A node fits when it is Ready and schedulable, every `nodeSelector` entry matches its labels, one of the required
//! node-affinity terms matches (In, NotIn, Exists, DoesNotExist, Gt, Lt on labels; `metadata.name` fields), the pod
//! tolerates its NoSchedule/NoExecute taints, and its allocatable resources (cpu, memory, extended resources like
//! `devices.kubevirt.io/kvm`) minus what its bound, unfinished pods request cover the pod's requests. Among fitting
//! nodes the one with the most free memory wins (then the name, for determinism).

pub mod binder;
pub mod volumes;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use kubevirt_api::quantity;

/// A resource amount in milli-units (cpu in millicores, memory in milli-bytes), as [`quantity`] parses it.
type Milli = i128;

/// Why one node does not fit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Misfit {
    NotReady,
    Unschedulable,
    Selector,
    Taint(String),
    Insufficient(String),
    VolumeAffinity,
}

impl Misfit {
    fn text(&self) -> String {
        match self {
            Self::NotReady => "node(s) were not ready".into(),
            Self::Unschedulable => "node(s) were unschedulable".into(),
            Self::Selector => "node(s) didn't match Pod's node affinity/selector".into(),
            Self::Taint(t) => format!("node(s) had untolerated taint {{{t}}}"),
            Self::Insufficient(r) => format!("Insufficient {r}"),
            Self::VolumeAffinity => "node(s) had volume node affinity conflict".into(),
        }
    }
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// No node fits; the message for PodScheduled=False (reason `Unschedulable`).
    Unschedulable(String),
}

fn labels_of(node: &Node) -> BTreeMap<String, String> {
    node.metadata.labels.clone().unwrap_or_default()
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = labels_of(node);
    let name = node.metadata.name.as_deref();
    term.match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && term
            .match_fields
            .iter()
            .flatten()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

fn selected(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = labels_of(node);
    let by_selector = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    // Terms are ORed; an empty list of terms matches nothing, as in Kubernetes.
    let by_affinity = required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    by_selector && by_affinity
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match t.key.as_deref() {
        None | Some("") => t.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
    };
    effect_ok && key_ok && value_ok
}

fn untolerated(pod: &Pod, node: &Node) -> Option<String> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        .map(|t| match t.value.as_deref() {
            Some(v) if !v.is_empty() => format!("{}: {v}", t.key),
            _ => t.key.clone(),
        })
}

fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Milli {
    quantity::parse(&q.0).map_or(0, |m| m.0)
}

/// What one container asks for: its requests, plus extended resources (`vendor/name`) asked for by limits alone.
fn container_requests(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, Milli> {
    let res = c.resources.as_ref();
    let mut out: BTreeMap<String, Milli> = res
        .and_then(|r| r.requests.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, q)| (k.clone(), milli(q)))
        .collect();
    for (k, q) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
        if k.contains('/') {
            out.entry(k.clone()).or_insert_with(|| milli(q));
        }
    }
    out
}

/// What a pod requests: the sum over its containers, or the largest init container if larger.
fn requests(pod: &Pod) -> BTreeMap<String, Milli> {
    let mut sum: BTreeMap<String, Milli> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else { return sum };
    for c in &spec.containers {
        for (k, v) in container_requests(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_requests(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    sum
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Free resources of `node` given the pods bound to it.
fn free(node: &Node, bound: &[&Pod]) -> BTreeMap<String, Milli> {
    let mut free: BTreeMap<String, Milli> = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, q)| (k.clone(), milli(q)))
        .collect();
    for p in bound.iter().filter(|p| !finished(p)) {
        for (k, v) in requests(p) {
            *free.entry(k).or_default() -= v;
        }
    }
    free
}

fn misfit(pod: &Pod, node: &Node, bound: &[&Pod], affinity: &[NodeSelector]) -> Option<Misfit> {
    if !ready(node) {
        return Some(Misfit::NotReady);
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return Some(Misfit::Unschedulable);
    }
    if !selected(pod, node) {
        return Some(Misfit::Selector);
    }
    if let Some(t) = untolerated(pod, node) {
        return Some(Misfit::Taint(t));
    }
    if !affinity
        .iter()
        .all(|a| a.node_selector_terms.iter().any(|t| term_matches(t, node)))
    {
        return Some(Misfit::VolumeAffinity);
    }
    let free = free(node, bound);
    for (k, want) in requests(pod) {
        if k == "ephemeral-storage" || want <= 0 {
            continue;
        }
        if free.get(&k).copied().unwrap_or(0) < want {
            return Some(Misfit::Insufficient(k));
        }
    }
    None
}

/// A pod counted against a node: the node's name and the pod.
pub type Placed<'a> = (&'a str, &'a Pod);

/// Picks a node for `pod` among `nodes`, given every pod already bound (`spec.nodeName` set).
#[must_use]
pub fn schedule(pod: &Pod, nodes: &[Node], bound: &[Pod]) -> Decision {
    let placed: Vec<Placed<'_>> = bound
        .iter()
        .filter_map(|p| Some((p.spec.as_ref()?.node_name.as_deref()?, p)))
        .collect();
    schedule_placed(pod, nodes, &placed)
}

/// [`schedule`] given the pods already placed, each with its node (also pods assumed on a node before the API
/// shows them bound).
#[must_use]
pub fn schedule_placed(pod: &Pod, nodes: &[Node], bound: &[Placed<'_>]) -> Decision {
    schedule_with(pod, nodes, bound, &[])
}

/// [`schedule_placed`] where nodes must also match each of `affinity` (the node affinity of the pod's bound
/// volumes).
#[must_use]
pub fn schedule_with(pod: &Pod, nodes: &[Node], bound: &[Placed<'_>], affinity: &[NodeSelector]) -> Decision {
    let mut fits: Vec<(Milli, String)> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let on_node: Vec<&Pod> = bound
            .iter()
            .filter(|(n, _)| *n == name.as_str())
            .map(|(_, p)| *p)
            .collect();
        match misfit(pod, node, &on_node, affinity) {
            None => fits.push((free(node, &on_node).get("memory").copied().unwrap_or(0), name)),
            Some(m) => *reasons.entry(m.text()).or_default() += 1,
        }
    }
    // Most free memory first; the name breaks ties.
    fits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if let Some((_, name)) = fits.into_iter().next() {
        return Decision::Bind(name);
    }
    let parts: Vec<String> = reasons.iter().map(|(text, n)| format!("{n} {text}")).collect();
    Decision::Unschedulable(if parts.is_empty() {
        format!("0/{} nodes are available.", nodes.len())
    } else {
        format!("0/{} nodes are available: {}.", nodes.len(), parts.join(", "))
    })
}
