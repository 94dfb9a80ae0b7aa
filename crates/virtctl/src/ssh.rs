//! `virtctl ssh` and `virtctl scp`: the local OpenSSH client, reaching the VM through `virtctl port-forward --stdio`
//! as its ProxyCommand — upstream's command lines, plus the kubeconfig, context and namespace this virtctl was given,
//! so the proxy talks to the same cluster.

use std::path::PathBuf;

use crate::error::Failure;
use crate::portforward::parse_target;

/// Flags `ssh` and `scp` share.
#[derive(Debug, clap::Args)]
pub(crate) struct SshFlags {
    /// The user to log in as (default: $USER, $USERNAME or $LOGNAME).
    #[arg(short = 'l', long)]
    username: Option<String>,
    /// A private key for authentication (default: the ssh client's own choice).
    #[arg(short = 'i', long)]
    identity_file: Option<PathBuf>,
    /// The known_hosts file (accepted for upstream's command lines; pass `-t -oUserKnownHostsFile=…` to use one).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// The VM's SSH port.
    #[arg(short = 'p', long, default_value_t = 22)]
    port: u16,
    /// Extra options for the local ssh client (repeatable), e.g. `-t "-o StrictHostKeyChecking=no"`.
    #[arg(short = 't', long = "local-ssh-opts", allow_hyphen_values = true)]
    local_ssh_opts: Vec<String>,
}

/// `ssh`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SshArgs {
    /// [USER@]TYPE/NAME[/NAMESPACE].
    target: String,
    #[command(flatten)]
    flags: SshFlags,
    /// A command to run in the VM instead of a shell.
    #[arg(short = 'c', long)]
    command: Option<String>,
}

/// `scp`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ScpArgs {
    /// Source: a local path or [USER@]TYPE/NAME[/NAMESPACE]:PATH.
    source: String,
    /// Destination: a local path or [USER@]TYPE/NAME[/NAMESPACE]:PATH.
    destination: String,
    #[command(flatten)]
    flags: SshFlags,
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Keep modification times and modes.
    #[arg(long)]
    preserve: bool,
}

/// What virtctl itself was run with, for the ProxyCommand.
#[derive(Debug, Default)]
pub(crate) struct Origin {
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
}

fn default_user() -> Option<String> {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// `[user@]type/name[/ns]` → (user, resource kind for the host alias, namespace, name).
fn parse_remote(arg: &str) -> Result<(Option<String>, &'static str, String, String), Failure> {
    let (user, rest) = match arg.split_once('@') {
        Some(("", _)) => return Err("expected username before '@'".into()),
        Some((u, rest)) => (Some(u.to_string()), rest),
        None => (None, arg),
    };
    if rest.is_empty() {
        return Err("expected target after '@'".into());
    }
    let (resource, ns, name) = parse_target(rest)?;
    let kind = if resource == "virtualmachines" {
        "vm"
    } else {
        "vmi"
    };
    Ok((user, kind, ns, name))
}

/// Single-quotes `s` for the shell ssh runs the ProxyCommand with.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `-o ProxyCommand=…` and the common options, as upstream builds them.
fn common(origin: &Origin, kind: &str, ns: &str, name: &str, flags: &SshFlags) -> Vec<String> {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "virtctl".into());
    let mut proxy = format!("ProxyCommand={}", quote(&exe));
    if let Some(k) = &origin.kubeconfig {
        proxy.push_str(&format!(" --kubeconfig {}", quote(&k.display().to_string())));
    }
    if let Some(c) = &origin.context {
        proxy.push_str(&format!(" --context {}", quote(c)));
    }
    proxy.push_str(&format!(
        " port-forward --stdio=true {kind}/{name}/{ns} {}",
        flags.port
    ));
    let mut args = vec!["-o".to_string(), proxy];
    args.extend(flags.local_ssh_opts.iter().cloned());
    if let Some(i) = &flags.identity_file {
        args.push("-i".into());
        args.push(i.display().to_string());
    }
    args
}

