//! The standard CNI plugins, called as a container runtime calls them (CNI spec 1.0): the network configuration on
//! stdin, `CNI_COMMAND`/`CNI_CONTAINERID`/`CNI_NETNS`/`CNI_IFNAME`/`CNI_PATH` in the environment, the result (or an
//! error object) on stdout; configuration lists run their plugins in order (reversed for DEL), each given the previous
//! result. The pod network's configuration is a file in the data dir (`net.d/10-kvbox.conf`): a `bridge` with
//! `host-local` IPAM, written at first start and read on every call, so a user can change it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// Why a CNI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The configuration could not be read or written.
    #[error("CNI configuration {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The plugin could not be run.
    #[error("running the CNI plugin {plugin}: {source}")]
    Exec {
        /// Its path.
        plugin: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plugin reported an error.
    #[error("CNI {command} failed: {message}")]
    Plugin {
        /// ADD or DEL.
        command: &'static str,
        /// The plugin's message.
        message: String,
    },
}

/// The network of one node's pods.
#[derive(Clone, Debug)]
pub struct Cni {
    /// Where the plugin binaries are (Debian: `/usr/lib/cni`).
    pub bin_dir: PathBuf,
    /// The configuration file.
    pub conf: PathBuf,
    /// Where host-local keeps its leases (one directory per network name).
    pub ipam_dir: PathBuf,
}

/// What ADD returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The pod's IP (without prefix length): the first the plugin gave.
    pub ip: String,
    /// Every IP it gave (a dual-stack pod has two), in its order.
    pub ips: Vec<String>,
    /// The gateway, when the plugin set one.
    pub gateway: Option<String>,
    /// The pod interface's MAC, when the plugin said.
    pub mac: Option<String>,
}

impl Cni {
    /// Uses `conf`, writing a bridge + host-local configuration there first if it does not exist.
    ///
    /// # Errors
    /// [`CniError::Config`] when it cannot be written.
    pub fn init(
        bin_dir: &Path,
        conf: &Path,
        bridge: &str,
        subnet: &str,
        ipam_dir: &Path,
    ) -> Result<Self, CniError> {
        let err = |message: String| CniError::Config {
            path: conf.to_path_buf(),
            message,
        };
        if !conf.exists() {
            // Dual stack as a cluster's `--cluster-cidr`: `v4,v6`, a range set each.
            let subnets: Vec<&str> = subnet
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let ranges: Vec<Value> = subnets.iter().map(|s| json!([{"subnet": s}])).collect();
            let mut routes = Vec::new();
            if subnets.iter().any(|s| !s.contains(':')) {
                routes.push(json!({"dst": "0.0.0.0/0"}));
            }
            if subnets.iter().any(|s| s.contains(':')) {
                routes.push(json!({"dst": "::/0"}));
            }
            let value = json!({
                "cniVersion": "1.0.0",
                "name": "kvbox",
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": ipam_dir},
            });
            if let Some(dir) = conf.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let text = serde_json::to_string_pretty(&value).map_err(|e| err(e.to_string()))?;
            std::fs::write(conf, text + "\n").map_err(|e| err(e.to_string()))?;
        }
        Ok(Self {
            bin_dir: bin_dir.to_path_buf(),
            conf: conf.to_path_buf(),
            ipam_dir: ipam_dir.to_path_buf(),
        })
    }

