//! Watch fan-out: each watcher owns a bounded channel; a watcher that falls too far behind is dropped (its channel
//! closes), and the client resumes from the last revision it saw, as with kube-apiserver.

use tokio::sync::mpsc;

use crate::{Entry, KeyValue, Revision};

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key came into existence.
    Created,
    /// The key's value changed.
    Updated,
    /// The key was deleted; the event carries its last value.
    Deleted,
}

/// One change, at [`Event::revision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Created, updated or deleted.
    pub kind: EventKind,
    /// The key's state after the change; for a delete, the last value with `mod_revision` = the deletion revision.
    pub kv: KeyValue,
}

impl Event {
    /// The revision of the change.
    #[must_use]
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    pub(crate) fn from_entry(e: &Entry) -> Self {
        let kind = if e.deleted {
            EventKind::Deleted
        } else if e.create_revision == e.revision {
            EventKind::Created
        } else {
            EventKind::Updated
        };
        Self { kind, kv: e.kv() }
    }
}

/// A live watch: events in revision order, each exactly once. The stream ends (`None`) if the watcher fell too far
/// behind or the store was dropped; resume with a new watch from the last revision received.
#[derive(Debug)]
pub struct Watcher {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Watcher {
    /// The next event, waiting for it.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for use inside an async runtime).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Registered watchers.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    /// Prefix, channel, and the revision at or below which the watcher already has everything.
    slots: Vec<(String, mpsc::Sender<Event>, Revision)>,
}

/// Events a watcher may have queued before it counts as too slow.
pub(crate) const WATCH_BUFFER: usize = 4096;

impl Hub {
    /// Registers a watcher for `prefix`, pre-loaded with `history` (already in revision order).
    pub(crate) fn add(&mut self, prefix: &str, history: &[Entry], seen: Revision) -> Watcher {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER + history.len());
        for e in history {
            // Capacity covers the whole history, so this cannot fail.
            let _ = tx.try_send(Event::from_entry(e));
        }
        self.slots.push((prefix.to_string(), tx, seen));
        Watcher { rx }
    }

    /// Delivers `e` to every watcher of a matching prefix; drops watchers that are gone or full.
    pub(crate) fn publish(&mut self, e: &Entry) {
        let ev = Event::from_entry(e);
        self.slots.retain(|(prefix, tx, seen)| {
            !tx.is_closed()
                && (!e.key.starts_with(prefix.as_str())
                    || e.revision <= *seen
                    || tx.try_send(ev.clone()).is_ok())
        });
    }

    /// Number of live watchers.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|(_, tx, _)| !tx.is_closed()).count()
    }
}
