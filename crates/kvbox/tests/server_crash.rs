//! `kill -9` of `kvbox server` while 8 clients create objects: after a restart every create that returned 201 is
//! there with its resourceVersion, revisions are unique and increasing, nothing is torn, and a watch resumed from
//! its last resourceVersion gets every later change exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Config};
use serde_json::json;

/// Names and revisions the watcher saw, and the last revision.
type Seen = Arc<Mutex<(Vec<(String, i64)>, i64)>>;

fn start(dir: &Path, listen: &str) -> Child {
    common::start_server(dir, listen)
}

async fn client(dir: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig.yaml")).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn server_addr(dir: &Path) -> String {
    let kc = std::fs::read_to_string(dir.join("kubeconfig.yaml")).unwrap();
    let line = kc
        .lines()
        .find(|l| l.trim_start().starts_with("server:"))
        .unwrap();
    line.trim().trim_start_matches("server: https://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = start(&dir, "127.0.0.1:0");
    let addr = server_addr(&dir);
    let c = client(&dir).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");

    // A watcher records every change it sees, and the last resourceVersion.
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let seen: Seen = Arc::new(Mutex::new((Vec::new(), start_rv.parse().unwrap())));
    let seen_w = seen.clone();
    let watch_api = cms.clone();
    let watch = tokio::spawn(async move {
        let mut s = watch_api
            .watch(&WatchParams::default(), &start_rv)
            .await
            .unwrap()
            .boxed();
        while let Some(Ok(ev)) = s.next().await {
            if let WatchEvent::Added(o) = ev {
                let rv: i64 = o.metadata.resource_version.unwrap().parse().unwrap();
                let mut g = seen_w.lock().unwrap();
                g.0.push((o.metadata.name.unwrap(), rv));
                g.1 = rv;
            }
        }
    });

    // Eight clients create as fast as they can; only 201s count.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let api = cms.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i:05}");
                let obj: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name}, "data": {"payload": "x".repeat(512)}}),
                )
                .unwrap();
                match api.create(&PostParams::default(), &obj).await {
                    Ok(o) => {
                        acked
                            .lock()
                            .unwrap()
                            .insert(name, o.metadata.resource_version.unwrap());
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "writers too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    watch.abort();
    let acked = acked.lock().unwrap().clone();
    let (before_kill, last_rv) = seen.lock().unwrap().clone();

    let mut server = start(&dir, &addr);
    let c = client(&dir).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let stored: BTreeMap<String, String> = list
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap(),
                o.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    for (name, rv) in &acked {
        assert_eq!(
            stored.get(name),
            Some(rv),
            "acknowledged create {name} lost or changed"
        );
    }
    // The namespace's root CA ConfigMap is the server's own, not a writer's.
    for o in list
        .items
        .iter()
        .filter(|o| o.metadata.name.as_deref() != Some("kube-root-ca.crt"))
    {
        assert_eq!(
            o.data.as_ref().unwrap()["payload"].len(),
            512,
            "torn object {:?}",
            o.metadata.name
        );
    }
    let revs: Vec<i64> = stored.values().map(|r| r.parse().unwrap()).collect();
    assert_eq!(
        revs.iter().collect::<BTreeSet<_>>().len(),
        revs.len(),
        "revisions are unique"
    );

    // Resume the watch from the last resourceVersion it saw: every later object exactly once, nothing earlier.
    let mut s = cms
        .watch(&WatchParams::default().timeout(2), &last_rv.to_string())
        .await
        .unwrap()
        .boxed();
    let mut resumed = Vec::new();
    while let Some(Ok(ev)) = s.next().await {
        if let WatchEvent::Added(o) = ev {
            resumed.push(o.metadata.name.unwrap());
        }
    }
    let expected: BTreeSet<String> = stored
        .iter()
        .filter(|(_, rv)| rv.parse::<i64>().unwrap() > last_rv)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(resumed.len(), expected.len(), "each later event exactly once");
    assert_eq!(resumed.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let earlier: BTreeSet<String> = before_kill.iter().map(|(n, _)| n.clone()).collect();
    assert!(
        resumed.iter().all(|n| !earlier.contains(n)),
        "no event replayed twice"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
