//! What the runtime remembers about a pod it started (`record.json` in the pod's directory, so a restarted runtime
//! adopts the process) and the process itself: our child, or one adopted, found again by pid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process;

/// What the runtime remembers about a started pod.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) pid: u32,
    pub(crate) netns: String,
    pub(crate) ip: String,
    /// Every address of a dual-stack pod (older records: `ip` alone).
    #[serde(default)]
    pub(crate) ips: Vec<String>,
    /// The primary interface's MAC, when the plugin said.
    #[serde(default)]
    pub(crate) mac: Option<String>,
    pub(crate) runtime_dir: PathBuf,
    pub(crate) started: String,
    pub(crate) start_time: String,
    /// A program pod (not a launcher): `runtime_dir` is its container root.
    #[serde(default)]
    pub(crate) program: bool,
    /// How often its container was restarted.
    #[serde(default)]
    pub(crate) restarts: u32,
}

impl Record {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("record.json")
    }

    /// The pod's IPs, the primary first.
    pub(crate) fn pod_ips(&self) -> Vec<String> {
        if self.ips.is_empty() {
            vec![self.ip.clone()]
        } else {
            self.ips.clone()
        }
    }

    pub(crate) fn load(dir: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(Self::path(dir)).ok()?).ok()
    }

    pub(crate) fn save(&self, dir: &Path) {
        if let Ok(text) = serde_json::to_string(self) {
            let tmp = dir.join("record.json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, Self::path(dir));
            }
        }
    }
}

/// The launcher process: our child, or one adopted after a restart.
pub(crate) enum Proc {
    Child(tokio::process::Child),
    Adopted(u32),
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Self::Child(c) => c.id().unwrap_or_default(),
            Self::Adopted(p) => *p,
        }
    }

    /// Waits for the launcher to end; its exit code (from wait(2), or from the final state it left).
    pub(crate) async fn exited(&mut self, runtime: &Path) -> i32 {
        match self {
            Self::Child(c) => match c.wait().await {
                Ok(s) => s
                    .code()
                    .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)),
                Err(_) => 1,
            },
            Self::Adopted(pid) => {
                while process::alive(*pid, runtime) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                code_from_final_state(runtime)
            }
        }
    }
}

/// How a launcher that was not our child ended: 0 when its guest shut down, 1 otherwise.
pub(crate) fn code_from_final_state(runtime: &Path) -> i32 {
    match launcher_protocol::final_state(runtime) {
        Some(launcher_protocol::DomainState::Shutoff(_)) => 0,
        _ => 1,
    }
}
