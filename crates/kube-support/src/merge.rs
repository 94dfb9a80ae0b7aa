//! JSON merge patches (RFC 7386) computed from what an object is and what it should be, so a reconciler computes
//! the whole status it wants and writes only the difference — or nothing, when there is none.

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`: changed keys with their new values, removed keys as `null`, objects
/// recursed into, anything else (arrays included, as merge patches do) replaced whole. `None` when they are equal.
#[must_use]
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = diff(ov, nv) {
                            out.insert(k.clone(), d);
                        }
                    }
                    None if nv.is_null() => {}
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        // A null inside `new` means "absent": merging it would delete the key, which is what it says.
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

/// `diff` of two serialisable values (`None` when equal or either cannot be serialised).
#[must_use]
pub fn diff_of<T: serde::Serialize>(old: &T, new: &T) -> Option<Value> {
    let old = serde_json::to_value(old).ok()?;
    let new = serde_json::to_value(new).ok()?;
    diff(&old, &new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386's merge, to check that applying the diff gives `new` back.
    fn apply(target: &Value, patch: &Value) -> Value {
        let Value::Object(p) = patch else {
            return patch.clone();
        };
        let mut t = match target {
            Value::Object(t) => t.clone(),
            _ => Map::new(),
        };
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                let merged = apply(t.get(k).unwrap_or(&Value::Null), v);
                t.insert(k.clone(), merged);
            }
        }
        Value::Object(t)
    }

    #[test]
    fn diffs_apply_back_to_the_new_value() {
        let cases = [
            (json!({}), json!({"a": 1})),
            (
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"a": 1, "b": {"c": 2}}),
            ),
            (json!({"a": [1, 2]}), json!({"a": [2]})),
            (json!({"a": {"x": 1}}), json!({"a": "s"})),
            (json!({"a": 1, "gone": true}), json!({"a": 2})),
        ];
        for (old, new) in cases {
            let d = diff(&old, &new).expect("a difference");
            assert_eq!(apply(&old, &d), new, "{old} → {new} by {d}");
        }
        assert_eq!(
            diff(&json!({"a": [1], "b": {"c": null}}), &json!({"a": [1], "b": {}})),
            Some(json!({"b": {"c": null}}))
        );
        assert_eq!(diff(&json!({"a": {"b": 1}}), &json!({"a": {"b": 1}})), None);
    }
}
