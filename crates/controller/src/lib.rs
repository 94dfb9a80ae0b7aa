//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]), and the VMI reconciler ([`vmi`]). VM and replica-set reconcilers come next.

pub mod overhead;
pub mod pod;
pub mod vmi;
