//! Errors of the `api` crate.

/// Decoding an object into its typed form failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A field has the wrong JSON shape (a string where a number belongs, a missing required field, ...).
    #[error("{path}: {message}")]
    Field {
        /// The object's kind.
        kind: String,
        /// JSON path of the offending field, such as `spec.domain.devices.disks[0].bootOrder`.
        path: String,
        /// What was wrong with it.
        message: String,
    },
    /// The typed object could not be encoded back to JSON.
    #[error("cannot encode object: {0}")]
    Encode(String),
}
