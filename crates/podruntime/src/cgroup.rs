//! A cgroup per pod, where the host allows one: a child of the runtime's own cgroup (so the host's limits on the
//! runtime still bound its pods) named `kvbox-<pod uid>`, in the unified hierarchy and in each mounted v1 controller.
//! The launcher (and QEMU after it) runs inside; the directories go when the pod does. Hosts that refuse (read-only
//! cgroupfs, no permission) simply run pods in the runtime's cgroup.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of the pod with `uid` (existing or not), one per hierarchy.
fn dirs(uid: &str) -> Vec<PathBuf> {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    own.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mount = if controllers.is_empty() {
                // The unified hierarchy: mounted at the root (v2 host) or at `unified` (hybrid host).
                if Path::new(ROOT).join("cgroup.controllers").exists() {
                    PathBuf::from(ROOT)
                } else {
                    Path::new(ROOT).join("unified")
                }
            } else {
                let name = controllers.strip_prefix("name=").unwrap_or(controllers);
                Path::new(ROOT).join(name)
            };
            let parent = mount.join(path.trim_start_matches('/'));
            parent.is_dir().then(|| parent.join(format!("kvbox-{uid}")))
        })
        .collect()
}

/// Moves `pid` into the pod's cgroups; returns those it joined.
pub fn place(uid: &str, pid: u32) -> Vec<PathBuf> {
    let mut joined = Vec::new();
    for dir in dirs(uid) {
        if std::fs::create_dir_all(&dir).is_ok()
            && std::fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok()
        {
            joined.push(dir);
        } else {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    joined
}

/// Removes the pod's cgroups (only empty ones can go; the caller has stopped the processes).
pub fn remove(uid: &str) {
    for dir in dirs(uid) {
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Removes the pod's cgroups once the kernel has emptied them (processes that were just killed take a moment to be
/// reaped); gives up after two seconds, leaving what is still busy.
pub async fn remove_when_empty(uid: &str) {
    for _ in 0..40 {
        remove(uid);
        if existing(uid).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::warn!(pod_uid = uid, left = ?existing(uid), "pod cgroups still busy");
}

/// The pod's cgroup directories that exist.
#[must_use]
pub fn existing(uid: &str) -> Vec<PathBuf> {
    dirs(uid).into_iter().filter(|d| d.is_dir()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_joins_and_leaves_its_pod_cgroups() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let uid = format!("test-{}", std::process::id());
        let joined = place(&uid, child.id());
        // Tests run as root on a host with a writable cgroupfs (scripts/test's machine).
        assert!(!joined.is_empty(), "no cgroup joined under {:?}", dirs(&uid));
        for d in &joined {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|p| p == child.id().to_string()),
                "{}",
                d.display()
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        // The kernel empties the cgroup once the process is reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            remove(&uid);
            if existing(&uid).is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cgroups left: {:?}",
                existing(&uid)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
