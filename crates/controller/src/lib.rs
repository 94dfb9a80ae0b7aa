//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]), the VMI, VM and replica-set reconcilers ([`vmi`], [`vm`], [`replicaset`]), and the node heartbeat watch ([`node`]).

pub mod node;
pub mod overhead;
pub mod pod;
pub mod replicaset;
pub mod vm;
pub mod vmi;
