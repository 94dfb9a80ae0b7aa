//! [`Store`]: the operations the API server uses, over any [`Log`], with one lock serialising writes and watch
//! registration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::log::{Log, NewEntry};
use crate::memory::MemoryLog;
use crate::sqlite::SqliteLog;
use crate::watch::{Hub, Watcher};
use crate::{KeyValue, Revision, StoreError};

/// How to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// List as of this revision (`None`: the newest). Older than the compacted revision fails.
    pub revision: Option<Revision>,
    /// Only keys after this one (a continue token's position).
    pub start_after: Option<String>,
    /// At most this many items; `more` tells whether others follow.
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Live keys in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was taken at (the list's `resourceVersion`).
    pub revision: Revision,
    /// Whether more keys follow the last item.
    pub more: bool,
}

/// How much history compaction keeps: at least `min_revisions` revisions and everything younger than `min_age`.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Revisions kept below the current one.
    pub min_revisions: i64,
    /// Writes younger than this are kept.
    pub min_age: Duration,
}

impl Default for Retention {
    /// Kubernetes' own minimum: 5 minutes, and we add at least 1,000 revisions.
    fn default() -> Self {
        Self {
            min_revisions: 1000,
            min_age: Duration::from_secs(300),
        }
    }
}

struct Inner {
    log: Box<dyn Log>,
    hub: Hub,
    /// Appended but not yet durable: published to watchers by the next group sync.
    pending: Vec<crate::Entry>,
    /// Newest revision watchers have been told about.
    published: Revision,
}

/// Group commit over the log's sync file.
struct GroupSync {
    path: PathBuf,
    state: Mutex<SyncState>,
    wake: Condvar,
}

struct SyncState {
    /// Every revision up to this one is durable.
    synced: Revision,
    /// A waiter is fsyncing right now.
    syncing: bool,
    file: Option<std::fs::File>,
}

