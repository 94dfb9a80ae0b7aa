//! The commands, with upstream virtctl's request bodies, success lines and error texts (spelling included).

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceReplicaSet};
use serde_json::{Value, json};

use crate::client::Cluster;
use crate::{Cli, Command, Kind};

use crate::error::Failure;

fn dry(d: bool) -> Value {
    if d {
        println!("Dry Run execution");
        json!(["All"])
    } else {
        Value::Null
    }
}

fn body(fields: Value) -> Value {
    // Unset options are left out, as Go's omitempty does.
    match fields {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Version { client: true } = cli.command {
        println!("Client Version: {}", client_version());
        return Ok(());
    }
    if let Command::Completion { shell } = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "virtctl", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Create {
        what: crate::CreateWhat::Vm(args),
    } = &cli.command
    {
        return crate::create::run(args, cli.namespace.as_deref());
    }
    if let Command::Expand(args) = &cli.command {
        // Upstream checks the arguments before it connects.
        crate::expand::check(args)?;
    }
    let origin = crate::ssh::Origin {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    let c = Cluster::connect(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
        cli.namespace.as_deref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    match cli.command {
        Command::Expand(args) => crate::expand::run(&c, &args).await?,
        Command::Start {
            name,
            paused,
            dry_run,
        } => start(&c, &name, paused, dry_run).await?,
        Command::Stop {
            name,
            grace_period,
            force,
            dry_run,
        } => stop(&c, &name, grace_period, force, dry_run).await?,
        Command::Restart {
            name,
            grace_period,
            force,
            dry_run,
        } => restart(&c, &name, grace_period, force, dry_run).await?,
        Command::Migrate {
            name,
            added_node_selector,
            dry_run,
        } => migrate(&c, &name, &added_node_selector, dry_run).await?,
        Command::MigrateCancel { name, dry_run } => {
            migrate_cancel(&c, &name, dry_run).await?;
            println!("VM {name} was scheduled to migrate-cancel");
        }
        Command::Pause { kind, name, dry_run } => {
            if kind == Kind::Vm {
                vmi_of_vm(&c, &name, "pausing").await?;
            }
            vmi_put(&c, &name, "pause", dry_run, "Error pausing").await?;
            println!("VMI {name} was scheduled to pause");
        }
        Command::Unpause { kind, name, dry_run } => {
            if kind == Kind::Vm {
                vmi_of_vm(&c, &name, "unpausing").await?;
            }
            vmi_put(&c, &name, "unpause", dry_run, "Error unpausing").await?;
            println!("VMI {name} was scheduled to unpause");
        }
        Command::SoftReboot { name } => {
            vmi_put(&c, &name, "softreboot", false, "Error soft rebooting").await?;
            println!("VMI {name} was scheduled to soft-reboot");
        }
        Command::Reset { name } => {
            // Upstream's spelling.
            vmi_put(&c, &name, "reset", false, "Error reseting").await?;
            println!("VMI {name} was scheduled to reset");
        }
        Command::Guestosinfo { name } => {
            guest(&c, &name, "guestosinfo", "Error getting guestosinfo of").await?
        }
        Command::Userlist { name } => guest(&c, &name, "userlist", "Error listing users of").await?,
        Command::Fslist { name } => {
            guest(&c, &name, "filesystemlist", "Error listing filesystems of").await?
        }
        Command::Console { name, timeout } => crate::console::run(&c, &name, timeout).await?,
        Command::Vnc(args) => crate::vnc::run(&c, args).await?,
        Command::Expose(args) => expose(&c, args).await?,
        Command::Addvolume(args) => crate::volumes::add(&c, args).await?,
        Command::Removevolume(args) => crate::volumes::remove(&c, args).await?,
        Command::ImageUpload(args) => crate::upload::run(&c, args).await?,
        Command::PortForward(args) => crate::portforward::run(&c, args).await?,
        Command::Ssh(args) => crate::ssh::ssh(&origin, &c.namespace, &args).await?,
        Command::Scp(args) => crate::ssh::scp(&origin, &c.namespace, &args).await?,
        Command::Completion { .. } | Command::Create { .. } => {}
        Command::Version { .. } => {
            println!("Client Version: {}", client_version());
            let server = server_version(&c)
                .await
                .map_err(|e| format!("failed to get server version: {e}"))?;
            println!("Server Version: {server}");
        }
    }
    Ok(())
}

/// `start`: the VM's start subresource (paused if asked).
async fn start(c: &Cluster, name: &str, paused: bool, dry_run: bool) -> Result<(), Failure> {
    let b = body(json!({"paused": paused.then_some(true), "dryRun": dry(dry_run)}));
    c.put(&c.path("virtualmachines", name, "start"), &b)
        .await
        .map_err(|e| format!("Error starting VirtualMachine {e}"))?;
    println!("VM {name} was scheduled to start");
    Ok(())
}

/// `stop`: the VM's stop subresource; `--force` with no grace period stops at once.
async fn stop(c: &Cluster, name: &str, grace_period: i64, force: bool, dry_run: bool) -> Result<(), Failure> {
    let grace = match (force, grace_period) {
        (true, g) if g < 0 => Some(0),
        (_, g) if g >= 0 => Some(g),
        _ => None,
    };
    let b = body(json!({"gracePeriod": grace, "dryRun": dry(dry_run)}));
    c.put(&c.path("virtualmachines", name, "stop"), &b)
        .await
        .map_err(|e| {
            if force {
                format!("error force stopping VirtualMachine: {e}")
            } else {
                format!("error stopping VirtualMachine {e}")
            }
        })?;
    println!("VM {name} was scheduled to stop");
    Ok(())
}

/// `restart`: the VM's restart subresource, with a grace period only when forced.
async fn restart(
    c: &Cluster,
    name: &str,
    grace_period: i64,
    force: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let grace = force.then_some(grace_period.max(0));
    let b = body(json!({"gracePeriodSeconds": grace, "dryRun": dry(dry_run)}));
    c.put(&c.path("virtualmachines", name, "restart"), &b)
        .await
        .map_err(|e| {
            if force {
                format!("error force restarting VirtualMachine: {e}")
            } else {
                format!("error restarting VirtualMachine: {e}")
            }
        })?;
    println!("VM {name} was scheduled to restart");
    Ok(())
}

/// `migrate`: the VM's migrate subresource, with the node selector entries added.
async fn migrate(
    c: &Cluster,
    name: &str,
    added_node_selector: &[String],
    dry_run: bool,
) -> Result<(), Failure> {
    let mut selector = serde_json::Map::new();
    for kv in added_node_selector {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("invalid --addedNodeSelector entry {kv:?}: expected key=value"))?;
        selector.insert(k.to_string(), json!(v));
    }
    let sel = (!selector.is_empty()).then_some(Value::Object(selector));
    let b = body(json!({"addedNodeSelector": sel, "dryRun": dry(dry_run)}));
    c.put(&c.path("virtualmachines", name, "migrate"), &b)
        .await
        .map_err(|e| format!("Error migrating VirtualMachine {e}"))?;
    println!("VM {name} was scheduled to migrate");
    Ok(())
}

/// A VMI lifecycle subresource (`pause`, `unpause`, `softreboot`, `reset`); a failure reads `{doing}
/// VirtualMachineInstance {name}: …`.
async fn vmi_put(c: &Cluster, name: &str, op: &str, dry_run: bool, doing: &str) -> Result<(), Failure> {
    let b = body(json!({"dryRun": dry(dry_run)}));
    c.put(&c.path("virtualmachineinstances", name, op), &b)
        .await
        .map_err(|e| format!("{doing} VirtualMachineInstance {name}: {e}"))?;
    Ok(())
}

/// `migrate-cancel`: deletes the VMI's migration that has not finished (upstream finds it by its
/// `kubevirt.io/vmi-name` label).
async fn migrate_cancel(c: &Cluster, name: &str, dry_run: bool) -> Result<(), Failure> {
    use kubevirt_api::v1::VirtualMachineInstanceMigration;
    let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(c.client.clone(), &c.namespace);
    let list = api
        .list(&kube::api::ListParams::default().labels(&format!("kubevirt.io/vmi-name=={name}")))
        .await
        // Upstream's words, double space included.
        .map_err(|e| format!("Error fetching virtual machine instance migration list  {e}"))?;
    let active = list.items.iter().find(|m| {
        !matches!(
            m.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    });
    let Some(m) = active else {
        return Err(format!("Found no migration to cancel for {name}"));
    };
    let mig = m.metadata.name.clone().unwrap_or_default();
    let params = kube::api::DeleteParams {
        dry_run,
        ..Default::default()
    };
    api.delete(&mig, &params)
        .await
        .map_err(|e| format!("Error canceling migration {mig} of a VirtualMachine {name}: {e}"))?;
    Ok(())
}

/// For `pause vm`/`unpause vm`: the VM must exist and have a VMI (upstream's messages otherwise).
async fn vmi_of_vm(c: &Cluster, name: &str, doing: &str) -> Result<(), Failure> {
    let vms: Api<VirtualMachine> = Api::namespaced(c.client.clone(), &c.namespace);
    let vm = vms
        .get(name)
        .await
        .map_err(|e| format!("Error getting VirtualMachine {name}: {e}"))?;
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), &c.namespace);
    if vmis.get_opt(name).await.ok().flatten().is_none() {
        let verb = if doing == "pausing" {
            "pausing"
        } else {
            "unpausing"
        };
        let halted = kubevirt_api::defaults::effective_run_strategy(&vm.spec) == "Halted";
        return Err(if halted {
            format!("Error {verb} VirtualMachineInstance {name}. VirtualMachine {name} is not set to run")
        } else {
            format!("Error {verb} VirtualMachineInstance {name}, it was not found")
        });
    }
    Ok(())
}

async fn guest(c: &Cluster, name: &str, op: &str, what: &str) -> Result<(), Failure> {
    let bytes = c
        .get(&c.path("virtualmachineinstances", name, op))
        .await
        .map_err(|e| format!("{what} VirtualMachineInstance {name}, {e}"))?;
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{what} VirtualMachineInstance {name}, {e}"))?;
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(())
}

fn client_version() -> String {
    format!(
        "version.Info{{GitVersion:\"v{}\", GitCommit:\"kubevirt-rs\", GitTreeState:\"clean\", BuildDate:\"\", GoVersion:\"rust\", Compiler:\"rustc\", Platform:\"{}/{}\"}}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        if std::env::consts::ARCH == "x86_64" {
            "amd64"
        } else {
            std::env::consts::ARCH
        }
    )
}

