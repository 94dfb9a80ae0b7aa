//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]), the VMI reconciler ([`vmi`]) and the replica-set reconciler ([`replicaset`]). The VM reconciler comes next.

pub mod overhead;
pub mod pod;
pub mod replicaset;
pub mod vmi;
