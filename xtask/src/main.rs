//! Developer tasks. `cargo xtask gen-types` regenerates `crates/api/src/generated/` from upstream's OpenAPI document.
//!
//! The schema is fact: field names, JSON shapes, which fields are required. The generator turns each
//! `v1.*`, `v1beta1.*` and `v1alpha1.*` definition into a serde + schemars struct, maps the `k8s.io.*`
//! references onto `k8s-openapi` types, and splits the output into files by subject. Upstream's field
//! prose is deliberately not copied.

mod codegen;

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let root = workspace_root()?;
    match task.as_str() {
        "gen-types" => {
            let spec = args
                .next()
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/reference/kubevirt-openapi.json"));
            let text =
                std::fs::read_to_string(&spec).with_context(|| format!("reading {}", spec.display()))?;
            let doc: serde_json::Value =
                serde_json::from_str(&text).context("parsing the OpenAPI document")?;
            let out = root.join("crates/api/src/generated");
            let files = codegen::generate(&doc)?;
            if out.exists() {
                std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
            }
            for (rel, body) in &files {
                let path = out.join(rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("wrote {} files under {}", files.len(), out.display());
            Ok(())
        }
        other => bail!("unknown task {other:?}; tasks: gen-types [OPENAPI_JSON]"),
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}
