//! Label selectors (the full string grammar: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and field
//! selectors (`=`, `==`, `!=` over the fields Kubernetes supports per resource).

use serde_json::Value;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelReq {
    /// `k=v` / `k==v`.
    Eq(String, String),
    /// `k!=v` (also true when the label is absent).
    NotEq(String, String),
    /// `k in (a,b)`.
    In(String, Vec<String>),
    /// `k notin (a,b)` (also true when absent).
    NotIn(String, Vec<String>),
    /// `k`.
    Exists(String),
    /// `!k`.
    NotExists(String),
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn valid_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(valid_name) && valid_name(name)
        }
        None => valid_name(k),
    }
}

fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_name(v)
}

/// Splits on commas that are not inside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses a `labelSelector` query value.
///
/// # Errors
/// A message for the 400 response.
pub fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for raw in terms(s) {
        let t = raw.trim();
        let bad = || format!("unable to parse requirement: found '{t}', expected: identifier");
        let key_ok = |k: &str| {
            if valid_key(k) {
                Ok(k.to_string())
            } else {
                Err(format!("invalid label key \"{k}\""))
            }
        };
        let val_ok = |v: &str| {
            if valid_value(v) {
                Ok(v.to_string())
            } else {
                Err(format!("invalid label value: \"{v}\""))
            }
        };
        if let Some(k) = t.strip_prefix('!') {
            out.push(LabelReq::NotExists(key_ok(k.trim())?));
        } else if let Some((k, v)) = t.split_once("!=") {
            out.push(LabelReq::NotEq(key_ok(k.trim())?, val_ok(v.trim())?));
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            out.push(LabelReq::Eq(key_ok(k.trim())?, val_ok(v.trim())?));
        } else if let Some(open) = t.find('(') {
            let close = t
                .rfind(')')
                .filter(|c| *c > open && t[c + 1..].trim().is_empty())
                .ok_or_else(bad)?;
            let mut head = t[..open].split_whitespace();
            let (Some(k), Some(op), None) = (head.next(), head.next(), head.next()) else {
                return Err(bad());
            };
            let values = t[open + 1..close]
                .split(',')
                .map(|v| val_ok(v.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            match op {
                "in" => out.push(LabelReq::In(key_ok(k)?, values)),
                "notin" => out.push(LabelReq::NotIn(key_ok(k)?, values)),
                _ => return Err(bad()),
            }
        } else if t.split_whitespace().count() == 1 {
            out.push(LabelReq::Exists(key_ok(t)?));
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions` with In/NotIn/Exists/DoesNotExist) as
/// requirements. An empty selector matches everything.
///
/// # Errors
/// An unknown operator, or In/NotIn without values.
pub fn parse_selector_object(sel: &Value) -> Result<Vec<LabelReq>, String> {
    let mut out = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            out.push(LabelReq::Eq(
                k.clone(),
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let values: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
        out.push(match op {
            "In" | "NotIn" if values.is_empty() => return Err(format!("{op} on {key:?} needs values")),
            "In" => LabelReq::In(key, values),
            "NotIn" => LabelReq::NotIn(key, values),
            "Exists" => LabelReq::Exists(key),
            "DoesNotExist" => LabelReq::NotExists(key),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        });
    }
    Ok(out)
}

/// Whether an object's labels satisfy every requirement.
#[must_use]
pub fn labels_match(reqs: &[LabelReq], labels: Option<&serde_json::Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldReq {
    /// Field path such as `metadata.name`.
    pub field: String,
    /// Value compared with.
    pub value: String,
    /// `!=` instead of `=`.
    pub negate: bool,
}

/// Fields every resource supports, plus the per-kind extras Kubernetes serves.
fn supported(kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match kind {
        "Pod" => matches!(
            field,
            "spec.nodeName"
                | "status.phase"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "status.podIP"
        ),
        "Event" => {
            field.starts_with("involvedObject.")
                || matches!(field, "reason" | "type" | "source" | "reportingComponent")
        }
        "Namespace" => field == "status.phase",
        "Secret" => field == "type",
        "Node" => field == "spec.unschedulable",
        _ => false,
    }
}

/// Parses a `fieldSelector` for objects of `kind`.
///
/// # Errors
/// A message for the 400 response (unknown fields included).
pub fn parse_fields(s: &str, kind: &str) -> Result<Vec<FieldReq>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for t in s.split(',') {
        let t = t.trim();
        let (field, value, negate) = if let Some((f, v)) = t.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            (f, v, false)
        } else {
            return Err(format!("invalid selector: '{t}'; can't understand '{t}'"));
        };
        let field = field.trim();
        if !supported(kind, field) {
            return Err(format!("field label not supported: {field}"));
        }
        out.push(FieldReq {
            field: field.into(),
            value: value.trim().into(),
            negate,
        });
    }
    Ok(out)
}

/// The value of a dotted `field` in `obj` as a string (`""` when absent), as field selectors compare it.
#[must_use]
pub fn field_value(obj: &Value, field: &str) -> String {
    let mut cur = obj;
    for seg in field.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether `obj` satisfies every field requirement.
#[must_use]
pub fn fields_match(reqs: &[FieldReq], obj: &Value) -> bool {
    reqs.iter()
        .all(|r| (field_value(obj, &r.field) == r.value) != r.negate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_grammar() {
        let reqs =
            parse_labels("app=web, tier in (front, back),!legacy,env!=prod,kubevirt.io/vm,zone notin (a)")
                .unwrap();
        assert_eq!(reqs.len(), 6);
        assert_eq!(
            reqs[1],
            LabelReq::In("tier".into(), vec!["front".into(), "back".into()])
        );
        let labels: serde_json::Map<String, Value> =
            serde_json::from_value(serde_json::json!({"app": "web", "tier": "front", "kubevirt.io/vm": "x"}))
                .unwrap();
        assert!(labels_match(&reqs, Some(&labels)));
        assert!(!labels_match(&parse_labels("app==db").unwrap(), Some(&labels)));
        assert!(labels_match(&parse_labels("").unwrap(), None));
        for bad in ["a b", "tier in front", "-x=y", "a=b c", "x in (a", "a=(b)"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let obj = serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let reqs = parse_fields("metadata.name=p,spec.nodeName!=n2,status.phase==Running", "Pod").unwrap();
        assert!(fields_match(&reqs, &obj));
        assert!(!fields_match(
            &parse_fields("spec.nodeName=n2", "Pod").unwrap(),
            &obj
        ));
        assert_eq!(
            parse_fields("spec.nodeName=n1", "ConfigMap").unwrap_err(),
            "field label not supported: spec.nodeName"
        );
        assert!(parse_fields("nonsense", "Pod").is_err());
    }
}
