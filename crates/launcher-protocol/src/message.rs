//! The messages on the command socket: the greeting, requests and their commands, responses and each command's reply
//! type, and domain events. The wire form is protocol 1's, unchanged since the launcher first spoke it: a command is
//! `"Pause"` or `{"Shutdown":{"gracePeriodSeconds":30}}`, a response `{"id":N,"ok":true,"result":…}` or
//! `{"id":N,"ok":false,"error":"…"}`, an event `{"event":{"event":"STOP","domain":{"state":"Paused"}}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DomainState;

/// The launcher's first line on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version it speaks ([`crate::PROTOCOL`]).
    pub protocol: u32,
    /// Which launcher (`kubevirt-rs`).
    pub launcher: String,
    /// The domain's name, once a VM runs.
    pub domain: Option<String>,
}

/// A command from the node agent; the reply type of each is named on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Liveness. Reply: `"pong"`.
    Ping,
    /// Converge on this VMI: the first Sync starts it, later ones report a changed spec (it is not applied).
    /// Reply: [`Synced`].
    Sync {
        /// The VMI.
        vmi: Box<kubevirt_api::v1::VirtualMachineInstance>,
        /// What the node's network phase 1 made for its interfaces (none: no NIC gets a backend).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        network: Vec<crate::network::PlumbedInterface>,
    },
    /// Pause the vCPUs. Reply: `"paused"`.
    Pause,
    /// Resume the vCPUs. Reply: `"running"`.
    Unpause,
    /// ACPI shutdown, then kill after the grace period. Reply: `"shutting down"`.
    Shutdown {
        /// Seconds to wait for the guest (30 when absent).
        #[serde(
            rename = "gracePeriodSeconds",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        grace_period_seconds: Option<u64>,
    },
    /// Stop QEMU now. Reply: `"killing"`.
    Kill,
    /// Hard reset. Reply: `"reset"`.
    Reset,
    /// Reboot through the guest agent, else over ACPI. Reply: a description.
    SoftReboot,
    /// The Domain, its state and QEMU's status. Reply: [`DomainInfo`].
    GetDomain,
    /// Guest agent: hostname, OS, agent version, timezone. Reply: [`GuestInfo`].
    GetGuestInfo,
    /// Guest agent: logged-in users. Reply: qemu-ga's `guest-get-users` answer.
    GetUsers,
    /// Guest agent: file systems. Reply: qemu-ga's `guest-get-fsinfo` answer.
    GetFilesystems,
    /// Guest agent: freeze the file systems (thawed again after `unfreezeTimeoutSeconds` unless sooner).
    /// Reply: qemu-ga's `guest-fsfreeze-freeze` answer.
    Freeze {
        /// Seconds until an automatic thaw (0: none).
        #[serde(rename = "unfreezeTimeoutSeconds", default)]
        unfreeze_timeout_seconds: u64,
    },
    /// Guest agent: thaw the file systems. Reply: qemu-ga's `guest-fsfreeze-thaw` answer.
    Unfreeze,
    /// The display as PNG. Reply: [`Screenshot`].
    GetScreenshot,
    /// Guest agent: apply the agent-propagated access credentials. Reply: [`AccessCredentials`].
    SyncAccessCredentials,
}

impl Command {
    /// The command's name (`"Sync"`), for messages and logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "Ping",
            Self::Sync { .. } => "Sync",
            Self::Pause => "Pause",
            Self::Unpause => "Unpause",
            Self::Shutdown { .. } => "Shutdown",
            Self::Kill => "Kill",
            Self::Reset => "Reset",
            Self::SoftReboot => "SoftReboot",
            Self::GetDomain => "GetDomain",
            Self::GetGuestInfo => "GetGuestInfo",
            Self::GetUsers => "GetUsers",
            Self::GetFilesystems => "GetFilesystems",
            Self::Freeze { .. } => "Freeze",
            Self::Unfreeze => "Unfreeze",
            Self::GetScreenshot => "GetScreenshot",
            Self::SyncAccessCredentials => "SyncAccessCredentials",
        }
    }
}

/// One request line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the response.
    pub id: u64,
    /// What to do.
    pub command: Command,
}

