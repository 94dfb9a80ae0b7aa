//! virt-controller's logic: rendering a VMI's launcher pod ([`pod`]) with our measured memory overhead
//! ([`overhead`]). The reconcilers that use them arrive with the control loop.

pub mod overhead;
pub mod pod;
