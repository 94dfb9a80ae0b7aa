//! The SQLite log: one `log` table whose AUTOINCREMENT id is the revision, WAL journal, `synchronous=NORMAL`.
//!
//! Durability: a commit writes its WAL frames; the store fsyncs the WAL file ([`Log::sync_path`]) before it
//! acknowledges the write, once for every group of writes that committed meanwhile (group commit), so a write that
//! returned survives `kill -9` and power loss. Growth: compaction deletes rows, `maintain` truncates the WAL with a checkpoint and
//! returns free pages with an incremental vacuum (the database is created with `auto_vacuum=INCREMENTAL`).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::log::{Log, NewEntry};
use crate::{Entry, Revision, StoreError, prefix_end};

const SCHEMA: &str = "
PRAGMA auto_vacuum = INCREMENTAL;
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    value      BLOB    NOT NULL,
    written_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
CREATE INDEX IF NOT EXISTS log_written ON log(written_ms);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(name, value) VALUES ('compacted', 0);
";

const COLUMNS: &str = "rev, key, create_rev, prev_rev, deleted, value, written_ms";

/// A log in one SQLite database file.
#[derive(Debug)]
pub(crate) struct SqliteLog {
    conn: Connection,
    wal: std::path::PathBuf,
}

fn entry(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        revision: row.get(0)?,
        key: row.get(1)?,
        create_revision: row.get(2)?,
        prev_revision: row.get(3)?,
        deleted: row.get::<_, i64>(4)? != 0,
        value: row.get(5)?,
        written_ms: row.get(6)?,
    })
}

/// `key >= lo AND key < hi`, with `hi` unbounded for the empty prefix.
fn range(prefix: &str) -> (String, String) {
    (
        prefix.to_string(),
        prefix_end(prefix).unwrap_or_else(|| "\u{10FFFF}".repeat(4)),
    )
}

impl SqliteLog {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a commit writes the WAL without fsync; the store fsyncs the WAL once per group of commits
        // (`sync_path`) before any of them is acknowledged. Checkpoints still sync as under FULL.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn,
            wal: wal.into(),
        })
    }
}

impl Log for SqliteLog {
    fn current(&self) -> Result<Revision, StoreError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(seq.unwrap_or(0))
    }

    fn compacted(&self) -> Result<Revision, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                r.get(0)
            })?)
    }

    fn latest(&self, key: &str, at: Revision) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM log WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![key, at], entry)
            .optional()?)
    }

    fn list(
        &self,
        prefix: &str,
        at: Revision,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError> {
        let (lo, hi) = range(prefix);
        let after = start_after.unwrap_or("");
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {COLUMNS} FROM log WHERE rev IN (
                 SELECT MAX(rev) FROM log WHERE key >= ?1 AND key < ?2 AND key > ?3 AND rev <= ?4 GROUP BY key)
             AND deleted = 0 ORDER BY key LIMIT ?5"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![lo, hi, after, at, limit], entry)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn count(&self, prefix: &str, at: Revision) -> Result<usize, StoreError> {
        let (lo, hi) = range(prefix);
        let n: i64 = self.conn.prepare_cached(
            "SELECT COUNT(*) FROM log WHERE rev IN (
                 SELECT MAX(rev) FROM log WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) AND deleted = 0",
        )?
        .query_row(params![lo, hi, at], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn since(&self, prefix: &str, after: Revision) -> Result<Vec<Entry>, StoreError> {
        let (lo, hi) = range(prefix);
        let sql = format!("SELECT {COLUMNS} FROM log WHERE rev > ?1 AND key >= ?2 AND key < ?3 ORDER BY rev");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after, lo, hi], entry)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn at(&self, revision: Revision) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM log WHERE rev = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![revision], entry)
            .optional()?)
    }

    fn append(&mut self, e: NewEntry) -> Result<Entry, StoreError> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO log (key, create_rev, prev_rev, deleted, value, written_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![e.key, e.create_revision.unwrap_or(0), e.prev_revision, i64::from(e.deleted), e.value, e.written_ms])?;
        let revision = tx.last_insert_rowid();
        let create_revision = e.create_revision.unwrap_or(revision);
        if e.create_revision.is_none() {
            tx.prepare_cached("UPDATE log SET create_rev = ?1 WHERE rev = ?1")?
                .execute(params![revision])?;
        }
        tx.commit()?;
        Ok(Entry {
            revision,
            key: e.key,
            create_revision,
            prev_revision: e.prev_revision,
            deleted: e.deleted,
            value: e.value,
            written_ms: e.written_ms,
        })
    }

    fn compact(&mut self, upto: Revision) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM log WHERE rev <= ?1 AND (deleted = 1 OR rev < (
                 SELECT MAX(l2.rev) FROM log l2 WHERE l2.key = log.key AND l2.rev <= ?1))",
            params![upto],
        )?;
        tx.execute(
            "UPDATE meta SET value = MAX(value, ?1) WHERE name = 'compacted'",
            params![upto],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    fn first_since_ms(&self, ms: i64) -> Result<Option<Revision>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT MIN(rev) FROM log WHERE written_ms >= ?1",
            params![ms],
            |r| r.get(0),
        )?)
    }

    fn sync_path(&self) -> Option<std::path::PathBuf> {
        Some(self.wal.clone())
    }

    fn maintain(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA incremental_vacuum;")?;
        Ok(())
    }
}
