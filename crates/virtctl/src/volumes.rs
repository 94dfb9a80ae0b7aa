//! `virtctl addvolume` / `removevolume`: the hotplug requests upstream's virtctl sends — the VM's endpoint first, the
//! VMI's when there is no such VM — retried while a concurrent change makes the server's guarded patch fail.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{CallError, Cluster};
use crate::error::Failure;

const RETRIES: u32 = 15;
const CONCURRENT: &str = "the server rejected our request due to an error in our request";

/// `addvolume`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The VM or VMI.
    name: String,
    /// The volume source: a DataVolume or PersistentVolumeClaim.
    #[arg(long)]
    volume_name: String,
    /// The name in the spec's disks and volumes (default: the volume's).
    #[arg(long)]
    disk_name: Option<String>,
    /// The disk's serial number (default: its name).
    #[arg(long)]
    serial: Option<String>,
    /// none, writethrough or writeback.
    #[arg(long)]
    cache: Option<String>,
    /// disk or lun.
    #[arg(long, default_value = "disk")]
    disk_type: String,
    /// The bus: scsi (default) or virtio (disks only).
    #[arg(long, default_value = "scsi")]
    bus: String,
    /// Deprecated: has no effect.
    #[arg(long)]
    persist: bool,
    /// Only validate the request.
    #[arg(long)]
    dry_run: bool,
}

/// `removevolume`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RemoveArgs {
    /// The VM or VMI.
    name: String,
    /// The volume's name in the spec.
    #[arg(long)]
    volume_name: String,
    /// Deprecated: has no effect.
    #[arg(long)]
    persist: bool,
    /// Only validate the request.
    #[arg(long)]
    dry_run: bool,
}

fn dry(d: bool) -> Value {
    if d { json!(["All"]) } else { Value::Null }
}

/// A DataVolume of that name, else a PVC, as the hotplug source.
async fn source(c: &Cluster, volume: &str) -> Result<Value, Failure> {
    let ns = &c.namespace;
    if c.get(&format!(
        "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes/{volume}"
    ))
    .await
    .is_ok()
    {
        return Ok(json!({"dataVolume": {"name": volume, "hotpluggable": true}}));
    }
    if c.get(&format!(
        "/api/v1/namespaces/{ns}/persistentvolumeclaims/{volume}"
    ))
    .await
    .is_ok()
    {
        return Ok(json!({"persistentVolumeClaim": {"claimName": volume, "hotpluggable": true}}));
    }
    Err(format!(
        "Volume {volume} is not a DataVolume or PersistentVolumeClaim"
    ))
}

/// PUTs `body` to the VM's `sub`, then to the VMI's when the VM does not exist; retries concurrent-change refusals.
async fn submit(c: &Cluster, name: &str, sub: &str, body: &Value) -> Result<(), (bool, CallError)> {
    let mut last = None;
    for attempt in 0..RETRIES {
        let mut r = c.put_status(&c.path("virtualmachines", name, sub), body).await;
        if matches!(&r, Err((404, _))) {
            r = c
                .put_status(&c.path("virtualmachineinstances", name, sub), body)
                .await;
        }
        match r {
            Ok(()) => return Ok(()),
            Err((_, e)) if e.to_string() == CONCURRENT || e.to_string().contains("testing value") => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 3)).await;
            }
            Err((_, e)) => return Err((false, e)),
        }
    }
    Err((
        true,
        last.unwrap_or_else(|| CallError::Client("no attempt".into())),
    ))
}

/// Runs `addvolume`.
pub(crate) async fn add(c: &Cluster, a: AddArgs) -> Result<(), Failure> {
    let _ = a.persist;
    let src = source(c, &a.volume_name)
        .await
        .map_err(|e| format!("error adding volume, {e}"))?;
    let hotplug = a.disk_name.clone().unwrap_or_else(|| a.volume_name.clone());
    if hotplug.len() > 63 {
        return Err(match &a.disk_name {
            Some(d) => format!("Invalid disk name {d}, must not exceed 63 characters"),
            None => format!(
                "Invalid volume name {}, must not exceed 63 characters. Use in conjunction with --disk-name to specify a shorter name",
                a.volume_name
            ),
        });
    }
    let mut disk = match a.disk_type.as_str() {
        "disk" if matches!(a.bus.as_str(), "scsi" | "virtio") => json!({"disk": {"bus": a.bus}}),
        "disk" => {
            return Err(format!(
                "Invalid bus type '{}' for disk. Only 'scsi' and 'virtio' are supported.",
                a.bus
            ));
        }
        "lun" if a.bus == "scsi" => json!({"lun": {"bus": "scsi"}}),
        "lun" => {
            return Err(format!(
                "Invalid bus type '{}' for LUN disk. Only 'scsi' bus is supported.",
                a.bus
            ));
        }
        other => {
            return Err(format!(
                "Invalid disk type '{other}'. Only LUN and Disk are supported."
            ));
        }
    };
    disk["name"] = json!(hotplug);
    disk["serial"] = json!(a.serial.clone().unwrap_or_else(|| hotplug.clone()));
    if let Some(cache) = &a.cache {
        if !matches!(cache.as_str(), "none" | "writethrough" | "writeback") {
            return Err(format!("error adding volume, invalid cache value {cache}"));
        }
        disk["cache"] = json!(cache);
    }
    let mut body = json!({"name": hotplug, "disk": disk, "volumeSource": src});
    if a.dry_run {
        body["dryRun"] = dry(true);
    }
    submit(c, &a.name, "addvolume", &body)
        .await
        .map_err(|(exhausted, e)| {
            if exhausted {
                format!("error adding volume after {RETRIES} retries")
            } else {
                format!("error adding volume, {e}")
            }
        })?;
    println!(
        "Successfully submitted add volume request to VM {} for volume {}",
        a.name, a.volume_name
    );
    Ok(())
}

/// Runs `removevolume`.
pub(crate) async fn remove(c: &Cluster, a: RemoveArgs) -> Result<(), Failure> {
    let _ = a.persist;
    let mut body = json!({"name": a.volume_name});
    if a.dry_run {
        body["dryRun"] = dry(true);
    }
    submit(c, &a.name, "removevolume", &body)
        .await
        .map_err(|(exhausted, e)| {
            if exhausted {
                format!("error removing volume after {RETRIES} retries")
            } else {
                format!("error removing volume, {e}")
            }
        })?;
    println!(
        "Successfully submitted remove volume request to VM {} for volume {}",
        a.name, a.volume_name
    );
    Ok(())
}
