//! Server-side apply, the part controllers rely on: the applied intent is merged into the live object (maps
//! recursively, lists atomically), the manager's field set is recorded in `managedFields` (`FieldsV1`), and fields the
//! same manager applied last time but omits now are removed unless another manager owns them.
//! Not yet: conflicts between managers (every apply behaves as `force=true`) and `Update` entries for other writers.

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

/// The union of the field sets of the `managedFields` entries `pick(manager, is_apply)` selects.
fn owned(obj: &Value, pick: impl Fn(&str, bool) -> bool) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for e in obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let m = e.get("manager").and_then(Value::as_str).unwrap_or_default();
        let is_apply = e.get("operation").and_then(Value::as_str) == Some("Apply");
        if let (true, Some(f)) = (pick(m, is_apply), e.get("fieldsV1")) {
            from_fields_v1(f, &mut Vec::new(), &mut out);
        }
    }
    out
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
#[must_use]
pub fn apply(live: Option<&Value>, intent: &Value, manager: &str, api_version: &str, now: &str) -> Value {
    let mut fields = BTreeSet::new();
    paths(intent, &mut Vec::new(), &mut fields);
    let mut obj = live.cloned().unwrap_or_else(|| json!({}));
    if live.is_some() {
        let before = owned(&obj, |m, is_apply| m == manager && is_apply);
        let others = owned(&obj, |m, _| m != manager);
        for gone in before.difference(&fields) {
            if !others.contains(gone) {
                remove_path(&mut obj, gone);
            }
        }
    }
    merge(&mut obj, intent);
    let entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(&fields),
    });
    let meta = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(meta)) = meta {
        let list = meta.entry("managedFields").or_insert_with(|| json!([]));
        if let Some(entries) = list.as_array_mut() {
            entries.retain(|e| {
                !(e.get("manager").and_then(Value::as_str) == Some(manager)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply"))
            });
            entries.push(entry);
        }
    }
    obj
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
        );
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
        );
        shared = apply(
            Some(&shared),
            &json!({"metadata": {"name": "x"}, "data": {"k1": "v2"}}),
            "ctl",
            "v1",
            "t2",
        );
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
}
