//! `kvbox admit -f FILE...`: defaults and validation of every object, in order, as the API server would on
//! `kubectl apply`; instancetypes, preferences, presets, VMIs and the KubeVirt CR admitted earlier count as existing.
//!
//! Exit 0 with the defaulted objects printed; exit 1 with one `<kind>/<name>: <field>: <message>` line per violation;
//! exit 2 when a file cannot be read or parsed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kubevirt_api::admission::{Cluster, Outcome};
use kubevirt_api::object::{Object, display_name};

/// Arguments of `kvbox admit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Manifest files (YAML, multi-document, or JSON) or directories of them; `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Output format of the admitted objects.
    #[arg(short = 'o', long = "output", default_value = "yaml", value_parser = ["yaml", "json"])]
    output: String,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut docs = Vec::new();
    let files = match crate::manifest::expand_dirs(&args.files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    for f in &files {
        match crate::manifest::load(f) {
            Ok(d) => docs.extend(d),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let mut cluster = Cluster::default();
    let mut admitted = Vec::new();
    let mut failed = false;
    let stderr = &mut std::io::stderr().lock();
    for doc in docs {
        let who = display_name(&doc);
        let obj = match Object::from_value(doc) {
            Ok(o) => o,
            Err(kubevirt_api::DecodeError::Field { path, message, .. }) => {
                writeln!(stderr, "{who}: {path}: {message}")?;
                failed = true;
                continue;
            }
            Err(e) => {
                writeln!(stderr, "{who}: {e}")?;
                failed = true;
                continue;
            }
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let mut new_uuid = || uuid::Uuid::new_v4().to_string();
        match cluster.admit(obj, now, &mut new_uuid) {
            Outcome::Admitted { object, warnings } => {
                for w in warnings {
                    writeln!(stderr, "Warning: {who}: {w}")?;
                }
                admitted.push(object);
            }
            Outcome::Invalid(causes) => {
                failed = true;
                for c in causes {
                    let field = c.field.unwrap_or_default();
                    let msg = c.message.unwrap_or_default();
                    if field.is_empty() {
                        writeln!(stderr, "{who}: {msg}")?;
                    } else {
                        writeln!(stderr, "{who}: {field}: {msg}")?;
                    }
                }
            }
            Outcome::BadRequest(msg) => {
                failed = true;
                writeln!(stderr, "{who}: {msg}")?;
            }
        }
    }
    if failed {
        return Ok(ExitCode::from(1));
    }
    let text = if args.output == "json" {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": admitted});
        serde_json::to_string_pretty(&list).context("encoding JSON")? + "\n"
    } else {
        crate::manifest::to_yaml_stream(&admitted).context("encoding YAML")?
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
