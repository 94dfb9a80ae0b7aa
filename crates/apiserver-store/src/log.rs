//! The narrow persistence seam every backend implements: an append-only log of [`Entry`]s with a few indexed reads.

use crate::{Entry, Revision, StoreError};

/// An entry to append; the log assigns its revision.
#[derive(Clone, Debug)]
pub(crate) struct NewEntry {
    pub(crate) key: String,
    pub(crate) create_revision: Option<Revision>,
    pub(crate) prev_revision: Revision,
    pub(crate) deleted: bool,
    pub(crate) value: Vec<u8>,
    pub(crate) written_ms: i64,
}

/// Persistence of the log. Called with the store's lock held: implementations need no locking of their own.
pub(crate) trait Log: Send {
    /// Newest revision ever assigned (0 for an empty log).
    fn current(&self) -> Result<Revision, StoreError>;
    /// Highest revision removed by compaction (0 if never compacted).
    fn compacted(&self) -> Result<Revision, StoreError>;
    /// Newest entry of `key` at or below `at` (tombstones included).
    fn latest(&self, key: &str, at: Revision) -> Result<Option<Entry>, StoreError>;
    /// Live (non-deleted) newest entries of keys in `[prefix, prefix_end)` after `start_after`, at `at`, in key order.
    fn list(
        &self,
        prefix: &str,
        at: Revision,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError>;
    /// Number of live keys under `prefix` at `at`.
    fn count(&self, prefix: &str, at: Revision) -> Result<usize, StoreError>;
    /// Entries with a revision above `after` for keys under `prefix`, in revision order.
    fn since(&self, prefix: &str, after: Revision) -> Result<Vec<Entry>, StoreError>;
    /// The entry at exactly `revision`, if it still exists.
    fn at(&self, revision: Revision) -> Result<Option<Entry>, StoreError>;
    /// Appends durably; returns the stored entry.
    fn append(&mut self, e: NewEntry) -> Result<Entry, StoreError>;
    /// Removes superseded entries and tombstones at or below `upto`; records `upto` as compacted.
    fn compact(&mut self, upto: Revision) -> Result<usize, StoreError>;
    /// The lowest revision written at or after `ms` (unix milliseconds), if any.
    fn first_since_ms(&self, ms: i64) -> Result<Option<Revision>, StoreError>;
    /// Housekeeping after compaction (checkpoint, vacuum).
    fn maintain(&mut self) -> Result<(), StoreError>;
    /// The file whose fsync makes every appended entry durable (SQLite's WAL), when appends are not durable by
    /// themselves; the store then syncs it once for a whole group of concurrent writes. `None`: nothing to sync.
    fn sync_path(&self) -> Option<std::path::PathBuf> {
        None
    }
}
