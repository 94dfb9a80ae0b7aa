//! virt-launcher's pieces: preparing volumes ([`prepare`]), running and supervising QEMU ([`vm`]), and the command
//! socket the node agent drives ([`api`]), agent-propagated access credentials ([`credentials`]). The `virt-launcher` binary wires them for one VMI.

pub mod api;
pub mod credentials;
pub mod dhcp;
pub mod dhcp6;
pub mod hotplug;
pub mod network;
pub mod prepare;
pub mod vm;
