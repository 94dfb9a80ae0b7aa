//! virt-handler, one per node: registers and heartbeats the node ([`node`]) with KVM usability probed for real
//! ([`kvm`]), and drives the launchers of the VMIs scheduled there over their command sockets ([`launcher`],
//! [`vmi`]).

pub mod kvm;
pub mod launcher;
pub mod node;
pub mod vmi;
