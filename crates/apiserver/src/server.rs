//! Running the API server: a data directory holding the SQLite store, a CA and serving certificate, an admin and a
//! read-only token and their kubeconfigs (all 0600); HTTPS only; every request authenticated.
//!
//! # Start-up
//! 1. Create the data dir (0700); generate the CA + serving cert and the tokens on first start, reuse them after.
//! 2. Open the store; serve every stored CRD; install kubevirt-rs's CRDs and the system namespaces if missing.
//! 3. Bind, then write `kubeconfig.yaml` (admin) and `kubeconfig-view.yaml` (read-only) with the bound address.
//! 4. Serve until [`Running::shutdown`] (or SIGTERM in `kvbox server`); compact the store every five minutes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiserver_store::{ListOptions, Retention, Store};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::app::{ApiState, Identity, router};
use crate::registry::Registry;
use crate::status::ApiError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A data-dir file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Certificates(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] apiserver_store::StoreError),
    /// Seeding the store (CRDs, namespaces) failed.
    #[error("seeding the store: {0}")]
    Seed(String),
}

/// How to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where state, certificates, tokens and kubeconfigs live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The CA certificate, serving certificate and key, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn load_or_make_pki(dir: &Path) -> Result<Pki, ServerError> {
    let (ca_p, cert_p, key_p) = (
        dir.join("ca.crt"),
        dir.join("serving.crt"),
        dir.join("serving.key"),
    );
    if ca_p.exists() && cert_p.exists() && key_p.exists() {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
        return Ok(Pki {
            ca: read(&ca_p)?,
            cert: read(&cert_p)?,
            key: read(&key_p)?,
        });
    }
    let err = |e: rcgen::Error| ServerError::Certificates(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kvbox-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "kvbox".to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kvbox-apiserver");
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
    }
    if let Ok(host_ips) = std::env::var("KVBOX_EXTRA_SANS") {
        for s in host_ips.split(',').filter(|s| !s.is_empty()) {
            match s.parse() {
                Ok(ip) => params.subject_alt_names.push(rcgen::SanType::IpAddress(ip)),
                Err(_) => params
                    .subject_alt_names
                    .push(rcgen::SanType::DnsName(s.try_into().map_err(err)?)),
            }
        }
    }
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let pki = Pki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    write_private(&ca_p, pki.ca.as_bytes())?;
    write_private(&cert_p, pki.cert.as_bytes())?;
    write_private(&key_p, pki.key.as_bytes())?;
    Ok(pki)
}

fn load_or_make_token(path: &Path) -> Result<String, ServerError> {
    if let Ok(t) = std::fs::read_to_string(path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(path, token.as_bytes())?;
    Ok(token)
}

fn kubeconfig_text(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kvbox\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: kvbox\n  context:\n    cluster: kvbox\n    user: {user}\n    namespace: default\ncurrent-context: kvbox\n"
    )
}

/// Stores `obj` under `key` unless present.
fn seed(store: &Store, key: &str, obj: &Value) -> Result<(), ServerError> {
    if store.get(key)?.is_some() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(obj).map_err(|e| ServerError::Seed(e.to_string()))?;
    match store.create(key, bytes) {
        Ok(_) | Err(apiserver_store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn stamped(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(crate::objects::now_rfc3339());
    obj["metadata"]["generation"] = json!(1);
    obj
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
        seed(store, &format!("/registry/core/namespaces/{ns}"), &obj)?;
    }
    for crd in kubevirt_api::crd::all() {
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
            &format!("/registry/apiextensions.k8s.io/customresourcedefinitions/{name}"),
            &obj,
        )?;
    }
    let crds = store.list(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/",
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
    let identity = match bearer {
        Some(t) if t == tokens.admin => Identity::admin(),
        Some(t) if t == tokens.view => Identity {
            user: "kvbox-view".into(),
            can_write: false,
        },
        _ => return ApiError::unauthorized().into_response(),
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
    let tokens = Tokens {
        admin: load_or_make_token(&dir.join("admin.token"))?,
        view: load_or_make_token(&dir.join("view.token"))?,
    };
    let store = Store::sqlite(&dir.join("state.db"))?;
    let registry = Registry::default();
    bootstrap(&store, &registry)?;
    let state = Arc::new(ApiState {
        store: store.clone(),
        registry,
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    crate::gc::spawn(state.clone(), stop.clone());
    let app = router(state).layer(middleware::from_fn_with_state(
        Arc::new(tokens.clone()),
        authenticate,
    ));
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        pki.cert.clone().into_bytes(),
        pki.key.clone().into_bytes(),
    )
    .await
    .map_err(|e| ServerError::Certificates(e.to_string()))?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let server = axum_server::bind_rustls(config.listen, tls).handle(handle.clone());
    let task = tokio::spawn(server.serve(app.into_make_service()));
    let addr = handle.listening().await.ok_or_else(|| ServerError::Io {
        path: PathBuf::from(config.listen.to_string()),
        source: std::io::Error::other("could not listen"),
    })?;
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
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop_maintenance.notified() => return,
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
