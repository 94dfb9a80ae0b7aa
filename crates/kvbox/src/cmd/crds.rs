//! `kvbox crds`: prints every CRD manifest (`kubectl apply -f` ready).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let text = crate::manifest::to_yaml_stream(&kubevirt_api::crd::all())?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
