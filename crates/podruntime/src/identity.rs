//! Stable pod addresses — box mode's answer to the VM whose IP and MAC change at every restart (upstream leaves that
//! to the CNI, kubevirt#18636/#8550/#7967): pods that carry the same identity key (kvbox gives a launcher pod its
//! VM's uid) get the same IP and MAC on the pod network whenever they run on this node. The reservation is asked of
//! the standard plugins through their runtime configuration (host-local's `ips` — both families on a dual-stack
//! node —, bridge's `mac`); between two runs the addresses stay taken by placeholder leases in host-local's own
//! directory, so no other pod gets them; a key nobody holds any more (the VM was deleted) is released with
//! [`Reservations::retain`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;

/// The identity key of a pod, if it has one (`None`: an address like any pod's).
pub type IdentityOf = Arc<dyn Fn(&Pod) -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// What a placeholder lease says, after which comes the key.
const PLACEHOLDER: &str = "kvbox-reserved:";

/// The addresses of one key: one per family (older files hold a single string).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Held {
    One(String),
    Many(Vec<String>),
}

impl Held {
    fn ips(&self) -> Vec<String> {
        match self {
            Self::One(ip) => vec![ip.clone()],
            Self::Many(ips) => ips.clone(),
        }
    }
}

/// The node's reservations: key → IPs, in `reservations.json`, and the placeholders in host-local's lease
/// directory.
#[derive(Debug)]
pub struct Reservations {
    file: PathBuf,
    leases: PathBuf,
    lock: Mutex<()>,
}

impl Reservations {
    /// Reservations kept in `file`, for the network whose host-local leases are in `leases`.
    #[must_use]
    pub fn new(file: PathBuf, leases: PathBuf) -> Self {
        Self {
            file,
            leases,
            lock: Mutex::new(()),
        }
    }

    fn load(&self) -> BTreeMap<String, Held> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, all: &BTreeMap<String, Held>) {
        let tmp = self.file.with_extension("tmp");
        let written = serde_json::to_vec(all)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            tracing::warn!(error = %e, file = %self.file.display(), "saving the address reservations");
        }
    }

    fn placeholder(&self, ip: &str) -> PathBuf {
        self.leases.join(ip)
    }

    /// Whether the lease file of `ip` is a placeholder.
    fn is_placeholder(path: &Path) -> bool {
        std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(PLACEHOLDER))
    }

    /// The addresses reserved for `key` (one per family; none: nothing reserved), their placeholders removed so
    /// the plugin can hand them out again.
    #[must_use]
    pub fn take(&self, key: &str) -> Vec<String> {
        let _one = self.lock.lock();
        let ips = self.load().get(key).map(Held::ips).unwrap_or_default();
        for ip in &ips {
            let p = self.placeholder(ip);
            if Self::is_placeholder(&p) {
                let _ = std::fs::remove_file(p);
            }
        }
        ips
    }

    /// Records that `key` got `ips`.
    pub fn record(&self, key: &str, ips: &[String]) {
        let _one = self.lock.lock();
        let mut all = self.load();
        if all.get(key).map(Held::ips).as_deref() != Some(ips) {
            all.insert(key.to_string(), Held::Many(ips.to_vec()));
            self.save(&all);
        }
    }

    /// Holds `key`'s addresses after its pod released them.
    pub fn hold(&self, key: &str) {
        let _one = self.lock.lock();
        let Some(held) = self.load().get(key).cloned() else {
            return;
        };
        for ip in held.ips() {
            let p = self.placeholder(&ip);
            if !p.exists() && std::fs::create_dir_all(&self.leases).is_ok() {
                let _ = std::fs::write(p, format!("{PLACEHOLDER}{key}\neth0"));
            }
        }
    }

    /// Releases every reservation whose key is not in `keep`, and its placeholder.
    pub fn retain(&self, keep: &HashSet<String>) {
        let _one = self.lock.lock();
        let mut all = self.load();
        let gone: Vec<(String, Vec<String>)> = all
            .iter()
            .filter(|(k, _)| !keep.contains(*k))
            .map(|(k, v)| (k.clone(), v.ips()))
            .collect();
        if gone.is_empty() {
            return;
        }
        for (key, ips) in gone {
            for ip in &ips {
                let p = self.placeholder(ip);
                if Self::is_placeholder(&p) {
                    let _ = std::fs::remove_file(p);
                }
            }
            all.remove(&key);
            tracing::info!(%key, ips = ?ips, "address reservation released");
        }
        self.save(&all);
    }

    /// The keys reserved.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        self.load().into_keys().collect()
    }
}

/// The pod MAC of `key`: locally administered, unicast, the same for the same key (FNV-1a of it).
#[must_use]
pub fn mac_of(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_held_between_runs_and_released_with_its_key() {
        let dir = std::env::temp_dir().join(format!("identity-{}", std::process::id()));
        let leases = dir.join("ipam/kvbox");
        std::fs::create_dir_all(&leases).unwrap();
        let r = Reservations::new(dir.join("reservations.json"), leases.clone());
        assert!(r.take("vm-a").is_empty(), "nothing reserved yet");
        r.record("vm-a", &["10.251.1.7".into()]);
        r.hold("vm-a");
        assert!(
            Reservations::is_placeholder(&leases.join("10.251.1.7")),
            "held while the VM is stopped"
        );
        assert_eq!(r.take("vm-a"), ["10.251.1.7"]);
        assert!(
            !leases.join("10.251.1.7").exists(),
            "free for the plugin to hand back"
        );
        // A real lease (a container id) is never removed as a placeholder.
        std::fs::write(leases.join("10.251.1.7"), "abc123\neth0").unwrap();
        r.retain(&HashSet::new());
        assert!(leases.join("10.251.1.7").exists());
        assert!(r.keys().is_empty());
        // Both addresses of a dual-stack pod are held and released together.
        r.record("vm-b", &["10.251.1.8".into(), "fd00::8".into()]);
        r.hold("vm-b");
        assert!(Reservations::is_placeholder(&leases.join("fd00::8")));
        r.retain(&HashSet::from(["vm-c".to_string()]));
        assert!(
            !leases.join("10.251.1.8").exists() && !leases.join("fd00::8").exists() && r.keys().is_empty()
        );
        // A file from before dual stack (key → one address) still reads.
        std::fs::write(dir.join("reservations.json"), r#"{"vm-d": "10.251.1.9"}"#).unwrap();
        assert_eq!(r.take("vm-d"), ["10.251.1.9"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn macs_are_stable_unicast_and_local() {
        assert_eq!(mac_of("vm-a"), mac_of("vm-a"));
        assert_ne!(mac_of("vm-a"), mac_of("vm-b"));
        assert!(mac_of("vm-a").starts_with("0a:58:"));
    }
}
