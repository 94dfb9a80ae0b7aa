//! The encoded watch events the watchers of one resource share.

use bytes::Bytes;

/// Encoded event lines by (revision, resource, version, type): with many watchers of one resource, each event is
/// decoded and encoded once instead of once per watcher. Holds the newest [`EventCache::CAPACITY`] lines.
#[derive(Debug, Default)]
pub struct EventCache {
    lines: std::sync::Mutex<std::collections::BTreeMap<(i64, String, &'static str), Bytes>>,
}

impl EventCache {
    const CAPACITY: usize = 256;

    pub(crate) fn get_or(
        &self,
        key: (i64, String, &'static str),
        make: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        if let Some(b) = self.lines.lock().ok().and_then(|l| l.get(&key).cloned()) {
            return Some(b);
        }
        let b = make()?;
        if let Ok(mut l) = self.lines.lock() {
            l.insert(key, b.clone());
            while l.len() > Self::CAPACITY {
                l.pop_first();
            }
        }
        Some(b)
    }
}
