//! `virtctl`: the command users type, with upstream virtctl's commands, flags, output and exit codes (0, or 1 with
//! the error on stderr). It reaches the cluster only through the Kubernetes API: `subresources.kubevirt.io`
//! (served by virt-api behind the API server), the core API (`expose`) and CDI's upload proxy (`image-upload`); `ssh`/`scp` run the local OpenSSH client over `port-forward`.

mod client;
mod commands;
mod console;
mod create;
mod error;
mod expand;
mod portforward;
mod ssh;
mod upload;
mod vnc;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Manage KubeVirt virtual machines.
#[derive(Debug, Parser)]
#[command(name = "virtctl", version, about)]
struct Cli {
    /// Path to the kubeconfig file (default: KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `vm` or `vmi` (and their long forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// A VirtualMachine.
    #[value(alias = "vms", alias = "virtualmachine", alias = "virtualmachines")]
    Vm,
    /// A VirtualMachineInstance.
    #[value(
        alias = "vmis",
        alias = "virtualmachineinstance",
        alias = "virtualmachineinstances"
    )]
    Vmi,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a virtual machine.
    Start {
        /// The VM.
        name: String,
        /// Start the VM paused.
        #[arg(long)]
        paused: bool,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop a virtual machine.
    Stop {
        /// The VM.
        name: String,
        /// Seconds the guest gets to shut down (-1: the VMI's own).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        grace_period: i64,
        /// Stop at once (with --grace-period 0 unless given).
        #[arg(long)]
        force: bool,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restart a virtual machine.
    Restart {
        /// The VM.
        name: String,
        /// With --force: seconds the guest gets (only 0 is supported).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        grace_period: i64,
        /// Restart at once.
        #[arg(long)]
        force: bool,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Migrate a virtual machine to another node.
    Migrate {
        /// The VM.
        name: String,
        /// Extra node selector for the target node (key=value,...).
        #[arg(long = "addedNodeSelector", value_delimiter = ',')]
        added_node_selector: Vec<String>,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cancel the migration of a virtual machine.
    MigrateCancel {
        /// The VM.
        name: String,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Pause a virtual machine (vm or vmi).
    Pause {
        /// vm or vmi.
        kind: Kind,
        /// Its name.
        name: String,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Unpause a virtual machine (vm or vmi).
    Unpause {
        /// vm or vmi.
        kind: Kind,
        /// Its name.
        name: String,
        /// Only validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reboot the guest gracefully (guest agent or ACPI).
    SoftReboot {
        /// The VMI.
        name: String,
    },
    /// Reset the virtual machine (a hard reset).
    Reset {
        /// The VMI.
        name: String,
    },
    /// The guest agent's OS information (JSON).
    Guestosinfo {
        /// The VMI.
        name: String,
    },
    /// Users logged in to the guest (JSON).
    Userlist {
        /// The VMI.
        name: String,
    },
    /// The guest's file systems (JSON).
    Fslist {
        /// The VMI.
        name: String,
    },
    /// Connect to the serial console (escape: Ctrl+]).
    Console {
        /// The VMI.
        name: String,
        /// Minutes to keep trying while the VMI is not running yet.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Open a VNC connection (a local proxy; a viewer is started when one is installed).
    Vnc(vnc::Args),
    /// Add a volume (a DataVolume or PVC) to a VM or VMI.
    Addvolume(volumes::AddArgs),
    /// Remove a hotplugged volume from a VM or VMI.
    Removevolume(volumes::RemoveArgs),
    /// Upload a VM image to a DataVolume (`dv NAME --size 10Gi --image-path FILE`).
    ImageUpload(upload::Args),
    /// Forward local ports to a vm or vmi (TYPE/NAME[/NAMESPACE] [PROTOCOL/]LOCAL[:REMOTE]...).
    PortForward(portforward::Args),
    /// Open an SSH connection to a vm or vmi (the local ssh client through port-forward).
    Ssh(ssh::SshArgs),
    /// Copy files to or from a vm or vmi (the local scp client through port-forward).
    Scp(ssh::ScpArgs),
    /// Create a Service for a vm, vmi or vmirs.
    Expose(commands::ExposeArgs),
    /// Return the VirtualMachine object with expanded instancetype and preference.
    Expand(expand::Args),
    /// Create a manifest (printed, not applied).
    Create {
        #[command(subcommand)]
        what: CreateWhat,
    },
    /// Print a shell completion script (`source <(virtctl completion bash)`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the client and server versions.
    Version {
        /// The client version only.
        #[arg(short, long)]
        client: bool,
    },
}

/// What `create` makes.
#[derive(Debug, Subcommand)]
enum CreateWhat {
    /// A VirtualMachine manifest.
    Vm(Box<create::VmArgs>),
}

fn main() -> ExitCode {
    // Usage errors exit 1, as upstream's virtctl (cobra) does; help and version print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(commands::run(cli));
    // Stdin readers of a console may still block: do not wait for them.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
