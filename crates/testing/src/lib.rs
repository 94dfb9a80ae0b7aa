//! What every crate's tests share (a dev-dependency only): [`eventually`] — poll with a deadline, never sleep then
//! assert —, [`Kubectl`] and [`run`] for the binaries tests drive the way a user does, the upstream fixtures in
//! `shared/` ([`shared_dir`], [`example_files`], [`load_docs`]), and a kube-rs [`client`] from a kubeconfig.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `f` every 200 ms (a check is often a process: kubectl) until it holds; panics naming `what` when `within`
/// passes first.
pub fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened (waited {} s)",
            within.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`eventually`] for async checks.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened (waited {} s)",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a finished command said.
#[derive(Debug, Clone)]
pub struct Output {
    /// It exited 0.
    pub ok: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `program` with `args`, `env` and `stdin` to its end.
pub fn run(program: &Path, args: &[&str], env: &[(&str, &Path)], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl against one kubeconfig, with a HOME of its own (its discovery cache stays per test).
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its HOME.
    pub home: PathBuf,
}

impl Kubectl {
    /// kubectl with `kubeconfig`, its HOME beside it.
    #[must_use]
    pub fn new(kubeconfig: &Path) -> Self {
        let home = kubeconfig.with_file_name("home");
        Self {
            kubeconfig: kubeconfig.to_path_buf(),
            home,
        }
    }

    /// Runs `kubectl ARGS` with `stdin`.
    #[must_use]
    pub fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(
            Path::new("kubectl"),
            args,
            &[("KUBECONFIG", &self.kubeconfig), ("HOME", &self.home)],
            stdin,
        )
    }

    /// Runs `kubectl ARGS` with `stdin`; its stdout, or a panic with its stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_run(args, stdin);
        assert!(out.ok, "kubectl {args:?}: {}", out.stderr);
        out.stdout
    }
}

/// A kube-rs client from `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    kube_support::client(Some(kubeconfig), None)
        .await
        .unwrap_or_else(|e| panic!("a client from {}: {e}", kubeconfig.display()))
        .0
}

/// The workspace's root directory.
#[must_use]
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `shared/` beside the checkout (CI clones main with `shared/` next to it), or `KUBEVIRT_RS_SHARED`.
#[must_use]
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KUBEVIRT_RS_SHARED") {
        return PathBuf::from(dir);
    }
    let mut dir = workspace_root();
    loop {
        for candidate in [dir.join("shared"), dir.join("../shared")] {
            if candidate.join("fixtures").is_dir() {
                return candidate;
            }
        }
        assert!(
            dir.pop(),
            "cannot find shared/ above {}",
            workspace_root().display()
        );
    }
}

/// `shared/fixtures/upstream-examples`.
#[must_use]
pub fn examples() -> PathBuf {
    shared_dir().join("fixtures/upstream-examples")
}

/// The upstream example manifests, sorted.
#[must_use]
pub fn example_files() -> Vec<PathBuf> {
    let dir = examples();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The documents of a multi-document YAML file (empty ones dropped).
#[must_use]
pub fn load_docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}
