//! CDI's upload proxy in box mode: an HTTPS server (the KubeVirt CA's `cdi-uploadproxy` certificate) that takes
//! `virtctl image-upload`'s requests on upstream's paths, checks the upload token (`Authorization: Bearer …`, signed
//! by the token key virt-api signs UploadTokenRequests with), waits up to 10 s for the claim's upload server to be
//! ready (`cdi.kubevirt.io/storage.pod.ready`), and streams the request to that server (`cdi-upload-<claim>:8443`).
//! CDIConfig `config` says where it listens (`status.uploadProxyURL`) and what CA it chains to (`uploadProxyCA`).
//!
//! Upstream's proxy reaches the upload server over mutual TLS through its Service; here the server is on the node's
//! pod network and the proxy in the same box, so the hop is plain HTTP to the pod's address.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kubevirt_api::cdi::CdiConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::KUBEVIRT_NAMESPACE as NS;

/// Upstream's proxied paths.
const PATHS: &[&str] = &["upload", "upload-async", "upload-form", "upload-form-async"];

struct Proxy {
    client: kube::Client,
    tokens: Arc<virt_api::upload::Tokens>,
    http: Client<HttpConnector, Body>,
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, format!("{}\n", message.into())).into_response()
}

/// Starts the proxy on `address` and records where it is in CDIConfig `config`; returns its serving task.
pub(crate) async fn start(
    client: &kube::Client,
    address: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let id = handler::certs::load(client, NS, crate::certs::UPLOAD_PROXY_SECRET)
        .await
        .context("the upload proxy's serving certificate")?;
    let key = crate::certs::signing_key(client, NS)
        .await
        .context("the upload token key")?;
    let tokens = virt_api::upload::Tokens::from_pkcs8(&key)?;
    let certs = CertificateDer::pem_slice_iter(id.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the upload proxy certificate")?;
    let pkey = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).context("the upload proxy key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, pkey)?;
    let tcp = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the upload proxy to {address}"))?;
    let local = tcp.local_addr()?;
    let listener = handler::tls::listen(tcp, Arc::new(tls), |_| true)?;
    let proxy = Arc::new(Proxy {
        client: client.clone(),
        tokens,
        http: Client::builder(TokioExecutor::new()).build_http(),
    });
    let mut app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "OK" }));
    for version in ["v1beta1", "v1alpha1"] {
        for path in PATHS {
            let route = format!("/{version}/{path}");
            app = app.route(&route, axum::routing::post(forward).head(forward));
        }
    }
    let app = app.with_state(proxy);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the upload proxy stopped");
        }
    });
    publish(client, &format!("{}:{}", local.ip(), local.port()), &id.ca_bundle).await?;
    tracing::info!(addr = %local, "upload proxy serving");
    Ok(task)
}

/// CDIConfig `config` (made if missing) says where the proxy is and what CA signed its certificate.
async fn publish(client: &kube::Client, url: &str, ca: &str) -> anyhow::Result<()> {
    let configs: Api<CdiConfig> = Api::all(client.clone());
    if configs.get_opt("config").await?.is_none() {
        let fresh: CdiConfig = serde_json::from_value(json!({"apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "CDIConfig", "metadata": {"name": "config"}, "spec": {}}))?;
        match configs.create(&Default::default(), &fresh).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("creating CDIConfig config"),
        }
    }
    let status = json!({"status": {"uploadProxyURL": url, "uploadProxyCA": ca,
        "filesystemOverhead": {"global": controller::cdi::claim::DEFAULT_OVERHEAD},
        "scratchSpaceStorageClass": "local", "preallocation": false}});
    configs
        .patch_status("config", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("CDIConfig config's status")?;
    Ok(())
}

fn bearer(req: &Request) -> Option<String> {
    let value = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn annotation(pvc: &PersistentVolumeClaim, key: &str) -> Option<String> {
    pvc.metadata.annotations.as_ref()?.get(key).cloned()
}

async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let Some(token) = bearer(&req) else {
        return text(
            StatusCode::BAD_REQUEST,
            "authorization header is missing or malformed",
        );
    };
    let grant = match proxy.tokens.verify(&token, jiff::Timestamp::now().as_second()) {
        Ok(g) => g,
        Err(e @ virt_api::upload::TokenError::WrongOperation) => {
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e) => return text(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(proxy.client.clone(), &grant.namespace);
    let name = &grant.name;
    let mut archive = false;
    let mut ready = false;
    for _ in 0..10 {
        let pvc = match pvcs.get_opt(name).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("rejecting Upload Request for PVC {name} that doesn't exist"),
                );
            }
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("error in upload-proxy: {e}"),
                );
            }
        };
        if annotation(&pvc, controller::cdi::claim::ann::POD_PHASE).as_deref() == Some("Succeeded") {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("rejecting Upload Request for PVC {name} that already finished uploading"),
            );
        }
        archive = annotation(&pvc, controller::cdi::claim::ann::CONTENT_TYPE).as_deref() == Some("archive");
        if annotation(&pvc, controller::cdi::claim::ann::POD_READY).as_deref() == Some("true") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !ready {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("rejecting Upload Request for PVC {name} that is not ready"),
        );
    }
    let pods: Api<Pod> = Api::namespaced(proxy.client.clone(), &grant.namespace);
    let pod = controller::cdi::decide::upload_pod_name(name);
    let ip = match pods.get_opt(&pod).await {
        Ok(Some(p)) => p.status.and_then(|s| s.pod_ip),
        _ => None,
    };
    let Some(ip) = ip else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("rejecting Upload Request for PVC {name}: no upload server"),
        );
    };
    let path = req.uri().path().to_string();
    // An archive claim's uploads go to the server's archive endpoint.
    let path = if archive && !path.contains("form") {
        let version = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("v1beta1")
            .to_string();
        format!("/{version}/upload-archive")
    } else {
        path
    };
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(format!("http://{host}:8443{path}"));
    for h in [http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH] {
        if let Some(v) = parts.headers.get(&h) {
            out = out.header(h, v);
        }
    }
    let Ok(out) = out.body(body) else {
        return text(StatusCode::BAD_REQUEST, "error in upload-proxy: invalid request");
    };
    match proxy.http.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("error in upload-proxy: {e}")),
    }
}
