//! Where a domain is in its life ([`DomainState`]), and the final state a launcher leaves behind when QEMU is gone.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the domain is in its life (`{"state":"Running"}`, `{"state":"Crashed","reason":"…"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason")]
pub enum DomainState {
    /// vCPUs run.
    Running,
    /// vCPUs stopped (paused by a user, or started paused).
    Paused,
    /// An ACPI shutdown was requested; waiting for the guest.
    ShuttingDown,
    /// The guest powered off (or was stopped by the launcher): the VMI Succeeded.
    Shutoff(String),
    /// QEMU died, the guest panicked or the VMI could not start: the VMI Failed.
    Crashed(String),
}

impl DomainState {
    /// Whether QEMU is gone or going for good.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Shutoff(_) | Self::Crashed(_))
    }

    /// Why it ended (empty unless final).
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Shutoff(r) | Self::Crashed(r) => r,
            _ => "",
        }
    }
}

/// The state the launcher with runtime directory `runtime` ended in, if it has.
#[must_use]
pub fn final_state(runtime: &Path) -> Option<DomainState> {
    let text = std::fs::read_to_string(runtime.join(crate::FINAL_STATE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records how the domain ended.
///
/// # Errors
/// The file cannot be written.
pub fn write_final_state(runtime: &Path, state: &DomainState) -> std::io::Result<()> {
    let text = serde_json::to_string(state).map_err(std::io::Error::other)?;
    std::fs::write(runtime.join(crate::FINAL_STATE), text)
}