/// One response line: the command's reply, or why it was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id (`null` for a line that was not a request).
    pub id: Option<u64>,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The reply, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// The response to request `id` that `outcome` makes (a reply, or why the command was refused).
    #[must_use]
    pub fn to(id: Option<u64>, outcome: Result<Value, String>) -> Self {
        match outcome {
            Ok(result) => Self {
                id,
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(error) => Self {
                id,
                ok: false,
                result: None,
                error: Some(error),
            },
        }
    }

    /// The reply, or the launcher's reason for refusing.
    ///
    /// # Errors
    /// The refusal's message.
    pub fn into_result(self) -> Result<Value, String> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(self.error.unwrap_or_else(|| "failed".into()))
        }
    }
}

/// A domain event: what happened (`started`, `STOP`, `RESUME`, `SHUTDOWN`, `QEMU_EXITED`, …) and the state after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened: the QEMU event's name, or the launcher's own (`started`, `KILLED`, …).
    pub event: String,
    /// The domain's state after it.
    pub domain: DomainState,
}

/// An event line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// The event.
    pub event: Event,
}

/// The reply to Sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// What happened: `started`, or `in sync`.
    pub sync: String,
    /// The pod's IP, when the launcher was given it (the downward API's `POD_IP`).
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// The domain's network cards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<DomainInterface>,
}

/// One network card of the domain, as `status.interfaces` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainInterface {
    /// The VMI's interface name.
    pub name: String,
    /// The guest's MAC.
    pub mac: String,
    /// Its queues.
    pub queue_count: u32,
    /// `up` or `down`.
    pub link_state: String,
}

/// QEMU's run state (`query-status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuStatus {
    /// Whether the vCPUs run.
    pub running: bool,
    /// QEMU's status word (`running`, `paused`, `shutdown`, …).
    pub status: String,
}

/// The reply to GetDomain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The Domain the launcher runs (its own description of the VM).
    pub domain: Value,
    /// Where the domain is in its life.
    pub state: DomainState,
    /// QEMU's status, when its monitor answered.
    pub status: Option<QemuStatus>,
    /// QEMU's `query-block`, when it answered.
    pub blocks: Option<Value>,
    /// QEMU's `query-cpus-fast`, when it answered.
    pub cpus: Option<Value>,
}

/// The reply to GetGuestInfo: qemu-ga's answers as it gave them (`null` where it did not answer). They stay qemu-ga's
/// JSON: the launcher relays them, and the handler maps them to upstream's shapes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestInfo {
    /// `guest-get-host-name`.
    pub hostname: Option<Value>,
    /// `guest-get-osinfo`.
    pub os: Option<Value>,
    /// `guest-info` (the agent's version and commands).
    pub agent: Option<Value>,
    /// `guest-get-timezone`.
    pub timezone: Option<Value>,
    /// `guest-network-get-interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Value>,
}

/// The fields of qemu-ga's `guest-get-osinfo` a VMI's `status.guestOSInfo` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestOsInfo {
    /// `id`.
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `pretty-name`.
    pub pretty_name: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `version-id`.
    pub version_id: Option<String>,
    /// `kernel-release`.
    pub kernel_release: Option<String>,
    /// `kernel-version`.
    pub kernel_version: Option<String>,
    /// `machine`.
    pub machine: Option<String>,
}

impl GuestInfo {
    /// Whether a guest agent answered.
    #[must_use]
    pub fn agent_connected(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| !a.is_null())
    }

    /// The agent's version, when it said.
    #[must_use]
    pub fn agent_version(&self) -> Option<&str> {
        self.agent.as_ref()?.get("version")?.as_str()
    }

    /// The OS as `guest-get-osinfo` described it.
    #[must_use]
    pub fn os_info(&self) -> GuestOsInfo {
        self.os
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}

/// The reply to GetScreenshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screenshot {
    /// The PNG, base64.
    pub png: String,
}