async fn exec(program: &str, args: &[String]) -> Result<(), Failure> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .map_err(|e| format!("running {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

/// The ssh client's command line for `virtctl ssh` (without the program name).
pub(crate) fn ssh_args(origin: &Origin, namespace: &str, a: &SshArgs) -> Result<Vec<String>, Failure> {
    let (user, kind, ns, name) = parse_remote(&a.target)?;
    let ns = if ns.is_empty() { namespace.to_string() } else { ns };
    let user = user.or_else(|| a.flags.username.clone()).or_else(default_user);
    let mut args = common(origin, kind, &ns, &name, &a.flags);
    let host = format!("{kind}.{name}.{ns}");
    args.push(match user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    });
    if let Some(c) = &a.command {
        args.push(c.clone());
    }
    Ok(args)
}

/// Runs the local ssh client.
pub(crate) async fn ssh(origin: &Origin, namespace: &str, a: &SshArgs) -> Result<(), Failure> {
    exec("ssh", &ssh_args(origin, namespace, a)?).await
}

/// A remote location `[user@]type/name[/ns]:path`, if `arg` is one.
fn remote_location(arg: &str) -> Option<(&str, &str)> {
    let (target, path) = arg.split_once(':')?;
    target.contains('/').then_some((target, path))
}

/// The scp client's command line for `virtctl scp` (without the program name).
pub(crate) fn scp_args(origin: &Origin, namespace: &str, a: &ScpArgs) -> Result<Vec<String>, Failure> {
    let (remote, to_remote) = match (remote_location(&a.source), remote_location(&a.destination)) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "copying from a remote location to another remote location is not supported: {} to {}",
                a.source, a.destination
            ));
        }
        (None, None) => {
            return Err(format!(
                "none of the two provided locations seems to be a remote location: {} to {}",
                a.source, a.destination
            ));
        }
        (Some(r), None) => (r, false),
        (None, Some(r)) => (r, true),
    };
    let (target, path) = remote;
    let (user, kind, ns, name) = parse_remote(target)?;
    let ns = if ns.is_empty() { namespace.to_string() } else { ns };
    let user = user.or_else(|| a.flags.username.clone()).or_else(default_user);
    let mut args = common(origin, kind, &ns, &name, &a.flags);
    if a.recursive {
        args.push("-r".into());
    }
    if a.preserve {
        args.push("-p".into());
    }
    let host = match user {
        Some(u) => format!("{u}@{kind}.{name}.{ns}:{path}"),
        None => format!("{kind}.{name}.{ns}:{path}"),
    };
    if to_remote {
        args.push(a.source.clone());
        args.push(host);
    } else {
        args.push(host);
        args.push(a.destination.clone());
    }
    Ok(args)
}

/// Runs the local scp client.
pub(crate) async fn scp(origin: &Origin, namespace: &str, a: &ScpArgs) -> Result<(), Failure> {
    exec("scp", &scp_args(origin, namespace, a)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    enum Cmd {
        Ssh(SshArgs),
        Scp(ScpArgs),
    }

    fn origin() -> Origin {
        Origin {
            kubeconfig: Some("/k/config".into()),
            context: None,
        }
    }

    #[test]
    fn ssh_and_scp_build_upstreams_command_lines() {
        let Cmd::Ssh(a) = Cmd::parse_from([
            "x",
            "ssh",
            "root@vmi/testvmi",
            "-p",
            "2222",
            "-t",
            "-o StrictHostKeyChecking=no",
            "-c",
            "uname -a",
        ]) else {
            panic!()
        };
        let args = ssh_args(&origin(), "default", &a).unwrap();
        assert_eq!(args[0], "-o");
        assert!(args[1].starts_with("ProxyCommand="), "{}", args[1]);
        assert!(
            args[1].ends_with(" --kubeconfig /k/config port-forward --stdio=true vmi/testvmi/default 2222"),
            "{}",
            args[1]
        );
        assert_eq!(
            &args[2..],
            [
                "-o StrictHostKeyChecking=no",
                "root@vmi.testvmi.default",
                "uname -a"
            ]
        );

        let Cmd::Scp(a) = Cmd::parse_from(["x", "scp", "-r", "-l", "me", "dir", "vm/v1/ns1:/tmp"]) else {
            panic!()
        };
        let args = scp_args(&origin(), "default", &a).unwrap();
        assert_eq!(&args[2..], ["-r", "dir", "me@vm.v1.ns1:/tmp"]);
        let Cmd::Scp(a) = Cmd::parse_from(["x", "scp", "a", "b"]) else {
            panic!()
        };
        assert!(
            scp_args(&origin(), "d", &a)
                .unwrap_err()
                .starts_with("none of the two")
        );
        let Cmd::Scp(a) = Cmd::parse_from(["x", "scp", "vm/a:x", "vm/b:y"]) else {
            panic!()
        };
        assert!(
            scp_args(&origin(), "d", &a)
                .unwrap_err()
                .starts_with("copying from a remote")
        );
        assert_eq!(parse_remote("@vm/x").unwrap_err(), "expected username before '@'");
    }
}
