//! Every field upstream's OpenAPI document gives VMI, VM, VMIRS and VMIM (transitively) is in our CRD schema,
//! and the checked-in CRD manifests are what the types generate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

const ROOTS: &[(&str, &str)] = &[
    ("v1.VirtualMachineInstance", "VirtualMachineInstance"),
    ("v1.VirtualMachine", "VirtualMachine"),
    (
        "v1.VirtualMachineInstanceReplicaSet",
        "VirtualMachineInstanceReplicaSet",
    ),
    (
        "v1.VirtualMachineInstanceMigration",
        "VirtualMachineInstanceMigration",
    ),
];

/// Kubernetes forbids CRD schemas from describing metadata; upstream's CRDs do not either.
const SKIP: &[&str] = &["k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"];

fn def_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix("#/definitions/")
}

struct Walk<'a> {
    defs: &'a serde_json::Map<String, Value>,
    missing: Vec<String>,
    checked: usize,
}

impl Walk<'_> {
    fn def(&mut self, name: &str, ours: &Value, path: &str, stack: &mut Vec<String>) {
        if SKIP.contains(&name) || stack.iter().any(|s| s == name) {
            return;
        }
        let Some(def) = self.defs.get(name) else { return };
        stack.push(name.to_string());
        self.schema(def, ours, path, stack);
        stack.pop();
    }

    fn schema(&mut self, theirs: &Value, ours: &Value, path: &str, stack: &mut Vec<String>) {
        if let Some(name) = def_name(theirs) {
            let name = name.to_string();
            self.def(&name, ours, path, stack);
            return;
        }
        if let Some(props) = theirs.get("properties").and_then(Value::as_object) {
            for (p, sub) in props {
                let here = format!("{path}.{p}");
                self.checked += 1;
                match ours.get("properties").and_then(|o| o.get(p)) {
                    Some(o) => self.schema(sub, o, &here, stack),
                    None => self.missing.push(here),
                }
            }
        }
        if let Some(items) = theirs.get("items") {
            match ours.get("items") {
                Some(o) => self.schema(items, o, &format!("{path}[]"), stack),
                None => self.missing.push(format!("{path}[]")),
            }
        }
        if let Some(ap) = theirs.get("additionalProperties").filter(|a| a.is_object()) {
            match ours.get("additionalProperties") {
                Some(o) => self.schema(ap, o, &format!("{path}{{}}"), stack),
                None if ours.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => {}
                None => self.missing.push(format!("{path}{{}}")),
            }
        }
    }
}

#[test]
fn crd_schemas_cover_every_upstream_field() {
    let text =
        std::fs::read_to_string(testing::shared_dir().join("reference/kubevirt-openapi.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let defs = doc["definitions"].as_object().unwrap();
    let mut walk = Walk {
        defs,
        missing: Vec::new(),
        checked: 0,
    };
    for (def, kind) in ROOTS {
        let info = kubevirt_api::crd::CRDS.iter().find(|c| c.kind == *kind).unwrap();
        let ours = (info.schema)();
        walk.def(def, &ours, kind, &mut Vec::new());
    }
    let missing: BTreeSet<_> = walk.missing.iter().collect();
    assert!(
        missing.is_empty(),
        "{} of {} fields missing from our CRD schemas:\n{missing:#?}",
        missing.len(),
        walk.checked
    );
    assert!(walk.checked > 2000, "walked only {} fields", walk.checked);
}

#[test]
fn checked_in_crds_match_the_types() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/crds.yaml");
    let generated = kubevirt_api::crd::all();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut out = String::new();
        for c in &generated {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(c).unwrap());
        }
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, out).unwrap();
    }
    let checked_in = testing::load_docs(&file);
    assert_eq!(
        checked_in.len(),
        generated.len(),
        "regenerate with `kvbox crds > crates/api/crds/crds.yaml`"
    );
    for (a, b) in checked_in.iter().zip(&generated) {
        assert!(
            a == b,
            "{} drifted from the types; regenerate with `kvbox crds > crates/api/crds/crds.yaml`",
            b["metadata"]["name"]
        );
    }
}

#[test]
fn crds_are_structural() {
    fn check(v: &Value, path: &str, bad: &mut Vec<String>) {
        let Some(o) = v.as_object() else { return };
        for k in ["$ref", "$schema", "definitions", "$defs", "nullable", "oneOf"] {
            if o.contains_key(k) {
                bad.push(format!("{path}: {k}"));
            }
        }
        let typed = o.contains_key("type")
            || o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed {
            bad.push(format!("{path}: no type"));
        }
        for (p, s) in o
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            check(s, &format!("{path}.{p}"), bad);
        }
        for k in ["items", "additionalProperties"] {
            if let Some(s) = o.get(k).filter(|s| s.is_object()) {
                check(s, &format!("{path}.{k}"), bad);
            }
        }
    }
    let mut bad = Vec::new();
    for crd in kubevirt_api::crd::all() {
        for v in crd["spec"]["versions"].as_array().unwrap() {
            check(
                &v["schema"]["openAPIV3Schema"],
                crd["metadata"]["name"].as_str().unwrap(),
                &mut bad,
            );
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
