//! Running the API server: a data directory holding the SQLite store, a CA and serving certificate, an admin and a
//! read-only token and their kubeconfigs (all 0600); HTTPS only; every request authenticated.
//!
//! # Start-up
//! 1. Create the data dir (0700); generate the CA + serving cert and the tokens on first start, reuse them after.
//!    Clients authenticate with a bearer token or a client certificate signed by the CA ([`crate::pki`]).
//! 2. Open the store; serve every stored CRD; install kubevirt-rs's CRDs and the system namespaces if missing.
//! 3. Bind, then write `kubeconfig.yaml` (admin) and `kubeconfig-view.yaml` (read-only) with the bound address.
//! 4. Serve until [`Running::shutdown`] (or SIGTERM in `kvbox server`); compact the store every five minutes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apiserver_store::{ListOptions, Retention, Store};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::router;
use crate::context::{ApiState, Identity};
use crate::object_store::Resource;
use crate::pki::{io, kubeconfig_text, load_or_make_pki, load_or_make_token, write_private};
use crate::registry::Registry;
use crate::status::ApiError;
use crate::tls::{ClientCertAcceptor, PeerCert};

pub use crate::server_error::ServerError;

/// How to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where state, certificates, tokens and kubeconfigs live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The Services' cluster IP range.
    pub service_range: crate::services::ServiceRange,
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Path of the read-only kubeconfig.
    pub kubeconfig_view: PathBuf,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Stops accepting, lets requests finish (watches are cut after a second), and waits.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = self.task.await;
        self.stop.notify_waiters();
    }
}

/// Stores `obj` under `key` unless present.
fn seed(store: &Store, key: &str, obj: &Value) -> Result<(), ServerError> {
    Ok(crate::system::ensure(store, key, obj)?)
}

fn stamped(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(crate::objects::now_rfc3339());
    if obj["kind"] == "CustomResourceDefinition" {
        obj["metadata"]["generation"] = json!(1);
    }
    obj
}

/// `kube-system/extension-apiserver-authentication`, where aggregated API servers learn whom to trust: the client CA
/// and the front proxy's CA, allowed name and headers (kube-apiserver's keys).
fn seed_extension_authentication(
    store: &Store,
    client_ca: &str,
    front_proxy_ca: &str,
) -> Result<(), ServerError> {
    let key = &Resource::core("configmaps").key(Some("kube-system"), "extension-apiserver-authentication");
    let data = json!({
        "client-ca-file": client_ca,
        "requestheader-client-ca-file": front_proxy_ca,
        "requestheader-allowed-names": format!("[\"{}\"]", crate::pki::FRONT_PROXY_CLIENT),
        "requestheader-username-headers": "[\"X-Remote-User\"]",
        "requestheader-group-headers": "[\"X-Remote-Group\"]",
        "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
    });
    // Rewritten at every start: the CAs are the data dir's.
    let obj = stamped(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"}, "data": data}));
    Ok(crate::system::ensure_field(store, key, &obj, "data")?)
}

/// Serves stored CRDs, installs ours and the system namespaces.
///
/// # Errors
/// Store failures or a stored CRD that no longer validates.
pub fn bootstrap(store: &Store, registry: &Registry) -> Result<(), ServerError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = stamped(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        );
        seed(store, &Resource::core("namespaces").key(None, ns), &obj)?;
        crate::system::namespace_contents(store, ns, "")?;
    }
    for crd in kubevirt_api::crd::served_in_box() {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let types = crate::registry::from_crd(&crd).map_err(|e| ServerError::Seed(e.to_string()))?;
        let mut obj = stamped(crd);
        obj["status"] = json!({"storedVersions": types.iter().filter(|_| true).map(|t| t.version.clone()).take(1).collect::<Vec<_>>(),
            "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": crate::objects::now_rfc3339()}]});
        seed(
            store,
            &Resource::of("apiextensions.k8s.io", "customresourcedefinitions").key(None, &name),
            &obj,
        )?;
    }
    let crds = store.list(
        &Resource::of("apiextensions.k8s.io", "customresourcedefinitions").prefix(),
        &ListOptions::default(),
    )?;
    for kv in crds.items {
        let crd: Value = serde_json::from_slice(&kv.value).map_err(|e| ServerError::Seed(e.to_string()))?;
        registry
            .install_crd(&crd)
            .map_err(|e| ServerError::Seed(format!("{}: {e}", kv.key)))?;
    }
    Ok(())
}

#[derive(Clone)]
struct Tokens {
    admin: String,
    view: String,
    /// Service account tokens are checked with this key against the accounts in this store.
    sa_key: Vec<u8>,
    store: Store,
}

impl Tokens {
    /// The identity of a service account token, while its account (same uid) exists.
    fn service_account(&self, token: &str) -> Option<Identity> {
        let sub = crate::satoken::verify(&self.sa_key, token, jiff::Timestamp::now().as_second())?;
        let uid = crate::satoken::account_uid(&self.store, &sub.namespace, &sub.name).ok()??;
        (uid == sub.uid).then(|| Identity {
            user: format!("system:serviceaccount:{}:{}", sub.namespace, sub.name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", sub.namespace),
                "system:authenticated".into(),
            ],
            // Until RBAC is enforced, service accounts read.
            can_write: false,
        })
    }
}

