//! Network phase 1 (upstream's "netpod"), run by the node agent inside a launcher pod's network namespace: read
//! the pod interface ([`facts`]), plan the binding's plumbing ([`plan`]: bridge, tap, dummy, renames, sysctls,
//! nftables — pure, table-tested) and apply it ([`apply`]).
//!
//! Applied with iproute2 and nft entered into the namespace (`nsenter --net=…`), not netlink from this process:
//! one `ip -batch` and one `nft -f` file per interface make each step a single atomic or ordered call, the plans
//! stay plain text a test can compare line by line, and the handler needs no netlink crate tree. Nothing here
//! knows box mode or KubeVirt's API: the caller says what to plumb.

pub mod facts;
pub mod nft;
pub mod plan;

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

pub use facts::PodLink;
pub use plan::{Binding, Placeholder, Plan, Request};

/// Why plumbing failed.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// The pod has no such interface.
    #[error("the pod has no interface {0}")]
    NoLink(String),
    /// iproute2 answered something unexpected.
    #[error("reading the pod interface: {0}")]
    Parse(String),
    /// What was asked cannot be plumbed (a bad CIDR, no gateway).
    #[error("{0}")]
    Invalid(String),
    /// A tool failed.
    #[error("{tool} in the pod's network namespace: {message}")]
    Tool {
        /// `ip`, `nft` or `sysctl`.
        tool: &'static str,
        /// Its error output.
        message: String,
    },
}

/// Runs `args` inside the network namespace at `netns` (`/proc/PID/ns/net`), `input` on its stdin.
async fn run(
    netns: &Path,
    tool: &'static str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, PlumbError> {
    let fail = |message: String| PlumbError::Tool { tool, message };
    let mut child = tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("running nsenter: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().await.map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// The pod interface `name` in the namespace at `netns`, as it is now.
///
/// # Errors
/// [`PlumbError`]: no such interface, or iproute2 failed.
pub async fn discover(netns: &Path, name: &str) -> Result<PodLink, PlumbError> {
    let addrs = run(netns, "ip", &["-j", "addr", "show", "dev", name], None)
        .await
        .map_err(|e| match e {
            PlumbError::Tool { message, .. } if message.contains("does not exist") => {
                PlumbError::NoLink(name.to_string())
            }
            other => other,
        })?;
    let routes = run(netns, "ip", &["-j", "-4", "route", "show", "dev", name], None).await?;
    facts::parse(name, &addrs, &routes)
}

/// Undoes phase 1 of an unplugged bridge-bound interface: its in-pod bridge, its tap, and the renamed pod
/// interface (whose removal takes the veth's other end with it). What is already gone is skipped.
///
/// # Errors
/// `ip` could not be run.
pub async fn unplumb(
    netns: &Path,
    iface: &launcher_protocol::network::PlumbedInterface,
) -> Result<(), PlumbError> {
    let renamed = format!(
        "{}-nic",
        iface
            .pod_interface
            .strip_prefix("pod")
            .unwrap_or(&iface.pod_interface)
    );
    let batch = format!(
        "link del {}\nlink del {}\nlink del {renamed}\n",
        iface.bridge, iface.tap
    );
    match run(netns, "ip", &["-force", "-batch", "-"], Some(&batch)).await {
        // `-force` goes on past links that are gone, and still says so.
        Err(e) if !e.to_string().contains("Cannot find device") => Err(e),
        _ => Ok(()),
    }
}

/// Applies `plan` in the namespace at `netns`: links in order, then sysctls, then the ruleset.
///
/// # Errors
/// [`PlumbError::Tool`] naming the step that failed; what was made before stays (it dies with the namespace).
pub async fn apply(netns: &Path, plan: &Plan) -> Result<(), PlumbError> {
    let batch = plan.ip.join("\n") + "\n";
    run(netns, "ip", &["-batch", "-"], Some(&batch)).await?;
    if let Some(keep) = &plan.placeholder {
        let name = keep.name.as_str();
        if let Err(e) = run(netns, "ip", &["link", "add", name, "type", "dummy"], None).await {
            tracing::debug!(error = %e, "no dummy links here: an idle bridge keeps the pod interface's place");
            run(netns, "ip", &["link", "add", name, "type", "bridge"], None).await?;
        }
        let batch = keep.then.join("\n") + "\n";
        run(netns, "ip", &["-batch", "-"], Some(&batch)).await?;
    }
    if !plan.sysctls.is_empty() {
        let mut args = vec!["-q", "-w"];
        args.extend(plan.sysctls.iter().map(String::as_str));
        run(netns, "sysctl", &args, None).await?;
    }
    if let Some(rules) = &plan.nft {
        run(netns, "nft", &["-f", "-"], Some(rules)).await?;
    }
    Ok(())
}
