//! The launcher's command socket, both sides' one definition: protocol version 1, JSON lines over
//! `<runtime>/launcher.sock`. The launcher greets with a [`Hello`]; each [`Request`] (an id and a [`Command`]) gets a
//! [`Response`] whose result is that command's reply type ([`Synced`], [`DomainInfo`], [`GuestInfo`], …); domain
//! [`Event`]s arrive unasked. When QEMU is gone the launcher leaves its [`DomainState`] in
//! `<runtime>/final-state.json` ([`final_state`]) for whoever was not connected when it ended. The node agent talks
//! through [`Launcher`]; the launcher serves with the same types.
//!
//! Room for wave 2 (network setup, hotplug, migration): new commands are new [`Command`] variants with their own
//! reply types; an incompatible change bumps [`PROTOCOL`], which [`Launcher::connect`] refuses to talk across.

mod client;
mod message;
pub mod network;
mod state;

pub use client::{Launcher, LauncherError, Peer};
pub use message::{
    AccessCredentials, Command, DomainInfo, DomainInterface, Event, EventLine, GuestInfo, GuestOsInfo, Hello,
    QemuStatus, Request, Response, Screenshot, Synced,
};
pub use state::{DomainState, final_state, write_final_state};

use std::path::{Path, PathBuf};

/// The protocol version both sides speak.
pub const PROTOCOL: u32 = 1;

/// The command socket's file name in the launcher's runtime directory.
pub const SOCKET: &str = "launcher.sock";

/// The final state's file name in the launcher's runtime directory.
pub const FINAL_STATE: &str = "final-state.json";

/// The command socket of the launcher whose runtime directory is `runtime`.
#[must_use]
pub fn socket(runtime: &Path) -> PathBuf {
    runtime.join(SOCKET)
}
