//! What every kubevirt-rs binary and loop needs from Kubernetes, with no KubeVirt knowledge in it: a client from a
//! kubeconfig file or context (else `KUBECONFIG`, `~/.kube/config` or the in-cluster service account), the `main`
//! prologue every binary shares (tracing to stderr, a multi-threaded runtime, upstream-style exit codes), the
//! shutdown signal (SIGTERM or Ctrl-C), the lean watch every cache is filled from, events ([`events`]), how every reconciler runs
//! ([`reconcile`]: spans, error policy, metrics), whole-set resync loops ([`resync`]), status written as merge patches of what changed ([`merge`]), and
//! leader election ([`leader`]).

pub mod events;
pub mod leader;
pub mod merge;
pub mod reconcile;
pub mod resync;

pub use events::Events;
pub use reconcile::{ApiError, ReconcileError, Retry, lean_controller, run_controller};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig names no usable context, cluster or user.
    #[error("{0}")]
    Config(#[from] kube::config::KubeconfigError),
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("finding a kubeconfig: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built (TLS setup).
    #[error("{0}")]
    Client(#[from] kube::Error),
}

/// A client as kubectl would make it: from `kubeconfig` (and `context`) when given, else from `KUBECONFIG` /
/// `~/.kube/config` (with `context`), else the in-cluster service account; with the namespace it defaults to.
///
/// # Errors
/// [`Error`] when no configuration is usable.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(kube::Client, String), Error> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.to_path_buf(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    let namespace = config.default_namespace.clone();
    Ok((kube::Client::try_from(config)?, namespace))
}

/// Logs to stderr at the level `log_env` names (an `EnvFilter`, default `info`).
pub fn init_tracing(log_env: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(log_env).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The prologue of a long-running binary `name`: tracing (level from `log_env`), a multi-threaded runtime, then
/// `run`; its error is printed with its causes (`name: …`) and exits 1, a runtime that cannot start exits 2.
pub fn main<F, E>(name: &str, log_env: &str, run: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_tracing(log_env);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A watch of `api` as every loop here wants one: kube's default backoff between failed attempts, and objects without
/// `managedFields` (a third of an object, which nothing reads). Feed it to a reflector for a cache.
pub fn lean_watch<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
) -> impl futures_util::Stream<Item = Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use kube::runtime::WatchStreamExt as _;
    kube::runtime::watcher(api, config)
        .default_backoff()
        .modify(|o| o.meta_mut().managed_fields = None)
}

/// Returns once the process is asked to stop: SIGTERM or Ctrl-C (Ctrl-C only where SIGTERM cannot be watched).
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: 'https://127.0.0.1:1'}
- name: b
  cluster: {server: 'https://127.0.0.2:1'}
users:
- name: u
  user: {token: t}
contexts:
- name: first
  context: {cluster: a, user: u, namespace: team-a}
- name: second
  context: {cluster: b, user: u}
current-context: first
";

    #[test]
    fn conflicts_are_retried_at_once() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert_eq!(Retry::of(&api(409)), Retry::Conflict);
        assert_eq!(Retry::of(&api(500)), Retry::Later);
        assert_eq!(ApiError(api(409)).retry(), Retry::Conflict);
        assert_eq!(
            Retry::Conflict.action(),
            kube::runtime::controller::Action::requeue(std::time::Duration::from_millis(100))
        );
    }

    #[tokio::test]
    async fn clients_come_from_the_file_and_context_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let (_, ns) = client(Some(&path), None).await.unwrap();
        assert_eq!(ns, "team-a");
        let (_, ns) = client(Some(&path), Some("second")).await.unwrap();
        assert_eq!(ns, "default");
        let missing = client(Some(&dir.path().join("nope")), None).await.err().unwrap();
        assert!(missing.to_string().starts_with("reading "), "{missing}");
        let bad_context = client(Some(&path), Some("third")).await.err().unwrap();
        assert!(bad_context.to_string().contains("third"), "{bad_context}");
    }
}
