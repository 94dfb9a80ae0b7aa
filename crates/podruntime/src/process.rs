//! The launcher process of a pod: started inside the pod's network namespace in a process group of its own (so
//! it outlives the runtime: a restarted runtime adopts it), signalled, and found again by pid after a restart.

use std::path::Path;

/// Sends `signal` to process `pid` (and, with `group`, to its whole process group). Gone processes are not an error.
pub fn signal(pid: u32, sig: i32, group: bool) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    let target = if group { -pid } else { pid };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::kill(target, sig) };
}

/// SIGTERM.
pub const TERM: i32 = libc::SIGTERM;
/// SIGKILL.
pub const KILL: i32 = libc::SIGKILL;

/// Whether `pid` is alive (not a zombie) and its command line mentions `marker` (guards against pid reuse).
#[must_use]
pub fn alive(pid: u32, marker: &Path) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
    if matches!(state, Some("Z" | "X")) {
        return false;
    }
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let marker = marker.to_string_lossy();
    String::from_utf8_lossy(&cmdline)
        .split('\0')
        .any(|arg| arg == marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_recognised_by_its_marker_and_not_once_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // Until exec(2) the child still shows our command line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !alive(child.id(), Path::new("30")) {
            assert!(std::time::Instant::now() < deadline, "sleep never showed up");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(child.id(), dir.path()));
        signal(child.id(), KILL, false);
        child.wait().unwrap();
        assert!(!alive(child.id(), Path::new("30")));
    }
}
