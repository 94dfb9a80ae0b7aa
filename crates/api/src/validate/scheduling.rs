//! Affinity and topology spread, validated as upstream's admitters do it: with Kubernetes' own pod rules (node
//! selector requirements and field selectors, pod (anti-)affinity terms, label selectors, qualified names and
//! label values), every violation a `FieldValueInvalid` cause whose message is Kubernetes' `<path>: <error>`.
//! Upstream roots affinity paths at the spec (`spec.podAffinity…`, not `spec.affinity.podAffinity…`) and puts
//! a topology spread constraint's label-selector errors at the list path without the index; both kept.

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::{Causes, INVALID};
use crate::v1::VirtualMachineInstanceSpec;

const QUALIFIED_NAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, whole string.
fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn subdomain_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if !s.split('.').all(label) {
        out.push(SUBDOMAIN.to_string());
    }
    out
}

/// Kubernetes' `IsQualifiedName`: every message, in its order.
#[must_use]
pub(super) fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".to_string());
            } else {
                out.extend(
                    subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".to_string());
    }
    if !qualified_name_part(name) {
        out.push(format!("name part {QUALIFIED_NAME}"));
    }
    out
}

/// Kubernetes' `IsValidLabelValue`.
#[must_use]
pub(super) fn label_value_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !qualified_name_part(value) {
        out.push(LABEL_VALUE.to_string());
    }
    out
}

fn invalid(c: &mut Causes, field: &str, value: &str, detail: &str) {
    c.push(
        INVALID,
        field,
        format!("{field}: Invalid value: {value:?}: {detail}"),
    );
}

fn required(c: &mut Causes, field: &str, detail: &str) {
    c.push(INVALID, field, format!("{field}: Required value: {detail}"));
}

fn forbidden(c: &mut Causes, field: &str, detail: &str) {
    c.push(INVALID, field, format!("{field}: Forbidden: {detail}"));
}

fn label_name(c: &mut Causes, field: &str, key: &str) {
    for m in qualified_name_errors(key) {
        invalid(c, field, key, &m);
    }
}

fn weight(c: &mut Causes, field: &str, w: i32) {
    if !(1..=100).contains(&w) {
        c.push(
            INVALID,
            field,
            format!("{field}: Invalid value: {w}: must be in the range 1-100"),
        );
    }
}

/// The operator rules label and node selector requirements share (`Gt`/`Lt` only for nodes).
fn operator(c: &mut Causes, at: &str, op: &str, values: &[String], numeric: bool) {
    let vf = format!("{at}.values");
    match op {
        "In" | "NotIn" if values.is_empty() => {
            required(c, &vf, "must be specified when `operator` is 'In' or 'NotIn'");
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => forbidden(
            c,
            &vf,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        "Gt" | "Lt" if numeric && values.len() != 1 => required(
            c,
            &vf,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        ),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        "Gt" | "Lt" if numeric => {}
        op => invalid(c, &format!("{at}.operator"), op, "not a valid selector operator"),
    }
}

fn node_requirement(c: &mut Causes, at: &str, r: &NodeSelectorRequirement) {
    operator(c, at, &r.operator, r.values.as_deref().unwrap_or_default(), true);
    label_name(c, &format!("{at}.key"), &r.key);
}

fn node_field_requirement(c: &mut Causes, at: &str, r: &NodeSelectorRequirement) {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" | "NotIn" if values.len() != 1 => required(
            c,
            &format!("{at}.values"),
            "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
        ),
        "In" | "NotIn" => {}
        op => invalid(c, &format!("{at}.operator"), op, "not a valid selector operator"),
    }
    if r.key == "metadata.name" {
        for (k, v) in values.iter().enumerate() {
            for m in subdomain_errors(v) {
                invalid(c, &format!("{at}.values[{k}]"), v, &m);
            }
        }
    } else {
        invalid(c, &format!("{at}.key"), &r.key, "not a valid field selector key");
    }
}

fn node_term(c: &mut Causes, at: &str, t: &NodeSelectorTerm) {
    for (j, r) in t.match_expressions.iter().flatten().enumerate() {
        node_requirement(c, &format!("{at}.matchExpressions[{j}]"), r);
    }
    for (j, r) in t.match_fields.iter().flatten().enumerate() {
        node_field_requirement(c, &format!("{at}.matchFields[{j}]"), r);
    }
}

fn selector_requirement(c: &mut Causes, at: &str, r: &LabelSelectorRequirement) {
    let values = r.values.as_deref().unwrap_or_default();
    let vf = format!("{at}.values");
    operator(c, at, &r.operator, values, false);
    label_name(c, &format!("{at}.key"), &r.key);
    for (k, v) in values.iter().enumerate() {
        for m in label_value_errors(v) {
            invalid(c, &format!("{vf}[{k}]"), v, &m);
        }
    }
}

/// apimachinery's `ValidateLabelSelector`.
fn label_selector(c: &mut Causes, at: &str, s: Option<&LabelSelector>) {
    let Some(s) = s else { return };
    let labels_at = format!("{at}.matchLabels");
    for (k, v) in s.match_labels.iter().flatten() {
        label_name(c, &labels_at, k);
        for m in label_value_errors(v) {
            invalid(c, &labels_at, v, &m);
        }
    }
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        selector_requirement(c, &format!("{at}.matchExpressions[{i}]"), r);
    }
}

