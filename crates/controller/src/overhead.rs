//! The memory a launcher pod needs beyond the guest's RAM: our own formula, from our own measurements
//! (`scripts/bench-launcher`), not upstream's 240 MiB fixed libvirt stack.
//!
//! ```text
//! overhead = 16 MiB                       virt-launcher (measured ~9.4 MiB RSS, 0.6 MiB private)
//!          + 48 MiB                       QEMU itself (measured ~62 MiB with 1 vCPU and VGA, minus those below)
//!          +  8 MiB × vCPUs               vCPU threads, their stacks and per-CPU state
//!          + 16 MiB if graphics            the VGA/bochs frame buffer
//!          + 64 MiB under TCG              the translation cache (`tb-size=64`)
//!          + guest memory / 512           guest page tables
//!          + reservedOverhead.addedOverhead
//! ```
//! Rounded up to whole MiB. Example: 1 vCPU, 128 MiB guest, graphics, KVM → 16+48+8+16+1 = 89 MiB
//! (upstream: ~288 MiB); the same under TCG → 153 MiB.

const MIB: u64 = 1 << 20;

/// What the formula needs to know about a VMI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// vCPUs (sockets × cores × threads).
    pub vcpus: u64,
    /// Guest memory in bytes.
    pub guest_bytes: u64,
    /// A graphics device is attached.
    pub graphics: bool,
    /// The guest runs under TCG.
    pub tcg: bool,
    /// `spec.domain.memory.reservedOverhead.addedOverhead` in bytes.
    pub added_bytes: u64,
}

/// The overhead in bytes, a whole number of MiB.
#[must_use]
pub fn bytes(i: Inputs) -> u64 {
    let mut mib = 16 + 48 + 8 * i.vcpus.max(1);
    if i.graphics {
        mib += 16;
    }
    if i.tcg {
        mib += 64;
    }
    let total = mib * MIB + i.guest_bytes.div_ceil(512) + i.added_bytes;
    total.div_ceil(MIB) * MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        let kvm = Inputs {
            vcpus: 1,
            guest_bytes: 128 * MIB,
            graphics: true,
            tcg: false,
            added_bytes: 0,
        };
        assert_eq!(bytes(kvm) / MIB, 89);
        assert_eq!(bytes(Inputs { tcg: true, ..kvm }) / MIB, 153);
        assert_eq!(
            bytes(Inputs {
                vcpus: 4,
                graphics: false,
                added_bytes: 10 * MIB,
                ..kvm
            }) / MIB,
            16 + 48 + 32 + 1 + 10
        );
    }
}