/// The revisioned store. Cheap to clone; all clones share one log.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    sync: Option<Arc<GroupSync>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// A store that lives in memory only.
    #[must_use]
    pub fn memory() -> Self {
        Self::with_log(Box::new(MemoryLog::default()))
    }

    /// A durable store in the SQLite database at `path` (created if missing).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the file cannot be opened or initialised.
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::with_log(Box::new(SqliteLog::open(path)?)))
    }

    fn with_log(log: Box<dyn Log>) -> Self {
        let sync = log.sync_path().map(|path| {
            Arc::new(GroupSync {
                path,
                state: Mutex::new(SyncState {
                    synced: 0,
                    syncing: false,
                    file: None,
                }),
                wake: Condvar::new(),
            })
        });
        let published = log.current().unwrap_or(0);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                log,
                hub: Hub::default(),
                pending: Vec::new(),
                published,
            })),
            sync,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("store lock poisoned by a panic".into()))
    }

    /// The newest revision.
    ///
    /// # Errors
    /// Backend failures.
    pub fn revision(&self) -> Result<Revision, StoreError> {
        self.lock()?.log.current()
    }

    /// The compacted revision: reads and watches must ask for newer ones.
    ///
    /// # Errors
    /// Backend failures.
    pub fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.lock()?.log.compacted()
    }

    fn check_revision(log: &dyn Log, rev: Revision) -> Result<(), StoreError> {
        let compacted = log.compacted()?;
        if rev < compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                compacted,
            });
        }
        let current = log.current()?;
        if rev > current {
            return Err(StoreError::FutureRevision {
                requested: rev,
                current,
            });
        }
        Ok(())
    }

    /// The newest entry of `key` if the key exists now.
    fn live(inner: &Inner, key: &str) -> Result<crate::Entry, StoreError> {
        match inner.log.latest(key, Revision::MAX)? {
            Some(e) if !e.deleted => Ok(e),
            _ => Err(StoreError::NotFound { key: key.to_string() }),
        }
    }

    /// Appends `e`, releases the lock, and returns once the entry is durable and the watchers have it.
    fn commit(&self, mut inner: MutexGuard<'_, Inner>, e: NewEntry) -> Result<KeyValue, StoreError> {
        let entry = inner.log.append(e)?;
        let kv = entry.kv();
        if self.sync.is_none() {
            inner.hub.publish(&entry);
            inner.published = entry.revision;
            return Ok(kv);
        }
        inner.pending.push(entry);
        drop(inner);
        self.durable(kv.mod_revision)?;
        Ok(kv)
    }

    /// Waits until `rev` is durable: either another waiter's fsync covers it, or this one fsyncs for everyone.
    fn durable(&self, rev: Revision) -> Result<(), StoreError> {
        let Some(gs) = &self.sync else { return Ok(()) };
        let poisoned = |_| StoreError::Backend("store sync lock poisoned by a panic".into());
        let mut st = gs.state.lock().map_err(poisoned)?;
        loop {
            if st.synced >= rev {
                return Ok(());
            }
            if !st.syncing {
                break;
            }
            st = gs.wake.wait(st).map_err(poisoned)?;
        }
        st.syncing = true;
        let file = st.file.take();
        drop(st);
        let result = self.sync_once(&gs.path, file);
        let mut st = gs.state.lock().map_err(poisoned)?;
        st.syncing = false;
        gs.wake.notify_all();
        let (file, target) = result?;
        st.file = Some(file);
        st.synced = st.synced.max(target);
        if st.synced >= rev {
            Ok(())
        } else {
            Err(StoreError::Backend(format!("revision {rev} was not synced")))
        }
    }

    /// One group fsync: everything appended so far becomes durable, then goes to the watchers.
    fn sync_once(
        &self,
        path: &Path,
        file: Option<std::fs::File>,
    ) -> Result<(std::fs::File, Revision), StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let io = |e: std::io::Error| StoreError::Backend(format!("syncing {}: {e}", path.display()));
        let on_disk = std::fs::metadata(path).map_err(io)?.ino();
        let file = match file {
            // SQLite keeps one WAL file while the connection is open; reopen if it was ever replaced.
            Some(f) if f.metadata().map_err(io)?.ino() == on_disk => f,
            _ => std::fs::File::open(path).map_err(io)?,
        };
        let target = self.lock()?.log.current()?;
        file.sync_data().map_err(io)?;
        let mut inner = self.lock()?;
        let upto = inner.pending.partition_point(|e| e.revision <= target);
        let ready: Vec<_> = inner.pending.drain(..upto).collect();
        for e in &ready {
            inner.hub.publish(e);
        }
        inner.published = inner.published.max(target);
        Ok((file, target))
    }

    /// The current value of `key`, or `None`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .log
            .latest(key, Revision::MAX)?
            .filter(|e| !e.deleted)
            .map(|e| e.kv()))
    }

    /// The value of `key` as of `revision`.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] / [`StoreError::FutureRevision`] for revisions out of range.
    pub fn get_at(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        let inner = self.lock()?;
        Self::check_revision(inner.log.as_ref(), revision)?;
        Ok(inner
            .log
            .latest(key, revision)?
            .filter(|e| !e.deleted)
            .map(|e| e.kv()))
    }

    /// Live keys under `prefix`, in key order.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] / [`StoreError::FutureRevision`] for a revision out of range.
    pub fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let inner = self.lock()?;
        let revision = match opts.revision {
            Some(r) => {
                Self::check_revision(inner.log.as_ref(), r)?;
                r
            }
            None => inner.log.current()?,
        };
        let fetch = opts.limit.map(|l| l.saturating_add(1));
        let mut entries = inner
            .log
            .list(prefix, revision, opts.start_after.as_deref(), fetch)?;
        let more = opts.limit.is_some_and(|l| entries.len() > l);
        if let Some(l) = opts.limit {
            entries.truncate(l);
        }
        Ok(ListResult {
            items: entries.iter().map(crate::Entry::kv).collect(),
            revision,
            more,
        })
    }

    /// Number of live keys under `prefix`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let inner = self.lock()?;
        let at = inner.log.current()?;
        inner.log.count(prefix, at)
    }

    /// Creates `key`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if it exists.
    pub fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let inner = self.lock()?;
        let prev = inner.log.latest(key, Revision::MAX)?;
        if prev.as_ref().is_some_and(|p| !p.deleted) {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        let e = NewEntry {
            key: key.to_string(),
            create_revision: None,
            prev_revision: prev.map_or(0, |p| p.revision),
            deleted: false,
            value,
            written_ms: now_ms(),
        };
        self.commit(inner, e)
    }

    /// Replaces `key`'s value if it is still at `expected` (its `mod_revision`).
    ///
    /// Writing the value the key already has changes nothing: no new revision, no event.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`StoreError::Conflict`] when the key moved on.
    pub fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue, StoreError> {
        let inner = self.lock()?;
        let cur = Self::live(&inner, key)?;
        if cur.revision != expected {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                actual: cur.revision,
            });
        }
        if cur.value == value {
            return Ok(cur.kv());
        }
        let e = NewEntry {
            key: key.to_string(),
            create_revision: Some(cur.create_revision),
            prev_revision: cur.revision,
            deleted: false,
            value,
            written_ms: now_ms(),
        };
        self.commit(inner, e)
    }

    /// Deletes `key` (if still at `expected`, when given); returns its last value at the deletion revision.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`StoreError::Conflict`] when `expected` does not match.
    pub fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let inner = self.lock()?;
        let cur = Self::live(&inner, key)?;
        if let Some(exp) = expected.filter(|e| *e != cur.revision) {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: exp,
                actual: cur.revision,
            });
        }
        let e = NewEntry {
            key: key.to_string(),
            create_revision: Some(cur.create_revision),
            prev_revision: cur.revision,
            deleted: true,
            value: cur.value,
            written_ms: now_ms(),
        };
        self.commit(inner, e)
    }

    /// Watches keys under `prefix` for changes after revision `after`: first the history since then, then live.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] when `after` is older than the compacted revision (the API server's 410 Gone).
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        let mut inner = self.lock()?;
        let compacted = inner.log.compacted()?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        // History up to what watchers were told; later (not yet durable) entries arrive live, above `after` only.
        let published = inner.published;
        let mut history = inner.log.since(prefix, after)?;
        history.retain(|e| e.revision <= published);
        Ok(inner.hub.add(prefix, &history, after.max(published)))
    }

    /// Number of live watchers.
    ///
    /// # Errors
    /// Backend failures.
    pub fn watchers(&self) -> Result<usize, StoreError> {
        Ok(self.lock()?.hub.len())
    }

    /// Compacts everything `retention` does not protect; returns the compacted revision.
    ///
    /// # Errors
    /// Backend failures.
    pub fn compact(&self, retention: Retention) -> Result<Revision, StoreError> {
        let mut inner = self.lock()?;
        let current = inner.log.current()?;
        let mut target = current.saturating_sub(retention.min_revisions.max(0));
        if !retention.min_age.is_zero() {
            let age = i64::try_from(retention.min_age.as_millis()).unwrap_or(i64::MAX);
            if let Some(young) = inner.log.first_since_ms(now_ms().saturating_sub(age))? {
                target = target.min(young - 1);
            }
        }
        let compacted = inner.log.compacted()?;
        if target > compacted {
            inner.log.compact(target)?;
        }
        inner.log.compacted()
    }

    /// Compacts to exactly `revision` (tests and administrators).
    ///
    /// # Errors
    /// [`StoreError::FutureRevision`] beyond the current revision.
    pub fn compact_to(&self, revision: Revision) -> Result<usize, StoreError> {
        let mut inner = self.lock()?;
        let current = inner.log.current()?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        inner.log.compact(revision)
    }

    /// Housekeeping: WAL checkpoint and incremental vacuum (no-ops in memory).
    ///
    /// # Errors
    /// Backend failures.
    pub fn maintain(&self) -> Result<(), StoreError> {
        self.lock()?.log.maintain()
    }

    /// The value `key` had just before revision `revision` changed it (for watch filtering on the API side).
    ///
    /// # Errors
    /// Backend failures.
    pub fn previous(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        let inner = self.lock()?;
        let Some(e) = inner.log.at(revision)? else {
            return Ok(None);
        };
        if e.key != key || e.prev_revision == 0 {
            return Ok(None);
        }
        Ok(inner
            .log
            .at(e.prev_revision)?
            .filter(|p| !p.deleted)
            .map(|p| p.kv()))
    }
}