async fn server_version(c: &Cluster) -> Result<String, Failure> {
    let group: Value = serde_json::from_slice(
        &c.get("/apis/subresources.kubevirt.io")
            .await
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let gv = group
        .pointer("/preferredVersion/groupVersion")
        .and_then(Value::as_str)
        .unwrap_or("subresources.kubevirt.io/v1")
        .to_string();
    let v: Value = serde_json::from_slice(
        &c.get(&format!("/apis/{gv}/version"))
            .await
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(format!(
        "version.Info{{GitVersion:\"{}\", GitCommit:\"{}\", GitTreeState:\"{}\", BuildDate:\"{}\", GoVersion:\"{}\", Compiler:\"{}\", Platform:\"{}\"}}",
        s("gitVersion"),
        s("gitCommit"),
        s("gitTreeState"),
        s("buildDate"),
        s("goVersion"),
        s("compiler"),
        s("platform")
    ))
}

/// `virtctl expose`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExposeArgs {
    /// vm, vmi or vmirs.
    kind: String,
    /// Its name.
    name: String,
    /// The Service's name.
    #[arg(long = "name", id = "service_name")]
    service_name: String,
    /// The Service's port.
    #[arg(long)]
    port: u16,
    /// The port on the VM (default: --port).
    #[arg(long)]
    target_port: Option<u16>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type", default_value = "ClusterIP")]
    service_type: String,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    protocol: String,
    /// The port's name.
    #[arg(long)]
    port_name: Option<String>,
}

async fn expose(c: &Cluster, a: ExposeArgs) -> Result<(), Failure> {
    if a.service_type == "ExternalName" {
        return Err("service creation failed: type ExternalName is not supported".into());
    }
    let (selector, owner) = match a.kind.as_str() {
        "vmi" | "vmis" | "virtualmachineinstance" | "virtualmachineinstances" => {
            let api: Api<VirtualMachineInstance> = Api::namespaced(c.client.clone(), &c.namespace);
            let vmi = api
                .get(&a.name)
                .await
                .map_err(|e| format!("service creation failed: {e}"))?;
            (
                json!({"vmi.kubevirt.io/id": a.name}),
                owner_ref("VirtualMachineInstance", &vmi.metadata),
            )
        }
        "vm" | "vms" | "virtualmachine" | "virtualmachines" => {
            let api: Api<VirtualMachine> = Api::namespaced(c.client.clone(), &c.namespace);
            let vm = api
                .get(&a.name)
                .await
                .map_err(|e| format!("service creation failed: {e}"))?;
            (
                json!({"vmi.kubevirt.io/id": a.name}),
                owner_ref("VirtualMachine", &vm.metadata),
            )
        }
        "vmirs" | "vmirss" | "virtualmachineinstancereplicaset" | "virtualmachineinstancereplicasets" => {
            let api: Api<VirtualMachineInstanceReplicaSet> = Api::namespaced(c.client.clone(), &c.namespace);
            let rs = api
                .get(&a.name)
                .await
                .map_err(|e| format!("service creation failed: {e}"))?;
            let labels = rs.spec.selector.match_labels.clone().unwrap_or_default();
            if labels.is_empty() {
                return Err("service creation failed: the replica set's selector has no matchLabels".into());
            }
            (
                json!(labels),
                owner_ref("VirtualMachineInstanceReplicaSet", &rs.metadata),
            )
        }
        other => return Err(format!("unsupported resource type: {other}")),
    };
    let mut port =
        json!({"port": a.port, "targetPort": a.target_port.unwrap_or(a.port), "protocol": a.protocol});
    if let Some(n) = &a.port_name {
        port["name"] = json!(n);
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": a.service_name, "namespace": c.namespace, "ownerReferences": [owner]},
        "spec": {"selector": selector, "ports": [port], "type": a.service_type},
    }))
    .map_err(|e| format!("service creation failed: {e}"))?;
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.namespace);
    services
        .create(&PostParams::default(), &svc)
        .await
        .map_err(|e| format!("service creation failed: {e}"))?;
    println!(
        "Service {} successfully created for {} {}",
        a.service_name, a.kind, a.name
    );
    Ok(())
}

fn owner_ref(kind: &str, meta: &kube::api::ObjectMeta) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": kind, "name": meta.name, "uid": meta.uid,
        "controller": true, "blockOwnerDeletion": false})
}
