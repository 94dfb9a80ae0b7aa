//! `virtctl expand --vm NAME | --file FILE [-o yaml|json]`: the VirtualMachine with its instancetype and preference
//! expanded into its template, as virt-api's `expand-spec` (a stored VM) or `expand-vm-spec` (a VM from a file or
//! stdin) answers; upstream's messages and output formats.

use std::io::Read as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::client::Cluster;
use crate::error::Failure;

/// Arguments of `virtctl expand`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Specify VirtualMachine name that should be expanded. Mutually exclusive with "--file" flag.
    #[arg(long, conflicts_with = "file")]
    vm: Option<String>,
    /// If present, the Virtual Machine spec in provided file will be expanded ("-" reads stdin). Mutually exclusive
    /// with "--vm" flag.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Specify a format that will be used to display output.
    #[arg(long, short = 'o', default_value = "yaml")]
    output: String,
}

/// Checks the arguments as upstream does before connecting.
///
/// # Errors
/// Neither a VM nor a file, or an unknown output format.
pub(crate) fn check(args: &Args) -> Result<(), Failure> {
    if args.vm.is_none() && args.file.is_none() {
        return Err("error invalid arguments - VirtualMachine name or file must be provided".into());
    }
    if args.output != "yaml" && args.output != "json" {
        return Err(format!(
            "error not supported output format defined: {}",
            args.output
        ));
    }
    Ok(())
}

/// Reads a VM (YAML or JSON) from `path` or stdin (`-`).
fn read_vm(path: &std::path::Path) -> Result<Value, Failure> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("error reading from stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("error reading file {e}"))?
    };
    serde_norway::from_str(&text).map_err(|e| format!("error decoding VirtualMachine {e}"))
}

/// Runs `virtctl expand`.
///
/// # Errors
/// Upstream's messages.
pub(crate) async fn run(c: &Cluster, args: &Args) -> Result<(), Failure> {
    check(args)?;
    let ns = &c.namespace;
    let expanded = if let Some(name) = &args.vm {
        c.get(&c.path("virtualmachines", name, "expand-spec"))
            .await
            .map_err(|e| format!("error expanding VirtualMachine - {name} in namespace - {ns}: {e}"))?
    } else {
        let vm = read_vm(args.file.as_deref().unwrap_or(std::path::Path::new("-")))?;
        let name = vm
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let path = format!("/apis/subresources.kubevirt.io/v1/namespaces/{ns}/expand-vm-spec");
        c.put_for_body(&path, vm.to_string().into_bytes())
            .await
            .map_err(|e| format!("error expanding VirtualMachine - {name} in namespace - {ns}: {e}"))?
    };
    let vm: Value = serde_json::from_slice(&expanded).map_err(|e| e.to_string())?;
    print!("{}", render(&vm, &args.output)?);
    Ok(())
}

/// The VM as upstream prints it: YAML, or JSON indented by one space.
fn render(vm: &Value, output: &str) -> Result<String, Failure> {
    if output == "json" {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(vm, &mut ser).map_err(|e| e.to_string())?;
        return String::from_utf8(out).map_err(|e| e.to_string());
    }
    serde_norway::to_string(vm).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_and_formats() {
        let args = |vm: Option<&str>, output: &str| Args {
            vm: vm.map(str::to_string),
            file: None,
            output: output.into(),
        };
        assert_eq!(
            check(&args(None, "yaml")).unwrap_err(),
            "error invalid arguments - VirtualMachine name or file must be provided"
        );
        assert_eq!(
            check(&args(Some("v"), "xml")).unwrap_err(),
            "error not supported output format defined: xml"
        );
        let vm = serde_json::json!({"kind": "VirtualMachine", "spec": {"runStrategy": "Always"}});
        assert_eq!(
            render(&vm, "json").unwrap(),
            "{\n \"kind\": \"VirtualMachine\",\n \"spec\": {\n  \"runStrategy\": \"Always\"\n }\n}"
        );
        assert!(render(&vm, "yaml").unwrap().contains("runStrategy: Always"));
    }
}
