//! Access credentials the guest agent propagates (`accessCredentials` with `qemuGuestAgent`): which Secret
//! directories hold SSH public keys for which users, and which hold user passwords (pure — the launcher reads
//! the files and calls the agent).

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubevirt_api::v1::VirtualMachineInstance;

/// One credential to apply through the guest agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCredential {
    /// The files in `dir` are SSH public keys for each of `users` (their `authorized_keys` is replaced).
    SshKeys {
        /// Guest users.
        users: Vec<String>,
        /// The Secret's directory.
        dir: PathBuf,
    },
    /// Each file in `dir` is named after a guest user and holds that user's password.
    Passwords {
        /// The Secret's directory.
        dir: PathBuf,
    },
}

/// The agent-propagated credentials of `vmi`, each Secret found among `sources` as `<secret>-access-cred`; those
/// whose Secret is not there are left out (the launcher pod mounts them all).
#[must_use]
pub fn agent_credentials(
    vmi: &VirtualMachineInstance,
    sources: &BTreeMap<String, PathBuf>,
) -> Vec<AgentCredential> {
    let dir = |secret: &str| sources.get(&format!("{secret}-access-cred")).cloned();
    let mut out = Vec::new();
    for c in vmi.spec.access_credentials.iter().flatten() {
        if let Some(k) = c.ssh_public_key.as_ref()
            && let Some(qga) = k.propagation_method.qemu_guest_agent.as_ref()
            && let Some(d) = k.source.secret.as_ref().and_then(|s| dir(&s.secret_name))
        {
            out.push(AgentCredential::SshKeys {
                users: qga.users.clone(),
                dir: d,
            });
        }
        if let Some(p) = c.user_password.as_ref()
            && p.propagation_method.qemu_guest_agent.is_some()
            && let Some(d) = p.source.secret.as_ref().and_then(|s| dir(&s.secret_name))
        {
            out.push(AgentCredential::Passwords { dir: d });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn agent_credentials_name_their_secret_directories() {
        let vmi: VirtualMachineInstance = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v"},
            "spec": {"domain": {"devices": {}}, "accessCredentials": [
                {"sshPublicKey": {"source": {"secret": {"secretName": "keys"}},
                    "propagationMethod": {"qemuGuestAgent": {"users": ["root", "fedora"]}}}},
                {"sshPublicKey": {"source": {"secret": {"secretName": "nocloud"}},
                    "propagationMethod": {"noCloud": {}}}},
                {"userPassword": {"source": {"secret": {"secretName": "pw"}},
                    "propagationMethod": {"qemuGuestAgent": {}}}}]}
        }))
        .unwrap();
        let sources = BTreeMap::from([
            ("keys-access-cred".to_string(), PathBuf::from("/k")),
            ("nocloud-access-cred".to_string(), PathBuf::from("/n")),
            ("pw-access-cred".to_string(), PathBuf::from("/p")),
        ]);
        assert_eq!(
            agent_credentials(&vmi, &sources),
            [
                AgentCredential::SshKeys {
                    users: vec!["root".into(), "fedora".into()],
                    dir: "/k".into()
                },
                AgentCredential::Passwords { dir: "/p".into() },
            ]
        );
    }
}