/// The reply to SyncAccessCredentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AccessCredentials {
    /// The credentials were applied, or why not.
    Applied {
        /// Whether every credential was applied.
        succeeded: bool,
        /// Why not (empty when they were).
        #[serde(default)]
        message: String,
    },
    /// The VMI has none the agent propagates (`{"none": true}`).
    Nothing {
        /// Always true.
        none: bool,
    },
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    /// `value` serialises to `wire` and reads back as itself.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, wire: &Value) {
        let text = serde_json::to_string(value).unwrap();
        assert_eq!(
            &serde_json::from_str::<Value>(&text).unwrap(),
            wire,
            "wire form of {value:?}"
        );
        assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value);
    }

    #[test]
    fn every_command_round_trips_in_protocol_1s_wire_form() {
        let mut vmi = kubevirt_api::v1::VirtualMachineInstance::default();
        vmi.metadata.name = Some("testvmi".into());
        let cases = vec![
            (Command::Ping, json!("Ping")),
            (
                Command::Sync {
                    vmi: Box::new(vmi),
                    network: Vec::new(),
                },
                json!({"Sync": {"vmi": {"metadata": {"name": "testvmi"}, "spec": {"domain": {"devices": {}}}}}}),
            ),
            (
                Command::Sync {
                    vmi: Box::new(kubevirt_api::v1::VirtualMachineInstance::default()),
                    network: vec![crate::network::PlumbedInterface {
                        name: "default".into(),
                        pod_interface: "eth0".into(),
                        tap: "tap0".into(),
                        bridge: "k6t-eth0".into(),
                        mtu: 1450,
                        queues: 1,
                        mac: None,
                        dhcp4: Some(crate::network::Dhcp4 {
                            server: "10.0.2.1".parse().unwrap(),
                            address: "10.0.2.2".parse().unwrap(),
                            prefix: 24,
                            router: Some("10.0.2.1".parse().unwrap()),
                            routes: Vec::new(),
                            client_mac: None,
                        }),
                        dhcp6: None,
                        pod_ips: vec!["10.244.0.7".parse().unwrap(), "fd00::7".parse().unwrap()],
                    }],
                },
                json!({"Sync": {"vmi": {"metadata": {}, "spec": {"domain": {"devices": {}}}}, "network": [{
                    "name": "default", "podInterface": "eth0", "tap": "tap0", "bridge": "k6t-eth0", "mtu": 1450,
                    "queues": 1, "dhcp4": {"server": "10.0.2.1", "address": "10.0.2.2", "prefix": 24,
                    "router": "10.0.2.1"}, "podIps": ["10.244.0.7", "fd00::7"]}]}}),
            ),
            (Command::Pause, json!("Pause")),
            (Command::Unpause, json!("Unpause")),
            (
                Command::Shutdown {
                    grace_period_seconds: Some(30),
                },
                json!({"Shutdown": {"gracePeriodSeconds": 30}}),
            ),
            (
                Command::Shutdown {
                    grace_period_seconds: None,
                },
                json!({"Shutdown": {}}),
            ),
            (Command::Kill, json!("Kill")),
            (Command::Reset, json!("Reset")),
            (Command::SoftReboot, json!("SoftReboot")),
            (Command::GetDomain, json!("GetDomain")),
            (Command::GetGuestInfo, json!("GetGuestInfo")),
            (Command::GetUsers, json!("GetUsers")),
            (Command::GetFilesystems, json!("GetFilesystems")),
            (
                Command::Freeze {
                    unfreeze_timeout_seconds: 300,
                },
                json!({"Freeze": {"unfreezeTimeoutSeconds": 300}}),
            ),
            (Command::Unfreeze, json!("Unfreeze")),
            (Command::GetScreenshot, json!("GetScreenshot")),
            (Command::SyncAccessCredentials, json!("SyncAccessCredentials")),
        ];
        for (command, wire) in &cases {
            round_trip(command, wire);
            let name = command.name();
            assert!(wire.as_str() == Some(name) || wire.get(name).is_some(), "{name}");
            let request = Request {
                id: 7,
                command: command.clone(),
            };
            round_trip(&request, &json!({"id": 7, "command": wire}));
        }
        // A freeze without a timeout thaws only on request.
        let f: Command = serde_json::from_value(json!({"Freeze": {}})).unwrap();
        assert_eq!(
            f,
            Command::Freeze {
                unfreeze_timeout_seconds: 0
            }
        );
        assert!(serde_json::from_value::<Command>(json!("Explode")).is_err());
    }

    #[test]
    fn every_reply_round_trips() {
        round_trip(
            &Synced {
                sync: "started".into(),
                pod_ip: Some("10.0.0.5".into()),
                interfaces: vec![DomainInterface {
                    name: "default".into(),
                    mac: "02:00:00:00:00:01".into(),
                    queue_count: 1,
                    link_state: "up".into(),
                }],
            },
            &json!({"sync": "started", "podIP": "10.0.0.5", "interfaces": [{"name": "default",
                "mac": "02:00:00:00:00:01", "queueCount": 1, "linkState": "up"}]}),
        );
        round_trip(
            &Synced {
                sync: "in sync".into(),
                pod_ip: None,
                interfaces: Vec::new(),
            },
            &json!({"sync": "in sync"}),
        );
        round_trip(
            &DomainInfo {
                domain: json!({"name": "default_testvmi"}),
                state: DomainState::Running,
                status: Some(QemuStatus {
                    running: true,
                    status: "running".into(),
                }),
                blocks: Some(json!([])),
                cpus: None,
            },
            &json!({"domain": {"name": "default_testvmi"}, "state": {"state": "Running"},
                "status": {"running": true, "status": "running"}, "blocks": [], "cpus": null}),
        );
        let info = GuestInfo {
            hostname: Some(json!({"host-name": "guest"})),
            os: Some(json!({"id": "alpine", "pretty-name": "Alpine Linux v3.20", "kernel-release": "6.6"})),
            agent: Some(json!({"version": "7.2.0", "supported_commands": []})),
            timezone: None,
            interfaces: None,
        };
        round_trip(
            &info,
            &json!({"hostname": {"host-name": "guest"}, "os": {"id": "alpine", "pretty-name": "Alpine Linux v3.20",
                "kernel-release": "6.6"}, "agent": {"version": "7.2.0", "supported_commands": []}, "timezone": null}),
        );
        assert!(info.agent_connected());
        assert_eq!(info.agent_version(), Some("7.2.0"));
        assert_eq!(info.os_info().pretty_name.as_deref(), Some("Alpine Linux v3.20"));
        assert!(!GuestInfo::default().agent_connected());
        round_trip(
            &Screenshot {
                png: "iVBORw0=".into(),
            },
            &json!({"png": "iVBORw0="}),
        );
        round_trip(
            &AccessCredentials::Applied {
                succeeded: false,
                message: "Guest agent is offline".into(),
            },
            &json!({"succeeded": false, "message": "Guest agent is offline"}),
        );
        round_trip(&AccessCredentials::Nothing { none: true }, &json!({"none": true}));
        round_trip(
            &Hello {
                protocol: 1,
                launcher: "kubevirt-rs".into(),
                domain: None,
            },
            &json!({"protocol": 1, "launcher": "kubevirt-rs", "domain": null}),
        );
    }

    #[test]
    fn responses_and_events_round_trip() {
        let ok = Response::to(Some(3), Ok(json!("pong")));
        round_trip(&ok, &json!({"id": 3, "ok": true, "result": "pong"}));
        assert_eq!(ok.into_result(), Ok(json!("pong")));
        let refused = Response::to(Some(4), Err("no VM yet: send Sync first".into()));
        round_trip(
            &refused,
            &json!({"id": 4, "ok": false, "error": "no VM yet: send Sync first"}),
        );
        assert_eq!(refused.into_result(), Err("no VM yet: send Sync first".into()));
        round_trip(
            &Response::to(None, Err("bad request".into())),
            &json!({"id": null, "ok": false, "error": "bad request"}),
        );
        let states = [
            (DomainState::Running, json!({"state": "Running"})),
            (DomainState::Paused, json!({"state": "Paused"})),
            (DomainState::ShuttingDown, json!({"state": "ShuttingDown"})),
            (
                DomainState::Shutoff("guest shut down (guest-shutdown)".into()),
                json!({"state": "Shutoff", "reason": "guest shut down (guest-shutdown)"}),
            ),
            (
                DomainState::Crashed("guest panicked".into()),
                json!({"state": "Crashed", "reason": "guest panicked"}),
            ),
        ];
        for (state, wire) in states {
            round_trip(&state, &wire);
            let line = EventLine {
                event: Event {
                    event: "STOP".into(),
                    domain: state,
                },
            };
            round_trip(&line, &json!({"event": {"event": "STOP", "domain": wire}}));
        }
    }

    #[test]
    fn the_final_state_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(crate::final_state(dir.path()), None);
        let end = DomainState::Crashed("qemu exited unexpectedly".into());
        crate::write_final_state(dir.path(), &end).unwrap();
        assert_eq!(crate::final_state(dir.path()), Some(end));
        assert_eq!(crate::socket(dir.path()), dir.path().join("launcher.sock"));
    }
}
