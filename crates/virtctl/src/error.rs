//! Why a virtctl command failed: the message printed as it is (upstream's texts, spelling included), exit 1.

/// Why a command failed (printed as it is).
pub(crate) type Failure = String;
