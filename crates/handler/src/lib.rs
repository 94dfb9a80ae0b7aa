//! virt-handler, one per node: registers and heartbeats the node ([`node`]) with KVM usability probed for real
//! ([`kvm`]), and drives the launchers of the VMIs scheduled there over their command sockets (`launcher-protocol`,
//! [`vmi`]), and serves virt-api on a TLS endpoint ([`server`]: console and VNC [`stream`]s, guest agent data
//! in upstream's shapes ([`guestinfo`]), lifecycle commands) with the KubeVirt CA's certificates ([`certs`]);
//! [`client`] is the caller's side.

pub mod certs;
pub mod client;
pub mod guestinfo;
pub mod kvm;
pub mod node;
pub mod server;
pub mod stream;
pub mod tls;
pub mod vmi;
