//! Every upstream example manifest decodes into our types and encodes back to the same JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubevirt_api::Object;

#[test]
fn every_upstream_example_round_trips() {
    let files = testing::example_files();
    assert!(
        files.len() >= 20,
        "expected the 20 upstream examples, found {}",
        files.len()
    );
    let mut typed = 0;
    for path in files {
        for doc in testing::load_docs(&path) {
            let obj = Object::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !matches!(obj, Object::Other(_)) {
                typed += 1;
            }
            let back = obj.to_value().unwrap();
            pretty_assertions::assert_eq!(doc, back, "{} does not round-trip", path.display());
        }
    }
    assert!(typed >= 20, "only {typed} typed objects");
}
