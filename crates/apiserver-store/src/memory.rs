//! The in-memory log, for tests and throwaway servers.

use std::collections::BTreeMap;

use crate::log::{Log, NewEntry};
use crate::{Entry, Revision, StoreError};

/// Entries by revision plus each key's revisions, oldest first.
#[derive(Debug, Default)]
pub(crate) struct MemoryLog {
    entries: BTreeMap<Revision, Entry>,
    by_key: BTreeMap<String, Vec<Revision>>,
    current: Revision,
    compacted: Revision,
}

impl MemoryLog {
    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Vec<Revision>)> + 'a {
        self.by_key
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn latest_rev(revs: &[Revision], at: Revision) -> Option<Revision> {
        revs.iter().rev().find(|r| **r <= at).copied()
    }
}

impl Log for MemoryLog {
    fn current(&self) -> Result<Revision, StoreError> {
        Ok(self.current)
    }

    fn compacted(&self) -> Result<Revision, StoreError> {
        Ok(self.compacted)
    }

    fn latest(&self, key: &str, at: Revision) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .by_key
            .get(key)
            .and_then(|revs| Self::latest_rev(revs, at))
            .and_then(|r| self.entries.get(&r).cloned()))
    }

    fn list(
        &self,
        prefix: &str,
        at: Revision,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for (key, revs) in self.under(prefix) {
            if start_after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            if let Some(e) = Self::latest_rev(revs, at).and_then(|r| self.entries.get(&r))
                && !e.deleted
            {
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    fn count(&self, prefix: &str, at: Revision) -> Result<usize, StoreError> {
        Ok(self
            .under(prefix)
            .filter_map(|(_, revs)| Self::latest_rev(revs, at))
            .filter(|r| self.entries.get(r).is_some_and(|e| !e.deleted))
            .count())
    }

    fn since(&self, prefix: &str, after: Revision) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .entries
            .range(after.saturating_add(1)..)
            .map(|(_, e)| e)
            .filter(|e| e.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn at(&self, revision: Revision) -> Result<Option<Entry>, StoreError> {
        Ok(self.entries.get(&revision).cloned())
    }

    fn append(&mut self, e: NewEntry) -> Result<Entry, StoreError> {
        self.current += 1;
        let revision = self.current;
        let entry = Entry {
            revision,
            create_revision: e.create_revision.unwrap_or(revision),
            key: e.key,
            prev_revision: e.prev_revision,
            deleted: e.deleted,
            value: e.value,
            written_ms: e.written_ms,
        };
        self.by_key.entry(entry.key.clone()).or_default().push(revision);
        self.entries.insert(revision, entry.clone());
        Ok(entry)
    }

    fn compact(&mut self, upto: Revision) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut empty = Vec::new();
        for (key, revs) in &mut self.by_key {
            let newest_old = MemoryLog::latest_rev(revs, upto);
            let keep_newest = newest_old.filter(|r| self.entries.get(r).is_some_and(|e| !e.deleted));
            revs.retain(|r| {
                let drop = *r <= upto && Some(*r) != keep_newest;
                if drop {
                    self.entries.remove(r);
                    removed += 1;
                }
                !drop
            });
            if revs.is_empty() {
                empty.push(key.clone());
            }
        }
        for k in empty {
            self.by_key.remove(&k);
        }
        self.compacted = self.compacted.max(upto);
        Ok(removed)
    }

    fn first_since_ms(&self, ms: i64) -> Result<Option<Revision>, StoreError> {
        Ok(self
            .entries
            .values()
            .find(|e| e.written_ms >= ms)
            .map(|e| e.revision))
    }

    fn maintain(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
