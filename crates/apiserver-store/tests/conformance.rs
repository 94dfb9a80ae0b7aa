//! The same behaviour from every backend: CRUD semantics, revisions, lists, watches, compaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use apiserver_store::{EventKind, ListOptions, Retention, Store, StoreError};

fn backends() -> Vec<(&'static str, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::sqlite(&dir.path().join("state.db")).unwrap();
    vec![("memory", Store::memory(), None), ("sqlite", sqlite, Some(dir))]
}

#[test]
fn create_get_update_delete() {
    for (name, s, _dir) in backends() {
        let a = s.create("/r/pods/ns/a", b"v1".to_vec()).unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 1), "{name}");
        assert!(
            matches!(
                s.create("/r/pods/ns/a", b"x".to_vec()),
                Err(StoreError::AlreadyExists { .. })
            ),
            "{name}"
        );
        assert_eq!(s.get("/r/pods/ns/a").unwrap().unwrap().value, b"v1", "{name}");
        assert!(s.get("/r/pods/ns/zz").unwrap().is_none(), "{name}");

        let b = s.update("/r/pods/ns/a", b"v2".to_vec(), 1).unwrap();
        assert_eq!((b.create_revision, b.mod_revision), (1, 2), "{name}");
        match s.update("/r/pods/ns/a", b"v3".to_vec(), 1) {
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }) => {}
            other => panic!("{name}: {other:?}"),
        }
        assert!(matches!(
            s.update("/r/pods/ns/none", b"x".to_vec(), 1),
            Err(StoreError::NotFound { .. })
        ));

        // A no-op write is not a write.
        let same = s.update("/r/pods/ns/a", b"v2".to_vec(), 2).unwrap();
        assert_eq!(same.mod_revision, 2, "{name}");
        assert_eq!(s.revision().unwrap(), 2, "{name}");

        assert!(
            matches!(
                s.delete("/r/pods/ns/a", Some(1)),
                Err(StoreError::Conflict { .. })
            ),
            "{name}"
        );
        let gone = s.delete("/r/pods/ns/a", Some(2)).unwrap();
        assert_eq!(
            (gone.mod_revision, gone.value.as_slice()),
            (3, b"v2".as_slice()),
            "{name}"
        );
        assert!(s.get("/r/pods/ns/a").unwrap().is_none(), "{name}");
        assert!(
            matches!(s.delete("/r/pods/ns/a", None), Err(StoreError::NotFound { .. })),
            "{name}"
        );

        // Re-creating starts a new incarnation.
        let again = s.create("/r/pods/ns/a", b"v4".to_vec()).unwrap();
        assert_eq!((again.create_revision, again.mod_revision), (4, 4), "{name}");
        // History is readable.
        assert_eq!(
            s.get_at("/r/pods/ns/a", 1).unwrap().unwrap().value,
            b"v1",
            "{name}"
        );
        assert!(s.get_at("/r/pods/ns/a", 3).unwrap().is_none(), "{name}");
        assert!(
            matches!(
                s.get_at("/r/pods/ns/a", 99),
                Err(StoreError::FutureRevision { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn lists_paginate_and_read_history() {
    for (name, s, _dir) in backends() {
        for i in 0..10 {
            s.create(&format!("/r/cm/ns/c{i:02}"), format!("{i}").into_bytes())
                .unwrap();
        }
        s.create("/r/cm/other/x", b"o".to_vec()).unwrap();
        s.create("/r/cmx/ns/y", b"not under /r/cm/".to_vec()).unwrap();
        let at = s.revision().unwrap();
        s.delete("/r/cm/ns/c03", None).unwrap();

        let all = s.list("/r/cm/", &ListOptions::default()).unwrap();
        assert_eq!(all.items.len(), 10, "{name}: 9 in ns + 1 in other");
        assert!(!all.more);
        assert_eq!(s.count("/r/cm/ns/").unwrap(), 9, "{name}");

        let mut seen = Vec::new();
        let mut opts = ListOptions {
            limit: Some(4),
            revision: Some(at),
            ..ListOptions::default()
        };
        loop {
            let page = s.list("/r/cm/ns/", &opts).unwrap();
            assert_eq!(page.revision, at, "{name}");
            seen.extend(page.items.iter().map(|kv| kv.key.clone()));
            if !page.more {
                break;
            }
            opts.start_after = Some(page.items.last().unwrap().key.clone());
        }
        assert_eq!(
            seen.len(),
            10,
            "{name}: the list at the old revision still has c03"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{name}: key order");
    }
}

#[test]
fn watches_replay_then_go_live_exactly_once() {
    for (name, s, _dir) in backends() {
        s.create("/r/vmis/ns/a", b"1".to_vec()).unwrap();
        s.create("/r/pods/ns/p", b"pod".to_vec()).unwrap();
        s.update("/r/vmis/ns/a", b"2".to_vec(), 1).unwrap();
        let mut w = s.watch("/r/vmis/", 1).unwrap();
        s.create("/r/vmis/ns/b", b"b".to_vec()).unwrap();
        s.delete("/r/vmis/ns/a", None).unwrap();
        s.create("/r/pods/ns/q", b"pod".to_vec()).unwrap();

        let mut got = Vec::new();
        while let Some(e) = w.try_recv() {
            got.push((e.kind, e.kv.key.clone(), e.revision(), e.kv.value.clone()));
        }
        assert_eq!(
            got,
            vec![
                (EventKind::Updated, "/r/vmis/ns/a".to_string(), 3, b"2".to_vec()),
                (EventKind::Created, "/r/vmis/ns/b".to_string(), 4, b"b".to_vec()),
                (EventKind::Deleted, "/r/vmis/ns/a".to_string(), 5, b"2".to_vec()),
            ],
            "{name}"
        );
        // A watch from "now" sees only what follows.
        let mut w2 = s.watch("/r/", s.revision().unwrap()).unwrap();
        assert!(w2.try_recv().is_none());
        s.create("/r/pods/ns/z", b"z".to_vec()).unwrap();
        assert_eq!(w2.try_recv().unwrap().kv.key, "/r/pods/ns/z", "{name}");
    }
}

#[test]
fn compaction_expires_old_revisions_but_keeps_current_state() {
    for (name, s, _dir) in backends() {
        s.create("/r/a", b"1".to_vec()).unwrap(); // 1
        s.update("/r/a", b"2".to_vec(), 1).unwrap(); // 2
        s.create("/r/b", b"b".to_vec()).unwrap(); // 3
        s.delete("/r/b", None).unwrap(); // 4
        s.create("/r/c", b"c".to_vec()).unwrap(); // 5
        let removed = s.compact_to(4).unwrap();
        assert_eq!(removed, 3, "{name}: a@1, b@3 and the tombstone b@4");
        assert_eq!(s.compacted_revision().unwrap(), 4);
        assert!(
            matches!(
                s.watch("/r/", 3),
                Err(StoreError::Compacted {
                    requested: 3,
                    compacted: 4
                })
            ),
            "{name}"
        );
        assert!(
            matches!(s.get_at("/r/a", 1), Err(StoreError::Compacted { .. })),
            "{name}"
        );
        assert!(
            matches!(
                s.list(
                    "/r/",
                    &ListOptions {
                        revision: Some(2),
                        ..Default::default()
                    }
                ),
                Err(StoreError::Compacted { .. })
            ),
            "{name}"
        );
        assert_eq!(s.get("/r/a").unwrap().unwrap().value, b"2", "{name}");
        let keys: Vec<_> = s
            .list("/r/", &ListOptions::default())
            .unwrap()
            .items
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, ["/r/a", "/r/c"], "{name}");
        // A watch from the compacted revision still replays everything after it.
        let mut w = s.watch("/r/", 4).unwrap();
        assert_eq!(w.try_recv().unwrap().kv.key, "/r/c");
        // Revisions never go back, even though the newest rows of b were removed.
        assert_eq!(s.create("/r/d", b"d".to_vec()).unwrap().mod_revision, 6, "{name}");
    }
}

#[test]
fn retention_keeps_recent_history() {
    for (name, s, _dir) in backends() {
        for i in 0..20 {
            s.create(&format!("/r/k{i}"), b"x".to_vec()).unwrap();
        }
        // Everything is younger than five minutes: nothing may go.
        assert_eq!(s.compact(Retention::default()).unwrap(), 0, "{name}");
        let kept = s
            .compact(Retention {
                min_revisions: 5,
                min_age: std::time::Duration::ZERO,
            })
            .unwrap();
        assert_eq!(kept, 15, "{name}");
        s.maintain().unwrap();
    }
}

#[test]
fn a_watcher_that_stops_reading_is_dropped_not_buffered_forever() {
    let s = Store::memory();
    let w = s.watch("/", 0).unwrap();
    for i in 0..5000 {
        s.create(&format!("/k{i}"), Vec::new()).unwrap();
    }
    assert_eq!(s.watchers().unwrap(), 0);
    drop(w);
    let _live = s.watch("/", s.revision().unwrap()).unwrap();
    assert_eq!(s.watchers().unwrap(), 1);
}

#[test]
fn sqlite_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = Store::sqlite(&path).unwrap();
        s.create("/r/a", b"1".to_vec()).unwrap();
        s.create("/r/b", b"2".to_vec()).unwrap();
        s.delete("/r/b", None).unwrap();
        s.compact_to(3).unwrap();
    }
    let s = Store::sqlite(&path).unwrap();
    assert_eq!(s.revision().unwrap(), 3);
    assert_eq!(s.compacted_revision().unwrap(), 3);
    assert_eq!(s.get("/r/a").unwrap().unwrap().value, b"1");
    assert_eq!(s.create("/r/c", Vec::new()).unwrap().mod_revision, 4);
}

#[test]
fn concurrent_writers_share_fsyncs_and_watchers_see_each_write_once_in_order() {
    for (name, s, _dir) in backends() {
        let mut w = s.watch("/r/", 0).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            s.create(&format!("/r/cm/t{t}-{i}"), vec![b'x'; 64])
                                .unwrap()
                                .mod_revision
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut acknowledged: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        acknowledged.sort_unstable();
        assert_eq!(
            acknowledged,
            (1..=800).collect::<Vec<_>>(),
            "{name}: revisions are dense and unique"
        );
        let mut seen = Vec::new();
        while let Some(e) = w.try_recv() {
            seen.push(e.revision());
        }
        assert_eq!(seen, acknowledged, "{name}: every write once, in revision order");
        // A watch from a revision a lister saw gets nothing twice.
        let mut w2 = s.watch("/r/", 400).unwrap();
        s.create("/r/cm/late", b"l".to_vec()).unwrap();
        let mut later = Vec::new();
        while let Some(e) = w2.try_recv() {
            later.push(e.revision());
        }
        assert_eq!(later, (401..=801).collect::<Vec<_>>(), "{name}");
    }
}
