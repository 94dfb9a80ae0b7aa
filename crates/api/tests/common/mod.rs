//! Test helpers: locating `shared/` and loading multi-document YAML.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::path::{Path, PathBuf};

/// `shared/` beside the checkout (CI clones main with `shared/` next to it).
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KUBEVIRT_RS_SHARED") {
        return PathBuf::from(dir);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared");
        if candidate.join("fixtures").is_dir() {
            return candidate;
        }
        let sibling = dir.join("../shared");
        if sibling.join("fixtures").is_dir() {
            return sibling;
        }
        assert!(
            dir.pop(),
            "cannot find shared/ above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

pub fn example_files() -> Vec<PathBuf> {
    let dir = shared_dir().join("fixtures/upstream-examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

pub fn load_docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}
