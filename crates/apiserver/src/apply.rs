//! Field ownership (`managedFields`) and server-side apply: the applied intent is merged into the live object (maps
//! recursively, lists atomically), each manager's field set is recorded as `FieldsV1`, fields the same manager
//! applied last time but omits now are removed unless another manager owns them, and applying a value another manager
//! owns with a different value is a conflict (409) unless `force=true` takes the field over. Non-apply writes are
//! recorded as `Update` entries of their manager (`fieldManager`, else the User-Agent's program name) over the fields
//! they changed, which then conflict with appliers the same way.
//! Lists are atomic (one field), as for `x-kubernetes-list-type: atomic`; per-item ownership of keyed lists is not
//! tracked.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Leaf paths of an applied object (lists are leaves), skipping identity fields.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if prefix.len() == 1
                    && prefix[0] == "metadata"
                    && !matches!(k.as_str(), "labels" | "annotations")
                {
                    continue;
                }
                prefix.push(k.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// `FieldsV1`: `{"f:spec": {"f:replicas": {}}}`.
fn to_fields_v1(set: &BTreeSet<Vec<String>>) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for seg in p {
            let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| json!({}));
            let Some(next) = entry.as_object_mut() else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (k, x) in m {
        let Some(seg) = k.strip_prefix("f:") else { continue };
        prefix.push(seg.to_string());
        from_fields_v1(x, prefix, out);
        prefix.pop();
    }
}

/// Every `managedFields` entry of `obj`.
fn managed(obj: &Value) -> impl Iterator<Item = &Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// An entry's manager, whether it is an `Apply` entry, and its field set.
fn entry(e: &Value) -> (&str, bool, BTreeSet<Vec<String>>) {
    let mut fields = BTreeSet::new();
    if let Some(f) = e.get("fieldsV1") {
        from_fields_v1(f, &mut Vec::new(), &mut fields);
    }
    (
        e.get("manager").and_then(Value::as_str).unwrap_or_default(),
        e.get("operation").and_then(Value::as_str) == Some("Apply"),
        fields,
    )
}

/// The union of the field sets of the `managedFields` entries `pick(manager, is_apply)` selects.
fn owned(obj: &Value, pick: impl Fn(&str, bool) -> bool) -> BTreeSet<Vec<String>> {
    managed(obj)
        .map(entry)
        .filter(|(m, is_apply, _)| pick(m, *is_apply))
        .flat_map(|(_, _, fields)| fields)
        .collect()
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, head)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in head {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| cur.get(seg))
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `.spec.replicas`: how Kubernetes prints a field path in conflicts.
fn dotted(path: &[String]) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// `.data.key`.
    pub field: String,
    /// The owning manager.
    pub manager: String,
    /// The API version it wrote with.
    pub api_version: String,
}

/// Kubernetes' wording: `Apply failed with 1 conflict: conflict with "m" using v1: .spec.x`.
#[must_use]
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let mut by_manager: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match by_manager
            .iter_mut()
            .find(|(m, v, _)| *m == c.manager && *v == c.api_version)
        {
            Some((_, _, fields)) => fields.push(&c.field),
            None => by_manager.push((&c.manager, &c.api_version, vec![&c.field])),
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, v, fields)| match fields.as_slice() {
            [one] => format!("conflict with \"{m}\" using {v}: {one}"),
            many => format!(
                "conflicts with \"{m}\" using {v}:\n{}",
                many.iter()
                    .map(|f| format!("- {f}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        })
        .collect();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    )
}

/// Takes `fields` away from every entry but `keep`'s entry of kind `keep_apply`; entries left empty are dropped.
fn disown(obj: &mut Value, fields: &BTreeSet<Vec<String>>, keep: &str, keep_apply: bool) {
    let Some(entries) = obj
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    entries.retain_mut(|e| {
        let (m, is_apply, mut set) = entry(e);
        if m == keep && is_apply == keep_apply {
            return true;
        }
        let before = set.len();
        set.retain(|p| !fields.iter().any(|f| overlaps(p, f)));
        if set.len() != before {
            e["fieldsV1"] = to_fields_v1(&set);
        }
        !set.is_empty()
    });
}

/// Replaces (or adds) `manager`'s entry of the given operation.
fn set_entry(obj: &mut Value, manager: &str, operation: &str, api_version: &str, now: &str, fields: Value) {
    let entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    let meta = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(meta)) = meta {
        let list = meta.entry("managedFields").or_insert_with(|| json!([]));
        if let Some(entries) = list.as_array_mut() {
            entries.retain(|e| {
                !(e.get("manager").and_then(Value::as_str) == Some(manager)
                    && e.get("operation").and_then(Value::as_str) == Some(operation))
            });
            entries.push(entry);
        }
    }
}

/// Records a non-apply write by `manager`: the fields that changed from `old` to `new` become its `Update` entry's and
/// no one else's. `new` keeps `old`'s `managedFields` when it carries none.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str, now: &str) {
    if new.pointer("/metadata/managedFields").is_none()
        && let Some(mf) = old.and_then(|o| o.pointer("/metadata/managedFields"))
        && let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), mf.clone());
    }
    let mut now_fields = BTreeSet::new();
    paths(new, &mut Vec::new(), &mut now_fields);
    let changed: BTreeSet<Vec<String>> = now_fields
        .into_iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .collect();
    if changed.is_empty() {
        return;
    }
    disown(new, &changed, manager, false);
    let mut mine = owned(new, |m, is_apply| m == manager && !is_apply);
    mine.retain(|p| value_at(new, p).is_some());
    mine.extend(changed);
    set_entry(new, manager, "Update", api_version, now, to_fields_v1(&mine));
}

