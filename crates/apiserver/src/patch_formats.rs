//! The patch formats, as pure functions on JSON: JSON merge patch (RFC 7386), JSON patch (RFC 6902 with Kubernetes'
//! `test`-on-missing = null) and strategic merge patch.
//!
//! Written by hand because the semantics Kubernetes clients depend on differ from the `json-patch` crate's (a `test`
//! of a missing path against `null` succeeds; kube-rs finalizers rely on it).
//! Simplifications, for now: strategic merge patch merges lists of objects by the usual merge keys (`name`,
//! `containerPort`, `port`, `mountPath`, ...) found in the items rather than by the served schema, and honours the
//! `$patch`, `$deleteFromPrimitiveList` directives (ordering directives are ignored).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "topologyKey",
];

fn merge_key<'a>(items: &'a [Value]) -> Option<&'static str> {
    let objects: Vec<&'a Value> = items.iter().filter(|i| i.is_object()).collect();
    if objects.is_empty() || objects.len() != items.len() {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| objects.iter().all(|o| o.get(*k).is_some()))
}

/// Strategic merge patch for built-in kinds (see the module notes for what is approximated).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        if let Some(m) = clean.as_object_mut() {
            m.retain(|k, _| !k.starts_with('$'));
        }
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else { return };
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Value::Array(drop)) = (t.get_mut(list), v) {
                have.retain(|x| !drop.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(have)), Value::Array(items)) => match merge_key(items) {
                Some(key) if have.iter().all(|h| h.get(key).is_some()) => {
                    for item in items {
                        let id = item.get(key).cloned();
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        let pos = have.iter().position(|h| h.get(key) == id.as_ref());
                        match (pos, delete) {
                            (Some(i), true) => {
                                have.remove(i);
                            }
                            (Some(i), false) => strategic_merge(&mut have[i], item),
                            (None, false) => {
                                let mut fresh = Value::Null;
                                strategic_merge(&mut fresh, item);
                                have.push(fresh);
                            }
                            (None, true) => {}
                        }
                    }
                }
                _ => t.insert(k.clone(), v.clone()).map_or((), |_| ()),
            },
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge(existing, v),
            _ => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {pointer:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<(&'a mut Value, String), String> {
    let (last, head) = toks.split_last().ok_or("the root cannot be the target")?;
    let mut cur = doc;
    for t in head {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("missing path element {t:?}"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("invalid array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into {t:?}")),
        };
    }
    Ok((cur, last.clone()))
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    toks.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, toks: &[String], value: Value) -> Result<(), String> {
    if toks.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, toks)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index {i} out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the parent is not a container".into()),
    }
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, String> {
    let (parent, last) = parent_mut(doc, toks)?;
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(|| format!("missing path {last:?}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            (i < a.len())
                .then(|| a.remove(i))
                .ok_or_else(|| format!("array index {i} out of range"))
        }
        _ => Err("the parent is not a container".into()),
    }
}

/// RFC 6902 with Kubernetes' semantics. Errors are `(http code, message)`: 400 for malformed patches, 422 for failed
/// operations.
///
/// # Errors
/// As described.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), (u16, String)> {
    let ops = ops
        .as_array()
        .ok_or((400, "a JSON patch must be an array of operations".to_string()))?;
    if ops.len() > 10_000 {
        return Err((413, "the JSON patch has more than 10000 operations".into()));
    }
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or((400, "a JSON patch operation needs \"op\"".to_string()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or((400, format!("{kind} operation needs \"path\"")))?;
        let toks = tokens(path).map_err(|e| (400, e))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or((400, format!("{kind} operation needs \"value\"")))
        };
        let from = || -> Result<Vec<String>, (u16, String)> {
            tokens(
                op.get("from")
                    .and_then(Value::as_str)
                    .ok_or((400, format!("{kind} operation needs \"from\"")))?,
            )
            .map_err(|e| (400, e))
        };
        let r = match kind {
            "add" => add(doc, &toks, value()?),
            "remove" => remove(doc, &toks).map(|_| ()),
            "replace" => {
                if get(doc, &toks).is_none() {
                    Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                } else {
                    remove(doc, &toks).and_then(|_| add(doc, &toks, value().map_err(|e| e.1)?))
                }
            }
            "move" => {
                let f = from()?;
                remove(doc, &f).and_then(|v| add(doc, &toks, v))
            }
            "copy" => {
                let f = from()?;
                match get(doc, &f).cloned() {
                    Some(v) => add(doc, &toks, v),
                    None => Err("copy operation does not apply: missing from path".into()),
                }
            }
            "test" => {
                let want = value()?;
                let have = get(doc, &toks).cloned().unwrap_or(Value::Null);
                if have == want {
                    Ok(())
                } else {
                    Err(format!("testing value {path} failed"))
                }
            }
            other => return Err((400, format!("unknown JSON patch operation {other:?}"))),
        };
        r.map_err(|e| (422, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_merges_lists_by_key_and_honours_directives() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}]}, "metadata": {"finalizers": ["x", "y"]}});
        strategic_merge(
            &mut pod,
            &json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "spec": {"containers": [
                {"name": "a", "image": "a:2", "ports": [{"containerPort": 443}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        );
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
            {"name": "c", "image": "c:1"}]}, "metadata": {"finalizers": ["y"]}})
        );
        let mut m = json!({"data": {"a": "1"}});
        strategic_merge(&mut m, &json!({"data": {"$patch": "replace", "b": "2"}}));
        assert_eq!(m, json!({"data": {"b": "2"}}));
    }

    #[test]
    fn json_patch_with_kubernetes_test_semantics() {
        let mut doc = json!({"metadata": {"name": "x"}});
        // kube-rs finalizer(): test that the missing list is null, then add it.
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "g"},
                {"op": "test", "path": "/metadata/finalizers/0", "value": "f"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
                {"op": "replace", "path": "/metadata/name", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"name": "y", "generateName": "x", "finalizers": ["g"]}})
        );
        assert_eq!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/metadata/name", "value": "z"}])
            )
            .unwrap_err()
            .0,
            422
        );
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .0,
            422
        );
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "add", "path": "/a/b", "value": 1}]))
                .unwrap_err()
                .0,
            422
        );
        assert_eq!(json_patch(&mut doc, &json!({"op": "add"})).unwrap_err().0, 400);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "frobnicate", "path": "/x"}]))
                .unwrap_err()
                .0,
            400
        );
    }
}
