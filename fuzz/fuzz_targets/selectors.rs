//! Fuzz target: label selectors (string grammar and LabelSelector objects) and field selectors, parsed and matched
//! against an object. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let obj = serde_json::json!({"metadata": {"name": "n", "namespace": "ns", "labels": {"app": "x", "tier": "web"}},
        "spec": {"nodeName": "node1"}, "status": {"phase": "Running"}});
    if let Ok(reqs) = apiserver::selectors::parse_labels(s) {
        let _ = apiserver::selectors::labels_match(&reqs, obj.pointer("/metadata/labels").and_then(|l| l.as_object()));
    }
    for kind in ["Pod", "Event", "ConfigMap", "Node"] {
        if let Ok(reqs) = apiserver::selectors::parse_fields(s, kind) {
            let _ = apiserver::selectors::fields_match(&reqs, &obj);
        }
    }
    if let Ok(sel) = serde_json::from_str::<serde_json::Value>(s) {
        let _ = apiserver::selectors::parse_selector_object(&sel);
    }
});