    fn config(&self) -> Result<Value, CniError> {
        let err = |message: String| CniError::Config {
            path: self.conf.clone(),
            message,
        };
        let text = std::fs::read_to_string(&self.conf).map_err(|e| err(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if v.get("type").and_then(Value::as_str).is_none() {
            return Err(err("no \"type\": which plugin?".into()));
        }
        Ok(v)
    }

    async fn call(
        &self,
        command: &'static str,
        id: &str,
        netns: &Path,
        ifname: &str,
        runtime_config: Option<&Value>,
    ) -> Result<Value, CniError> {
        let mut conf = self.config()?;
        if let Some(rc) = runtime_config {
            conf["runtimeConfig"] = rc.clone();
        }
        run(&self.bin_dir, command, &conf, id, netns, ifname).await
    }

    /// The network's name (host-local keeps its leases under `ipam_dir/<name>`).
    ///
    /// # Errors
    /// The configuration cannot be read.
    pub fn network_name(&self) -> Result<String, CniError> {
        let conf = self.config()?;
        Ok(conf
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// ADD: wires `ifname` into `netns` and returns its address.
    ///
    /// # Errors
    /// [`CniError`]; a plugin result without an IP is an error too.
    pub async fn add(&self, id: &str, netns: &Path, ifname: &str) -> Result<Attached, CniError> {
        self.add_with(id, netns, ifname, None).await
    }

    /// ADD with a runtime configuration (`{"ips": [...], "mac": ...}`: the capabilities host-local and bridge
    /// honour).
    ///
    /// # Errors
    /// As [`Cni::add`].
    pub async fn add_with(
        &self,
        id: &str,
        netns: &Path,
        ifname: &str,
        runtime_config: Option<&Value>,
    ) -> Result<Attached, CniError> {
        let result = self.call("ADD", id, netns, ifname, runtime_config).await?;
        let first = result.pointer("/ips/0");
        let ip = first
            .and_then(|i| i.get("address"))
            .and_then(Value::as_str)
            .and_then(|a| a.split('/').next())
            .ok_or_else(|| CniError::Plugin {
                command: "ADD",
                message: format!("no IP in the result {result}"),
            })?;
        let ips = result
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("address").and_then(Value::as_str))
            .filter_map(|a| a.split('/').next())
            .map(str::to_string)
            .collect();
        Ok(Attached {
            ip: ip.to_string(),
            ips,
            gateway: first
                .and_then(|i| i.get("gateway"))
                .and_then(Value::as_str)
                .map(str::to_string),
            mac: sandbox_mac(&result, ifname),
        })
    }

    /// DEL: releases the address and the interface (a no-op when they are already gone, per the spec).
    ///
    /// # Errors
    /// [`CniError`].
    pub async fn del(&self, id: &str, netns: &Path, ifname: &str) -> Result<(), CniError> {
        self.call("DEL", id, netns, ifname, None).await.map(|_| ())
    }
}

/// The MAC of interface `ifname` inside the sandbox, from an ADD result.
#[must_use]
pub fn sandbox_mac(result: &Value, ifname: &str) -> Option<String> {
    result
        .get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(ifname) && i.get("sandbox").is_some())
        .and_then(|i| i.get("mac"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Runs the network configuration `conf` for `command` (CNI spec 1.0): one plugin, or a configuration list whose
/// plugins run in order for ADD (each given the previous result) and in reverse for DEL.
///
/// # Errors
/// [`CniError`]: a plugin that cannot run or reports an error.
pub async fn run(
    bin_dir: &Path,
    command: &'static str,
    conf: &Value,
    id: &str,
    netns: &Path,
    ifname: &str,
) -> Result<Value, CniError> {
    let Some(plugins) = conf.get("plugins").and_then(Value::as_array) else {
        return exec(bin_dir, command, conf, id, netns, ifname).await;
    };
    let mut order: Vec<&Value> = plugins.iter().collect();
    if command == "DEL" {
        order.reverse();
    }
    let mut prev = Value::Null;
    for plugin in order {
        let mut one = plugin.clone();
        for key in ["cniVersion", "name"] {
            if let Some(v) = conf.get(key) {
                one[key] = v.clone();
            }
        }
        if !prev.is_null() {
            one["prevResult"] = prev.clone();
        }
        let result = exec(bin_dir, command, &one, id, netns, ifname).await?;
        if command == "ADD" {
            prev = result;
        }
    }
    Ok(prev)
}

/// Runs one plugin.
async fn exec(
    bin_dir: &Path,
    command: &'static str,
    conf: &Value,
    id: &str,
    netns: &Path,
    ifname: &str,
) -> Result<Value, CniError> {
    let plugin = bin_dir.join(conf.get("type").and_then(Value::as_str).unwrap_or_default());
    let mut child = tokio::process::Command::new(&plugin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CniError::Exec {
            plugin: plugin.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(conf.to_string().as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| CniError::Exec { plugin, source })?;
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        let message = stdout
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(CniError::Plugin { command, message });
    }
    Ok(stdout)
}
