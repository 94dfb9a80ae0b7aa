//! Turns a schemars schema of one of our types into a Kubernetes *structural* openAPIV3Schema.
//!
//! Structural means: every node has a `type` (or `x-kubernetes-int-or-string` /
//! `x-kubernetes-preserve-unknown-fields`), no `$ref`, no `nullable` unions, and the root `metadata` is
//! only `type: object`. The rules applied, in order, to every node:
//! 1. schemars' inlined output may still wrap a type as `anyOf: [T, {type: null}]` or `type: [T, "null"]` for an
//!    `Option`; the null branch is dropped.
//! 2. a schema that accepts anything (`true`, `{}`) becomes `x-kubernetes-preserve-unknown-fields: true`.
//! 3. an embedded `ObjectMeta` (recognised by its `generateName` + `ownerReferences` properties) becomes an object
//!    that keeps unknown fields, as upstream's CRDs render templates' metadata.
//! 4. int-or-string values (quantities, ports) get the `anyOf: [integer, string]` form the API server expects.
//! 5. annotations that structural schemas forbid or that carry no meaning here are removed (`$schema`, `title`,
//!    `description`, `default`, `nullable`, numeric `format`s other than int32/int64/float/double, min/max of unsigned
//!    integers).

use schemars::JsonSchema;
use serde_json::{Map, Value, json};

/// The structural schema of `T` for use as a CRD version's `schema.openAPIV3Schema`.
#[must_use]
pub fn structural_schema_for<T: JsonSchema>() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let root = settings.into_generator().into_root_schema_for::<T>().to_value();
    let mut out = structural(root);
    if let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut) {
        if props.contains_key("metadata") {
            props.insert("metadata".into(), json!({"type": "object"}));
        }
        for k in ["apiVersion", "kind"] {
            if props.contains_key(k) {
                props.insert(k.into(), json!({"type": "string"}));
            }
        }
    }
    out
}

fn structural(schema: Value) -> Value {
    let mut obj = match schema {
        Value::Bool(_) => return json!({"x-kubernetes-preserve-unknown-fields": true}),
        Value::Object(m) => m,
        other => return other,
    };
    for key in [
        "$schema",
        "title",
        "description",
        "default",
        "nullable",
        "examples",
        "definitions",
        "$defs",
    ] {
        obj.remove(key);
    }
    // 1. Option wrappers.
    if let Some(Value::Array(branches)) = obj.remove("anyOf").or_else(|| obj.remove("oneOf")) {
        let non_null: Vec<Value> = branches.into_iter().filter(|b| !is_null_schema(b)).collect();
        if non_null.len() == 1 {
            if let Some(Value::Object(inner)) = non_null.into_iter().next() {
                for (k, v) in inner {
                    obj.entry(k).or_insert(v);
                }
            }
            return structural(Value::Object(obj));
        }
        obj.insert("anyOf".into(), Value::Array(non_null));
    }
    if let Some(Value::Array(types)) = obj.get("type") {
        let kept: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if kept.len() == 1 {
            obj.insert("type".into(), kept[0].clone());
        }
    }
    // 3. embedded ObjectMeta.
    if let Some(props) = obj.get("properties").and_then(Value::as_object)
        && props.contains_key("generateName")
        && props.contains_key("ownerReferences")
    {
        return json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    // 4. int-or-string.
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return json!({
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true,
        });
    }
    // 5. formats and bounds that only describe Rust's integer width.
    if let Some(fmt) = obj.get("format").and_then(Value::as_str)
        && (fmt.starts_with("uint") || fmt == "int8" || fmt == "int16")
    {
        obj.remove("format");
        obj.remove("maximum");
        if obj.get("minimum") == Some(&json!(0)) {
            obj.remove("minimum");
        }
    }
    // 2. schemas that accept anything.
    if obj.is_empty() {
        return json!({"x-kubernetes-preserve-unknown-fields": true});
    }
    recurse(&mut obj);
    if obj.get("type").and_then(Value::as_str) == Some("object")
        && !obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
    {
        obj.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
    }
    Value::Object(obj)
}

fn recurse(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(props)) = obj.remove("properties") {
        let props: Map<String, Value> = props.into_iter().map(|(k, v)| (k, structural(v))).collect();
        obj.insert("properties".into(), Value::Object(props));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = obj.remove(key) {
            obj.insert(key.into(), structural(v));
        }
    }
    if let Some(Value::Array(required)) = obj.get("required")
        && required.is_empty()
    {
        obj.remove("required");
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null") || v.get("const") == Some(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_of_struct_is_plain_object() {
        let s = structural_schema_for::<crate::v1::Disk>();
        let bs = &s["properties"]["blockSize"];
        assert_eq!(bs["type"], "object");
        assert!(bs.get("anyOf").is_none());
        assert_eq!(
            bs["properties"]["custom"]["properties"]["logical"]["type"],
            "integer"
        );
        assert_eq!(s["required"], json!(["name"]));
    }

    #[test]
    fn quantities_are_int_or_string() {
        let s = structural_schema_for::<crate::v1::EmptyDiskSource>();
        assert_eq!(s["properties"]["capacity"]["x-kubernetes-int-or-string"], true);
    }

    #[test]
    fn root_metadata_is_bare_object() {
        let s = structural_schema_for::<crate::v1::VirtualMachineInstance>();
        assert_eq!(s["properties"]["metadata"], json!({"type": "object"}));
        let tmpl = &s["properties"]["spec"]["properties"];
        assert!(tmpl.get("domain").is_some());
    }
}
