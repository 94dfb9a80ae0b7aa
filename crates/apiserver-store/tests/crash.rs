//! `kill -9` a process that is writing: every write it had acknowledged is in the database afterwards, revisions are
//! dense and increasing, and no value is torn.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiserver_store::{ListOptions, Store};

const CHILD_ENV: &str = "APISERVER_STORE_CRASH_CHILD";

/// In the child: write forever, printing each acknowledged revision.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = Store::sqlite(std::path::Path::new(&path)).unwrap();
    let value = vec![b'x'; 4096];
    for i in 0u64.. {
        let kv = s.create(&format!("/r/objs/{i:08}"), value.clone()).unwrap();
        println!("ACK {} {}", kv.key, kv.mod_revision);
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.push((key.to_string(), rev.parse::<i64>().unwrap()));
        }
        if acked.len() >= 200 || Instant::now() > deadline {
            break;
        }
    }
    // std sends SIGKILL on Unix: the writer gets no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 50,
        "the writer acknowledged only {} writes",
        acked.len()
    );

    let s = Store::sqlite(&path).unwrap();
    for (key, rev) in &acked {
        let kv = s
            .get(key)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.value, vec![b'x'; 4096], "torn value at {key}");
    }
    let all = s.list("/r/objs/", &ListOptions::default()).unwrap();
    let revs: Vec<_> = all.items.iter().map(|kv| kv.mod_revision).collect();
    assert!(
        revs.windows(2).all(|w| w[1] == w[0] + 1),
        "revisions are dense and increasing"
    );
    assert!(all.items.len() >= acked.len());
    assert!(
        all.items.iter().all(|kv| kv.value.len() == 4096),
        "no torn values"
    );
}
