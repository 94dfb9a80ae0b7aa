//! Reading manifests (multi-document YAML or JSON, `kind: List` expanded) and writing YAML streams.

use std::path::Path;

use serde::Deserialize as _;
use serde_json::Value;

/// A manifest could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML/JSON.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// Parser message including line and column.
        message: String,
    },
}

/// Replaces each directory by its `.yaml`, `.yml` and `.json` files in name order, as `kubectl apply -f DIR` does.
pub(crate) fn expand_dirs(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let read_err = |source| ManifestError::Read {
            path: p.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(p).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let manifest = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if manifest && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// Every object in `path`, in order. `-` reads standard input.
pub(crate) fn load(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let shown = path.display().to_string();
    let text = if shown == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?
    } else {
        std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?
    };
    let mut docs = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        for doc in stream.by_ref() {
            let v = doc.map_err(|e| ManifestError::Syntax {
                path: shown.clone(),
                message: format!("line {} column {}: {e}", e.line(), e.column()),
            })?;
            docs.push(v);
        }
    } else {
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                ManifestError::Syntax {
                    path: shown.clone(),
                    message: format!("{at}{e}"),
                }
            })?;
            docs.push(v);
        }
    }
    let mut out = Vec::new();
    for d in docs {
        expand(d, &mut out);
    }
    Ok(out)
}

fn expand(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Null => {}
        Value::Array(items) => items.into_iter().for_each(|i| expand(i, out)),
        Value::Object(ref m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k == "List" || k.ends_with("List"))
                && m.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = m.get("items").cloned() {
                items.into_iter().for_each(|i| expand(i, out));
            }
        }
        other => out.push(other),
    }
}

/// Renders objects as a `---`-separated YAML stream.
pub(crate) fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(o)?);
    }
    Ok(out)
}
