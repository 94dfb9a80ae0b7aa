//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]), the VMI, VM and replica-set reconcilers ([`vmi`], [`vm`], [`replicaset`]), the node heartbeat watch ([`node`]), crash-loop backoff ([`backoff`]) and leader election ([`leader`]).

pub mod backoff;
pub mod leader;
pub mod manager;
pub mod node;
pub mod overhead;
pub mod pod;
pub mod replicaset;
pub mod vm;
pub mod vmi;
