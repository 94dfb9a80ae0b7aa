//! Applying agent-propagated access credentials, as upstream's access-credential manager does: every SSH public
//! key of a user's Secrets replaces that user's `authorized_keys` (`guest-ssh-add-authorized-keys` with reset), and
//! each password file sets its user's password (`guest-set-user-password`). The result is what the node agent
//! reports as the VMI's `AccessCredentialsSynchronized` condition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use launcher_domain::credentials::AgentCredential;
use serde_json::json;

use crate::vm::Vm;
use launcher_protocol::AccessCredentials;

/// The files of a Secret directory (not the kubelet's `..` entries, not directories), by name.
pub(crate) fn secret_files(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::read_to_string(&p)
                .map(|text| (name, text))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// What to apply: keys per user, passwords per user.
type Wanted = (BTreeMap<String, Vec<String>>, BTreeMap<String, String>);

fn wanted(creds: &[AgentCredential]) -> Result<Wanted, String> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut passwords = BTreeMap::new();
    for c in creds {
        match c {
            AgentCredential::SshKeys { users, dir } => {
                let found: Vec<String> = secret_files(dir)?
                    .into_iter()
                    .flat_map(|(_, text)| {
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                for u in users {
                    keys.entry(u.clone()).or_default().extend(found.iter().cloned());
                }
            }
            AgentCredential::Passwords { dir } => {
                for (user, password) in secret_files(dir)? {
                    passwords.insert(user, password);
                }
            }
        }
    }
    Ok((keys, passwords))
}

/// Applies `vm`'s agent credentials: whether they all were (or why not), or that there are none.
pub async fn sync(vm: &Vm) -> AccessCredentials {
    let creds = &vm.credentials;
    if creds.is_empty() {
        return AccessCredentials::Nothing { none: true };
    }
    let report = |succeeded: bool, message: String| AccessCredentials::Applied { succeeded, message };
    let qga = match vm.agent().await {
        Ok(q) if q.execute("guest-ping", None).await.is_ok() => q,
        _ => return report(false, "Guest agent is offline".into()),
    };
    let (keys, passwords) = match wanted(creds) {
        Ok(w) => w,
        Err(e) => return report(false, e),
    };
    for (user, list) in &keys {
        let args = json!({"username": user, "keys": list, "reset": true});
        if let Err(e) = qga.execute("guest-ssh-add-authorized-keys", Some(args)).await {
            return report(
                false,
                format!("Error encountered writing ssh pub key access credentials for user [{user}]: {e}"),
            );
        }
    }
    for (user, password) in &passwords {
        let args = json!({"username": user, "crypted": false,
            "password": base64::engine::general_purpose::STANDARD.encode(password)});
        if let Err(e) = qga.execute("guest-set-user-password", Some(args)).await {
            return report(
                false,
                format!("Error encountered setting password for user [{user}]: {e}"),
            );
        }
    }
    report(true, String::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_of_every_secret_go_to_every_user() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("k1"), "ssh-ed25519 AAA one\nssh-rsa BBB two\n").unwrap();
        std::fs::create_dir(a.path().join("..data")).unwrap();
        let p = tempfile::tempdir().unwrap();
        std::fs::write(p.path().join("root"), "s3cret").unwrap();
        let creds = vec![
            AgentCredential::SshKeys {
                users: vec!["root".into(), "guest".into()],
                dir: a.path().into(),
            },
            AgentCredential::Passwords { dir: p.path().into() },
        ];
        let (keys, passwords) = wanted(&creds).unwrap();
        assert_eq!(keys["guest"], ["ssh-ed25519 AAA one", "ssh-rsa BBB two"]);
        assert_eq!(keys["root"].len(), 2);
        assert_eq!(passwords["root"], "s3cret");
        let missing = vec![AgentCredential::Passwords {
            dir: "/nonexistent-kubevirt-rs".into(),
        }];
        assert!(wanted(&missing).is_err());
    }
}
