//! kube-rs against the real HTTPS server: typed CRUD (a built-in and a KubeVirt kind), `Patch::Apply`, a `Controller`
//! reconciling, and a `watcher` that survives a server restart and a 410 (it must relist, not retry forever).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apiserver::server::{ServerConfig, start};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Config};
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::json;

async fn client(kubeconfig: &std::path::Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn cm(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": data}})).unwrap()
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl FnMut() -> F) {
    testing::eventually_async(what, Duration::from_secs(20), f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_apply_controller_and_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: tmp.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        service_range: Default::default(),
    };
    let running = start(&config).await.unwrap();
    let addr = running.addr;
    let c = client(&running.kubeconfig).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");

    // CRUD.
    let created = cms.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let mut got = cms.get("a").await.unwrap();
    got.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let replaced = cms.replace("a", &PostParams::default(), &got).await.unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    let stale = cms.replace("a", &PostParams::default(), &got).await.unwrap_err();
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409),
        "{stale:?}"
    );
    // Beside ours, the namespace's root CA (as every namespace of a real cluster has).
    let names: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, ["a", "kube-root-ca.crt"]);

    // A KubeVirt kind through its typed API: admission defaults it.
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let vmi: VirtualMachineInstance = serde_json::from_value(
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "v"}, "spec": {"domain": {"devices": {}, "memory": {"guest": "128Mi"}}}}),
    )
    .unwrap();
    let vmi = vmis.create(&PostParams::default(), &vmi).await.unwrap();
    assert_eq!(vmi.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    assert!(matches!(vmis.get("missing").await, Err(kube::Error::Api(s)) if s.code == 404));

    // Server-side apply creates, then merges.
    let pp = PatchParams::apply("test-manager").force();
    cms.patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"x": "1", "y": "1"}}))).await.unwrap();
    let p = cms.patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"x": "2"}}))).await.unwrap();
    let data = p.data.unwrap();
    assert_eq!(data["x"], "2");
    assert!(
        !data.contains_key("y"),
        "a field the manager stopped applying is removed"
    );
    let managed = p.metadata.managed_fields.unwrap();
    assert_eq!(
        (managed[0].manager.as_deref(), managed[0].operation.as_deref()),
        (Some("test-manager"), Some("Apply"))
    );

    // A controller reconciles every ConfigMap (marks it), including ones created later.
    let reconciled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ctrl_api = cms.clone();
    let counter = reconciled.clone();
    let ctrl = tokio::spawn(
        Controller::new(cms.clone(), watcher::Config::default())
            .run(
                move |obj: Arc<ConfigMap>, api: Arc<Api<ConfigMap>>| {
                    let counter = counter.clone();
                    async move {
                        let name = obj.metadata.name.clone().unwrap_or_default();
                        let marked = obj
                            .metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("reconciled"));
                        if !marked {
                            let patch = json!({"metadata": {"annotations": {"reconciled": "yes"}}});
                            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await?;
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, kube::Error>(Action::await_change())
                    }
                },
                |_, _, _| Action::requeue(Duration::from_secs(1)),
                Arc::new(ctrl_api),
            )
            .for_each(|_| async {}),
    );
    cms.create(&PostParams::default(), &cm("later", "x"))
        .await
        .unwrap();
    for name in ["a", "applied", "later"] {
        let api = cms.clone();
        eventually(&format!("{name} reconciled"), || {
            let api = api.clone();
            async move {
                api.get(name)
                    .await
                    .ok()
                    .and_then(|c| c.metadata.annotations)
                    .is_some_and(|a| a.contains_key("reconciled"))
            }
        })
        .await;
    }
    // The counter moves just after the patch a reader can already see: wait for it before stopping.
    let counted = reconciled.clone();
    eventually("three reconciles counted", || {
        let counted = counted.clone();
        async move { counted.load(std::sync::atomic::Ordering::SeqCst) >= 3 }
    })
    .await;
    ctrl.abort();
    assert!(reconciled.load(std::sync::atomic::Ordering::SeqCst) >= 3);

    // A watcher keeps going across a restart during which history was compacted away (a 410 on resume).
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen_w = seen.clone();
    let w = tokio::spawn(
        watcher(cms.clone(), watcher::Config::default()).for_each(move |ev| {
            let seen = seen_w.clone();
            async move {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                    seen.lock().unwrap().insert(o.metadata.name.unwrap_or_default());
                }
            }
        }),
    );
    eventually("initial list", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().contains("later") }
    })
    .await;
    running.shutdown().await;
    {
        let store = apiserver_store::Store::sqlite(&tmp.path().join("data/state.db")).unwrap();
        for i in 0..3 {
            let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("offline-{i}"), "namespace": "default", "uid": format!("u{i}"), "creationTimestamp": "2026-01-01T00:00:00Z"}});
            store
                .create(
                    &format!("/registry/core/configmaps/default/offline-{i}"),
                    serde_json::to_vec(&v).unwrap(),
                )
                .unwrap();
        }
        store.compact_to(store.revision().unwrap()).unwrap();
    }
    let restarted = start(&ServerConfig {
        data_dir: tmp.path().join("data"),
        listen: addr,
        service_range: Default::default(),
    })
    .await
    .unwrap();
    eventually("objects written while the server was down", || {
        let seen = seen.clone();
        async move { (0..3).all(|i| seen.lock().unwrap().contains(&format!("offline-{i}"))) }
    })
    .await;
    w.abort();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    restarted.shutdown().await;
}
