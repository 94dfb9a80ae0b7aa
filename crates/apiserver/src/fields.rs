//! Unknown fields of custom resources against their structural schema: reported under `fieldValidation=Strict`
//! (kubectl's default: 400 `strict decoding error`), pruned with a warning under `Warn` (the API default), pruned
//! silently under `Ignore`.

use serde_json::Value;

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
}

/// Paths (`spec.domain.foo`, `spec.volumes[0].bar`) of fields `value` has and `schema` does not describe, removing
/// them from `value` when `prune` is set.
pub fn unknown(schema: &Value, value: &mut Value, path: &str, prune: bool, out: &mut Vec<String>) {
    if preserves(schema) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if props.is_none() && additional.is_none() {
                // A closed empty object (`bridge: {}`): every key inside is unknown. The root metadata is exempt.
                if path == "metadata" || schema.get("type").and_then(Value::as_str) != Some("object") {
                    return;
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(s) => {
                        if let Some(v) = map.get_mut(&k) {
                            unknown(s, v, &here, prune, out);
                        }
                    }
                    None if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => {
                        out.push(here);
                        if prune {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    unknown(s, v, &format!("{path}[{i}]"), prune, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_and_prunes_unknown_fields() {
        let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "bridge": {"type": "object"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }}}});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"size": 1, "colour": "red", "tags": {"any": "thing"}, "items": [{"name": "a", "extra": 1}],
                "bridge": {"oops": true}, "free": {"whatever": {"deep": 1}}}, "bogus": 1});
        let mut found = Vec::new();
        unknown(&schema, &mut obj, "", true, &mut found);
        assert_eq!(
            found,
            ["bogus", "spec.bridge.oops", "spec.colour", "spec.items[0].extra"]
        );
        assert_eq!(
            obj["spec"],
            json!({"size": 1, "tags": {"any": "thing"}, "items": [{"name": "a"}], "bridge": {}, "free": {"whatever": {"deep": 1}}})
        );
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(_) => "\"string\"".into(),
        other => format!("\"{}\"", type_name(other)),
    }
}

/// Type, `required` and `enum` checks of a custom resource against its structural schema, with kube-openapi's
/// messages; each problem is `(field path, message)`.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Null) {
            out.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body must be of type integer-or-string: {}",
                    shown(value),
                    shown(value)
                ),
            ));
        }
        return;
    }
    let want = schema.get("type").and_then(Value::as_str);
    let have = type_name(value);
    if let Some(t) = want {
        let ok = have == t
            || (t == "number" && have == "integer")
            || (have == "null" && schema.get("nullable") == Some(&Value::Bool(true)));
        let tolerated_null = have == "null" && path.contains('.');
        if !(ok || tolerated_null) {
            out.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body must be of type {t}: {}",
                    shown(value),
                    shown(value)
                ),
            ));
            return;
        }
    }
    if let (Some(allowed), false) = (schema.get("enum").and_then(Value::as_array), value.is_null())
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push((
            path.into(),
            format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::Object(map) => {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(r) {
                    let p = if path.is_empty() {
                        r.to_string()
                    } else {
                        format!("{path}.{r}")
                    };
                    out.push((p, "Required value".into()));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    check(s, v, &p, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Fills the schema's `default:` values for fields the object leaves out (objects that are present only).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    let Value::Object(map) = value else {
        if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
            items.iter_mut().for_each(|v| apply_defaults(s, v));
        }
        return;
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            match map.get_mut(k) {
                Some(v) => apply_defaults(s, v),
                None => {
                    if let Some(d) = s.get("default") {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod schema_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn types_required_enums_and_defaults() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
            "properties": {"size": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "running": {"type": "boolean"}, "q": {"x-kubernetes-int-or-string": true}}}}});
        let mut out = Vec::new();
        check(
            &schema,
            &json!({"spec": {"running": "yes", "mode": "c", "q": [1]}}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ("spec.size".to_string(), "Required value".to_string()),
                (
                    "spec.mode".to_string(),
                    "Unsupported value: \"c\": supported values: \"a\", \"b\"".to_string()
                ),
                (
                    "spec.q".to_string(),
                    "Invalid value: \"array\": spec.q in body must be of type integer-or-string: \"array\""
                        .to_string()
                ),
                (
                    "spec.running".to_string(),
                    "Invalid value: \"string\": spec.running in body must be of type boolean: \"string\""
                        .to_string()
                ),
            ]
        );
        let mut v = json!({"spec": {"size": 1}});
        apply_defaults(&schema, &mut v);
        assert_eq!(v["spec"]["mode"], "a");
    }
}
