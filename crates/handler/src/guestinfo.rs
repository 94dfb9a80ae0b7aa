//! The guest agent's answers (as the launcher relays them from qemu-ga) in upstream's shapes:
//! `VirtualMachineInstanceGuestAgentInfo` for guestosinfo, `VirtualMachineInstanceGuestOSUserList` for userlist,
//! `VirtualMachineInstanceFileSystemList` for filesystemlist. Upstream caps the users and file systems embedded in
//! guestosinfo at ten each; the lists are whole.

use serde_json::{Map, Value, json};

/// How many users and file systems guestosinfo embeds.
const EMBEDDED: usize = 10;

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Drops null members (upstream omits empty fields).
fn compact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect::<Map<_, _>>()),
        v => v,
    }
}

/// qemu-ga `guest-get-users` items → `VirtualMachineInstanceGuestOSUser`s.
#[must_use]
pub fn users(raw: &Value) -> Vec<Value> {
    raw.as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            compact(json!({
                "userName": u.get("user"),
                "domain": u.get("domain"),
                "loginTime": u.get("login-time"),
            }))
        })
        .collect()
}

/// qemu-ga `guest-get-fsinfo` items → `VirtualMachineInstanceFileSystem`s.
#[must_use]
pub fn filesystems(raw: &Value) -> Vec<Value> {
    raw.as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let disks: Vec<Value> = f
                .get("disk")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| compact(json!({"serial": d.get("serial"), "busType": d.get("bus-type")})))
                .collect();
            compact(json!({
                "diskName": f.get("name"),
                "mountPoint": f.get("mountpoint"),
                "fileSystemType": f.get("type"),
                "usedBytes": f.get("used-bytes"),
                "totalBytes": f.get("total-bytes"),
                "disk": (!disks.is_empty()).then_some(disks),
            }))
        })
        .collect()
}

/// The userlist answer.
#[must_use]
pub fn user_list(raw: &Value) -> Value {
    json!({"metadata": {}, "items": users(raw)})
}

/// The filesystemlist answer.
#[must_use]
pub fn filesystem_list(raw: &Value) -> Value {
    json!({"metadata": {}, "items": filesystems(raw)})
}

/// The guestosinfo answer from the launcher's GetGuestInfo (`{hostname, os, agent, timezone}`, each qemu-ga's
/// reply or null) and its GetUsers and GetFilesystems replies.
#[must_use]
pub fn agent_info(info: &Value, raw_users: &Value, raw_fs: &Value) -> Value {
    let os = &info["os"];
    let agent = &info["agent"];
    let commands: Vec<Value> = agent
        .get("supported_commands")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c.get("name"), "enabled": c.get("enabled")}))
        .collect();
    let timezone = info.get("timezone").filter(|t| !t.is_null()).map(|t| {
        format!(
            "{}, {}",
            str_of(t, "zone").unwrap_or_default(),
            t.get("offset").and_then(Value::as_i64).unwrap_or(0)
        )
    });
    let mut u = users(raw_users);
    u.truncate(EMBEDDED);
    let mut fs = filesystems(raw_fs);
    fs.truncate(EMBEDDED);
    compact(json!({
        "guestAgentVersion": str_of(agent, "version"),
        "supportedCommands": (!commands.is_empty()).then_some(commands),
        "hostname": str_of(&info["hostname"], "host-name"),
        "os": compact(json!({
            "name": os.get("name"), "kernelRelease": os.get("kernel-release"), "version": os.get("version"),
            "prettyName": os.get("pretty-name"), "versionId": os.get("version-id"),
            "kernelVersion": os.get("kernel-version"), "machine": os.get("machine"), "id": os.get("id"),
        })),
        "timezone": timezone,
        "userList": (!u.is_empty()).then_some(u),
        "fsInfo": {"disks": fs},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_ga_replies_become_upstream_shapes() {
        let info = json!({
            "hostname": {"host-name": "guest1"},
            "os": {"id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12",
                   "version": "12 (bookworm)", "version-id": "12", "kernel-release": "6.1.0", "machine": "x86_64"},
            "agent": {"version": "7.2.0", "supported_commands": [{"name": "guest-ping", "enabled": true,
                      "success-response": true}]},
            "timezone": {"zone": "UTC", "offset": 0},
        });
        let users = json!([{"user": "root", "login-time": 1_700_000_000.5}]);
        let fs = json!([{"name": "vda1", "mountpoint": "/", "type": "ext4", "used-bytes": 10, "total-bytes": 20,
                         "disk": [{"serial": "abc", "bus-type": "virtio", "bus": 0}]}]);
        let got = agent_info(&info, &users, &fs);
        assert_eq!(
            got,
            json!({
                "guestAgentVersion": "7.2.0",
                "supportedCommands": [{"name": "guest-ping", "enabled": true}],
                "hostname": "guest1",
                "os": {"name": "Debian GNU/Linux", "kernelRelease": "6.1.0", "version": "12 (bookworm)",
                       "prettyName": "Debian GNU/Linux 12", "versionId": "12", "machine": "x86_64", "id": "debian"},
                "timezone": "UTC, 0",
                "userList": [{"userName": "root", "loginTime": 1_700_000_000.5}],
                "fsInfo": {"disks": [{"diskName": "vda1", "mountPoint": "/", "fileSystemType": "ext4",
                                      "usedBytes": 10, "totalBytes": 20,
                                      "disk": [{"serial": "abc", "busType": "virtio"}]}]},
            })
        );
        assert_eq!(user_list(&json!(null)), json!({"metadata": {}, "items": []}));
        assert_eq!(filesystem_list(&fs)["items"][0]["diskName"], "vda1");
    }
}
