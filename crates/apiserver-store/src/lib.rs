//! A revisioned key/value log for the embedded API server: one global revision (`resourceVersion`), point reads and lists
//! at a revision, conditional writes, watches that replay history then go live, and compaction.
//!
//! # Design (kine's, in Rust)
//! 1. Every write appends an [`Entry`] to a log through a narrow internal [`log::Log`] trait; the entry's id *is* the
//!    revision. Backends: [`Store::memory`] (tests) and [`Store::sqlite`] (WAL: a write returns only once the WAL holding
//!    it is fsync'd, so an acknowledged write survives `kill -9` and power loss).
//!    Group commit: writers append under the lock, release it, then wait for one fsync that covers every write
//!    appended before it started; one waiter does the fsync for all (etcd batches its WAL syncs the same way).
//!    Watchers see an entry only once it is durable.
//! 2. The current value of a key is its newest entry; a delete appends a tombstone carrying the last value (so a
//!    replayed DELETED event still has the object).
//! 3. Writes are serialised by one lock; watchers are notified under that lock (in revision order, after the fsync),
//!    so every watcher sees events in revision order, exactly once, with no gap between replayed history and live
//!    events.
//! 4. Compaction drops superseded entries and tombstones at or below a revision; watches and lists older than the
//!    compacted revision fail with [`StoreError::Compacted`] (the API server's 410 Gone).
//!
//! Values are opaque bytes: the store knows nothing of Kubernetes objects.

mod log;
mod memory;
mod sqlite;
mod store;
mod watch;

pub use store::{ListOptions, ListResult, Retention, Store};
pub use watch::{Event, EventKind, Watcher};

/// A position in the global log; Kubernetes calls it `resourceVersion`. Starts at 1; 0 means "none".
pub type Revision = i64;

/// The stored state of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, such as `/registry/pods/default/web`.
    pub key: String,
    /// The value bytes (the API server stores JSON).
    pub value: Vec<u8>,
    /// Revision at which the key was created (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last change.
    pub mod_revision: Revision,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A create found the key present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A conditional write found a different revision.
    #[error("key {key:?} is at revision {actual}, not {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current revision (0 when absent).
        actual: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compacted revision.
        compacted: Revision,
    },
    /// The requested revision is newer than the store.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The backend failed (I/O, corruption, ...).
    #[error("storage backend: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) revision: Revision,
    pub(crate) key: String,
    pub(crate) create_revision: Revision,
    pub(crate) prev_revision: Revision,
    pub(crate) deleted: bool,
    pub(crate) value: Vec<u8>,
    /// Unix milliseconds of the write, for time-based retention.
    pub(crate) written_ms: i64,
}

impl Entry {
    pub(crate) fn kv(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
        }
    }
}

/// The exclusive upper bound of keys starting with `prefix` (`None`: unbounded).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/registry/pods/"), Some("/registry/pods0".into()));
        assert_eq!(prefix_end("a"), Some("b".into()));
        assert_eq!(prefix_end(""), None);
    }
}
