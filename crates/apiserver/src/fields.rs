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
