//! `kvbox bench-api --kubeconfig K`: load on an API server through kube-rs, as controllers and users load it.
//!
//! Phases (each in its own namespace): creates/s at concurrency 1 and at concurrency C; the latency of listing N
//! objects; the latency from a create's request to its ADDED event at W watchers (p50/p99). Prints one line per
//! measurement. `scripts/bench-api` starts a server, runs this, and adds the server's RSS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// Arguments of `kvbox bench-api`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Kubeconfig of the server under test.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Creates in the sequential phase.
    #[arg(long, default_value_t = 500)]
    serial_creates: usize,
    /// Creates in the concurrent phase.
    #[arg(long, default_value_t = 5000)]
    concurrent_creates: usize,
    /// Concurrency of the concurrent phase.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Objects in the list phase.
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Watchers in the watch phase.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events in the watch phase.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// An etcd client URL (`http://127.0.0.1:PORT`): run the same create phases against it and print the ratio.
    #[arg(long)]
    etcd: Option<String>,
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"payload": "x".repeat(256)}}))
        .unwrap_or_default()
}

async fn namespace(c: &Client, name: &str) -> anyhow::Result<Api<ConfigMap>> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(Api::namespaced(c.clone(), name))
}

/// Creates `n` objects with `concurrency` workers; returns creates per second.
async fn creates(api: &Api<ConfigMap>, prefix: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let api = api.clone();
        let next = next.clone();
        let prefix = prefix.to_string();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, kube::Error>(());
                }
                api.create(&PostParams::default(), &cm(&format!("{prefix}-{i}")))
                    .await?;
            }
        }));
    }
    for w in workers {
        w.await.context("worker panicked")??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(bench(args))
}

async fn bench(args: &Args) -> anyhow::Result<ExitCode> {
    let (c, _) = kube_support::client(Some(&args.kubeconfig), None).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();

    let serial = namespace(&c, &format!("bench-serial-{tag}")).await?;
    let rate1 = creates(&serial, "s", args.serial_creates, 1).await?;
    println!(
        "creates/s at concurrency 1: {rate1:.0} ({} objects)",
        args.serial_creates
    );

    let conc = namespace(&c, &format!("bench-concurrent-{tag}")).await?;
    let rate_n = creates(&conc, "c", args.concurrent_creates, args.concurrency).await?;
    println!(
        "creates/s at concurrency {}: {rate_n:.0} ({} objects)",
        args.concurrency, args.concurrent_creates
    );

    if let Some(url) = &args.etcd {
        let e1 =
            super::bench_etcd::creates(url, &format!("bench-serial-{tag}"), args.serial_creates, 1).await?;
        let en = super::bench_etcd::creates(
            url,
            &format!("bench-concurrent-{tag}"),
            args.concurrent_creates,
            args.concurrency,
        )
        .await?;
        println!(
            "etcd creates/s at concurrency 1: {e1:.0}; at concurrency {}: {en:.0}",
            args.concurrency
        );
        println!(
            "kvbox/etcd create throughput: {:.2}x at concurrency 1, {:.2}x at concurrency {}",
            rate1 / e1,
            rate_n / en,
            args.concurrency
        );
    }

    let listed = namespace(&c, &format!("bench-list-{tag}")).await?;
    creates(&listed, "l", args.list_objects, args.concurrency).await?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = listed.list(&ListParams::default()).await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            l.items.len() == args.list_objects,
            "listed {} of {}",
            l.items.len(),
            args.list_objects
        );
    }
    times.sort();
    println!(
        "list of {} objects: median {:.1} ms",
        args.list_objects,
        percentile(&times, 0.5).as_secs_f64() * 1000.0
    );

    let watched = namespace(&c, &format!("bench-watch-{tag}")).await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let rv = watched
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut handles = Vec::new();
    for _ in 0..args.watchers {
        let mut stream = watched
            .watch(&WatchParams::default().timeout(120), &rv)
            .await?
            .boxed();
        let sent = sent.clone();
        let latencies = latencies.clone();
        let want = args.watch_events;
        handles.push(tokio::spawn(async move {
            let mut got = 0;
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(o) = ev {
                    let at = Instant::now();
                    let name = o.metadata.name.unwrap_or_default();
                    if let Some(t0) = sent.lock().ok().and_then(|s| s.get(&name).copied())
                        && let Ok(mut l) = latencies.lock()
                    {
                        l.push(at - t0);
                    }
                    got += 1;
                    if got >= want {
                        return;
                    }
                }
            }
        }));
    }
    for i in 0..args.watch_events {
        let name = format!("w-{i}");
        if let Ok(mut s) = sent.lock() {
            s.insert(name.clone(), Instant::now());
        }
        watched.create(&PostParams::default(), &cm(&name)).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
    }
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    println!(
        "watch event latency with {} watchers: p50 {:.2} ms, p99 {:.2} ms ({} events)",
        args.watchers,
        percentile(&l, 0.5).as_secs_f64() * 1000.0,
        percentile(&l, 0.99).as_secs_f64() * 1000.0,
        l.len()
    );
    Ok(ExitCode::SUCCESS)
}