/// The key service account tokens are signed with (32 random bytes in `sa.key`, 0600), made at first start.
fn load_or_make_sa_key(dir: &std::path::Path) -> Result<Vec<u8>, ServerError> {
    let path = dir.join("sa.key");
    if let Ok(k) = std::fs::read(&path)
        && k.len() >= 32
    {
        return Ok(k);
    }
    let mut key = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| ServerError::Certificates("no randomness for the service account key".into()))?;
    write_private(&path, &key)?;
    Ok(key)
}

async fn authenticate(tokens: axum::extract::State<Arc<Tokens>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/livez") {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cert = req
        .extensions()
        .get::<Option<PeerCert>>()
        .cloned()
        .flatten()
        .and_then(|c| crate::tls::subject_identity(&c.0));
    let service_account = bearer
        .filter(|t| *t != tokens.admin && *t != tokens.view)
        .and_then(|t| tokens.service_account(t));
    let identity = if let Some(sa) = service_account {
        sa
    } else {
        match (bearer, cert) {
            (Some(t), _) if t == tokens.admin => Identity::admin(),
            (Some(t), _) if t == tokens.view => Identity {
                user: "kvbox-view".into(),
                groups: vec!["kvbox:view".into(), "system:authenticated".into()],
                can_write: false,
            },
            // Until RBAC is enforced, certificates in system:masters may write and every other certificate may read.
            (None, Some((user, mut groups))) => Identity {
                can_write: groups.iter().any(|g| g == "system:masters"),
                user,
                groups: {
                    groups.push("system:authenticated".into());
                    groups
                },
            },
            _ => return ApiError::unauthorized().into_response(),
        }
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// Starts the server and returns once it is listening.
///
/// # Errors
/// [`ServerError`] for data-dir, certificate, store or bind failures.
pub async fn start(config: &ServerConfig) -> Result<Running, ServerError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let pki = load_or_make_pki(dir)?;
    let store = Store::sqlite(&dir.join("state.db"))?;
    let sa_key = load_or_make_sa_key(dir)?;
    let tokens = Tokens {
        admin: load_or_make_token(&dir.join("admin.token"))?,
        view: load_or_make_token(&dir.join("view.token"))?,
        sa_key: sa_key.clone(),
        store: store.clone(),
    };
    let registry = Registry::default();
    bootstrap(&store, &registry)?;
    let front_proxy = crate::pki::load_or_make_front_proxy(dir)?;
    seed_extension_authentication(&store, &pki.ca, &front_proxy.ca)?;
    let aggregator = crate::upstreams::Aggregator::new(&front_proxy.cert, &front_proxy.key)
        .map_err(ServerError::Certificates)?;
    let state = Arc::new(ApiState {
        aggregator: Some(aggregator),
        store: store.clone(),
        registry,
        watch_cache: Default::default(),
        webhooks: Default::default(),
        metrics: Default::default(),
        service_range: config.service_range,
        root_ca: pki.ca.clone(),
        sa_key,
    });
    for kv in store
        .list(&Resource::core("namespaces").prefix(), &ListOptions::default())?
        .items
    {
        if let Some(ns) = kv.key.rsplit('/').next() {
            crate::system::namespace_contents(&store, ns, &pki.ca)?;
        }
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    crate::gc::spawn(state.clone(), stop.clone());
    crate::availability::spawn(state.clone(), stop.clone());
    let app = router(state).layer(middleware::from_fn_with_state(
        Arc::new(tokens.clone()),
        authenticate,
    ));
    let tls = crate::tls::server_config(&pki.ca, &pki.cert, &pki.key).map_err(ServerError::Certificates)?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let server = axum_server::bind(config.listen)
        .acceptor(ClientCertAcceptor::new(tls))
        .handle(handle.clone());
    let task = tokio::spawn(server.serve(app.into_make_service()));
    let addr = handle.listening().await.ok_or_else(|| ServerError::Io {
        path: PathBuf::from(config.listen.to_string()),
        source: std::io::Error::other("could not listen"),
    })?;
    crate::system::kubernetes_service(&store, config.service_range, addr)?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = if addr.is_ipv6() {
        format!("https://[{host}]:{}", addr.port())
    } else {
        format!("https://{host}:{}", addr.port())
    };
    let kubeconfig = dir.join("kubeconfig.yaml");
    let kubeconfig_view = dir.join("kubeconfig-view.yaml");
    write_private(
        &kubeconfig,
        kubeconfig_text(&url, &pki.ca, "kvbox-admin", &tokens.admin).as_bytes(),
    )?;
    write_private(
        &kubeconfig_view,
        kubeconfig_text(&url, &pki.ca, "kvbox-view", &tokens.view).as_bytes(),
    )?;
    let stop_maintenance = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.tick().await;
        // Registered once, so a stop that comes while maintenance runs is not missed.
        let stopped = stop_maintenance.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stopped => return,
            }
            let s = store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = s.compact(Retention::default()).and_then(|_| s.maintain()) {
                    tracing::warn!(error = %e, "store maintenance failed");
                }
            })
            .await;
        }
    });
    Ok(Running {
        stop,
        addr,
        kubeconfig,
        kubeconfig_view,
        handle,
        task,
    })
}
