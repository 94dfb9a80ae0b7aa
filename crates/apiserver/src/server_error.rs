//! Why the server could not start (a leaf: the PKI and the server both report with it).

use std::path::PathBuf;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A data-dir file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Certificates(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] apiserver_store::StoreError),
    /// Seeding the store (CRDs, namespaces) failed.
    #[error("seeding the store: {0}")]
    Seed(String),
}
