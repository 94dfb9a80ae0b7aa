//! Named network namespaces (`/run/netns/NAME`), made and removed with iproute2's `ip netns` as CNI-using runtimes
//! expect them; processes enter one through `ip netns exec`.

use std::path::PathBuf;

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
#[error("ip netns {op} {name}: {message}")]
pub struct NetnsError {
    op: &'static str,
    name: String,
    message: String,
}

/// The path of namespace `name`.
#[must_use]
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Whether namespace `name` exists.
#[must_use]
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

async fn ip(op: &'static str, name: &str) -> Result<(), NetnsError> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", op, name])
        .output()
        .await
        .map_err(|e| NetnsError {
            op,
            name: name.into(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError {
            op,
            name: name.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Creates namespace `name` (with its loopback up).
///
/// # Errors
/// [`NetnsError`].
pub async fn create(name: &str) -> Result<(), NetnsError> {
    if !exists(name) {
        ip("add", name).await?;
    }
    let out = tokio::process::Command::new("ip")
        .args(["-n", name, "link", "set", "lo", "up"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(NetnsError {
            op: "exec",
            name: name.into(),
            message: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        Err(e) => Err(NetnsError {
            op: "exec",
            name: name.into(),
            message: e.to_string(),
        }),
    }
}

/// Removes namespace `name` (nothing to do when it is gone).
///
/// # Errors
/// [`NetnsError`].
pub async fn delete(name: &str) -> Result<(), NetnsError> {
    if exists(name) {
        ip("delete", name).await
    } else {
        Ok(())
    }
}
