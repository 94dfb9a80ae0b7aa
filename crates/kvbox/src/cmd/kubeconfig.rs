//! `kvbox kubeconfig --user U [--group G]...`: issues a client certificate from a server's CA and prints a kubeconfig.
//!
//! Run it where the server's data dir is (like `kubeadm kubeconfig user`). The server reads the certificate's subject
//! as kube-apiserver does: CN is the user, each O a group; `system:masters` may write, other users may only read
//! until RBAC is enforced.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `kvbox kubeconfig`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's data directory (holding ca.crt, ca.key and kubeconfig.yaml).
    #[arg(long, default_value = "/var/lib/kvbox")]
    data_dir: PathBuf,
    /// User name: the certificate's subject CN.
    #[arg(long)]
    user: String,
    /// Group (subject O); repeat for several. `system:masters` grants writes.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Days the certificate stays valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Write the kubeconfig to this file (mode 0600) instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = apiserver::pki::client_kubeconfig(&args.data_dir, &args.user, &args.groups, args.days)
        .with_context(|| format!("issuing a certificate from {}", args.data_dir.display()))?;
    match &args.output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to stdout")?,
    }
    Ok(ExitCode::SUCCESS)
}