fn pod_term(c: &mut Causes, at: &str, t: &PodAffinityTerm) {
    label_selector(c, &format!("{at}.labelSelector"), t.label_selector.as_ref());
    label_selector(
        c,
        &format!("{at}.namespaceSelector"),
        t.namespace_selector.as_ref(),
    );
    for ns in t.namespaces.iter().flatten() {
        if let Err(m) = super::dns1123_label(ns) {
            invalid(c, &format!("{at}.namespace"), ns, &m);
        }
    }
    let key_at = format!("{at}.topologyKey");
    if t.topology_key.is_empty() {
        required(c, &key_at, "can not be empty");
    }
    label_name(c, &key_at, &t.topology_key);
}

fn pod_affinity(
    c: &mut Causes,
    at: &str,
    required_terms: Option<&Vec<PodAffinityTerm>>,
    preferred: Option<&Vec<WeightedPodAffinityTerm>>,
) {
    for (i, t) in required_terms.into_iter().flatten().enumerate() {
        pod_term(
            c,
            &format!("{at}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
            t,
        );
    }
    for (j, t) in preferred.into_iter().flatten().enumerate() {
        let p = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{j}]");
        weight(c, &format!("{p}.weight"), t.weight);
        pod_term(c, &format!("{p}.podAffinityTerm"), &t.pod_affinity_term);
    }
}

fn topology_spread(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let list = spec.topology_spread_constraints.as_deref().unwrap_or_default();
    let list_at = format!("{root}.topologySpreadConstraints");
    for (i, t) in list.iter().enumerate() {
        let f = format!("{list_at}[{i}]");
        if t.max_skew <= 0 {
            c.push(
                INVALID,
                format!("{f}.maxSkew"),
                format!(
                    "{f}.maxSkew: Invalid value: {}: must be greater than zero",
                    t.max_skew
                ),
            );
        }
        let key_at = format!("{f}.topologyKey");
        if t.topology_key.is_empty() {
            required(c, &key_at, "can not be empty");
        } else {
            label_name(c, &key_at, &t.topology_key);
        }
        if !matches!(t.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
            let w = format!("{f}.whenUnsatisfiable");
            c.push(
                INVALID,
                &w,
                format!(
                    "{w}: Unsupported value: {:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
                    t.when_unsatisfiable
                ),
            );
        }
        // A pair used again later is reported at its first place.
        if list[i + 1..]
            .iter()
            .any(|o| o.topology_key == t.topology_key && o.when_unsatisfiable == t.when_unsatisfiable)
        {
            let d = format!("{f}.{{topologyKey, whenUnsatisfiable}}");
            let pair = format!("{{{}, {}}}", t.topology_key, t.when_unsatisfiable);
            c.push(INVALID, &d, format!("{d}: Duplicate value: {pair:?}"));
        }
        label_selector(c, &format!("{list_at}.labelSelector"), t.label_selector.as_ref());
    }
}

/// Affinity (node, pod, pod anti-) and topology spread constraints of `spec`.
pub(super) fn scheduling(root: &str, spec: &VirtualMachineInstanceSpec, c: &mut Causes) {
    let affinity = spec.affinity.as_ref();
    if let Some(na) = affinity.and_then(|a| a.node_affinity.as_ref()) {
        let at = format!("{root}.nodeAffinity");
        if let Some(req) = na.required_during_scheduling_ignored_during_execution.as_ref() {
            let terms_at = format!("{at}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
            if req.node_selector_terms.is_empty() {
                required(c, &terms_at, "must have at least one node selector term");
            }
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                node_term(c, &format!("{terms_at}[{i}]"), t);
            }
        }
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let p = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(c, &format!("{p}.weight"), t.weight);
            node_term(c, &format!("{p}.preference"), &t.preference);
        }
    }
    if let Some(pa) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
        pod_affinity(
            c,
            &format!("{root}.podAffinity"),
            pa.required_during_scheduling_ignored_during_execution.as_ref(),
            pa.preferred_during_scheduling_ignored_during_execution.as_ref(),
        );
    }
    if let Some(pa) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
        pod_affinity(
            c,
            &format!("{root}.podAntiAffinity"),
            pa.required_during_scheduling_ignored_during_execution.as_ref(),
            pa.preferred_during_scheduling_ignored_during_execution.as_ref(),
        );
    }
    topology_spread(root, spec, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_as_kubernetes() {
        assert!(qualified_name_errors("kubernetes.io/hostname").is_empty());
        assert!(qualified_name_errors("zone").is_empty());
        assert_eq!(
            qualified_name_errors(""),
            [
                "name part must be non-empty".to_string(),
                format!("name part {QUALIFIED_NAME}")
            ]
        );
        assert_eq!(
            qualified_name_errors("hostname=host1"),
            [format!("name part {QUALIFIED_NAME}")]
        );
        assert_eq!(qualified_name_errors("/x"), ["prefix part must be non-empty"]);
        assert!(qualified_name_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(
            qualified_name_errors(&"a".repeat(64)),
            ["name part must be no more than 63 characters"]
        );
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("my_value").is_empty());
        assert_eq!(label_value_errors("-x"), [LABEL_VALUE]);
    }
}