fn merge(target: &mut Value, intent: &Value) {
    match (target, intent) {
        (Value::Object(t), Value::Object(i)) => {
            for (k, v) in i {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, i) => *t = i.clone(),
    }
}

/// Applies `intent` by `manager` to `live` (the current object, `None` when absent); returns the new object.
///
/// # Errors
/// The fields other managers own with other values, unless `force` takes them over.
pub fn apply(
    live: Option<&Value>,
    intent: &Value,
    manager: &str,
    api_version: &str,
    now: &str,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut fields = BTreeSet::new();
    paths(intent, &mut Vec::new(), &mut fields);
    let mut obj = live.cloned().unwrap_or_else(|| json!({}));
    if live.is_some() {
        let mut conflicts = Vec::new();
        for e in managed(&obj) {
            let (m, is_apply, theirs) = entry(e);
            if m == manager && is_apply {
                continue;
            }
            for p in &fields {
                let differs = value_at(&obj, p) != value_at(intent, p);
                if differs && theirs.iter().any(|q| overlaps(p, q)) {
                    conflicts.push(Conflict {
                        field: dotted(p),
                        manager: m.to_string(),
                        api_version: e
                            .get("apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        if !conflicts.is_empty() {
            let taken: BTreeSet<Vec<String>> = fields
                .iter()
                .filter(|p| value_at(&obj, p) != value_at(intent, p))
                .cloned()
                .collect();
            disown(&mut obj, &taken, manager, true);
        }
        let before = owned(&obj, |m, is_apply| m == manager && is_apply);
        let others = owned(&obj, |m, is_apply| m != manager || !is_apply);
        for gone in before.difference(&fields) {
            if !others.iter().any(|o| overlaps(o, gone)) {
                remove_path(&mut obj, gone);
            }
        }
    }
    merge(&mut obj, intent);
    set_entry(
        &mut obj,
        manager,
        "Apply",
        api_version,
        now,
        to_fields_v1(&fields),
    );
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_drops_what_it_stops_applying_but_not_what_others_own() {
        let first = apply(
            None,
            &json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k1": "v", "k2": "v"}}),
            "ctl",
            "v1",
            "t0",
            false,
        )
        .unwrap();
        assert_eq!(
            first["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:k1": {}, "f:k2": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        let mut shared = apply(
            Some(&first),
            &json!({"data": {"k2": "other"}}),
            "other",
            "v1",
            "t1",
            true,
        )
        .unwrap();
        shared = apply(
            Some(&shared),
            &json!({"metadata": {"name": "x"}, "data": {"k1": "v2"}}),
            "ctl",
            "v1",
            "t2",
            false,
        )
        .unwrap();
        // k2 stays (another manager owns it), the label goes (only ctl applied it), k1 is updated.
        assert_eq!(shared["data"], json!({"k1": "v2", "k2": "other"}));
        assert!(
            shared["metadata"]
                .get("labels")
                .and_then(|l| l.get("a"))
                .is_none()
        );
        assert_eq!(shared["metadata"]["managedFields"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn different_values_conflict_unless_forced_and_equal_values_are_shared() {
        let a = apply(
            None,
            &json!({"data": {"k": "1", "s": "x"}}),
            "a",
            "v1",
            "t0",
            false,
        )
        .unwrap();
        // Same value: shared ownership, no conflict.
        let b = apply(Some(&a), &json!({"data": {"s": "x"}}), "b", "v1", "t1", false).unwrap();
        // Different value: a conflict naming the owner and the field.
        let err = apply(Some(&b), &json!({"data": {"k": "2"}}), "b", "v1", "t2", false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                field: ".data.k".into(),
                manager: "a".into(),
                api_version: "v1".into()
            }]
        );
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"a\" using v1: .data.k"
        );
        // Forced: b takes the field over; a no longer owns it.
        let c = apply(Some(&b), &json!({"data": {"k": "2"}}), "b", "v1", "t3", true).unwrap();
        assert_eq!(c["data"]["k"], "2");
        let a_owns = owned(&c, |m, _| m == "a");
        assert!(!a_owns.contains(&vec!["data".to_string(), "k".to_string()]));
        assert!(a_owns.contains(&vec!["data".to_string(), "s".to_string()]));
    }

    #[test]
    fn updates_are_recorded_and_then_conflict_with_appliers() {
        let a = apply(
            None,
            &json!({"spec": {"replicas": 1, "x": 1}}),
            "ctl",
            "v1",
            "t0",
            false,
        )
        .unwrap();
        let mut scaled = a.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(Some(&a), &mut scaled, "kubectl-scale", "v1", "t1");
        let entries = scaled["metadata"]["managedFields"].as_array().unwrap();
        let update = entries.iter().find(|e| e["operation"] == "Update").unwrap();
        assert_eq!(update["manager"], "kubectl-scale");
        assert_eq!(update["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        let err = apply(
            Some(&scaled),
            &json!({"spec": {"replicas": 1, "x": 1}}),
            "ctl",
            "v1",
            "t2",
            false,
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "kubectl-scale");
        assert_eq!(err[0].field, ".spec.replicas");
        // Nothing changed: nothing recorded.
        let mut same = scaled.clone();
        record_update(Some(&scaled), &mut same, "other", "v1", "t3");
        assert_eq!(same, scaled);
    }
}
