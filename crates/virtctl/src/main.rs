//! `virtctl`: the command users type. Today only `version`; the lifecycle, console and VNC commands need virt-api
//! (a later issue) and will reach the cluster only through the Kubernetes API.

use clap::{Parser, Subcommand};

/// Manage KubeVirt virtual machines.
#[derive(Debug, Parser)]
#[command(name = "virtctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the client version.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => {
            println!(
                "Client Version: version.Info{{GitVersion:\"v{}\", Implementation:\"kubevirt-rs\"}}",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
    Ok(())
}
